"""Image reading and the TFRecord dataset builder, on small generated published-layout folders."""

import logging
import os
import signal
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from support import gm_folders
from revgm_jax import labels
from revgm_jax.data import builder, images

# CONT_ENC is row 21 of the index although sorted() puts it after CONTRAGAN
# (docs/labels.md#row-order).
GMS = ("AAE", "BIGGAN_128", "CONT_ENC")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _examples(data: builder.PreparedData, gm: str) -> dict[str, dict]:
  ds = data.builder.as_dataset(split=builder.split_name(data.gt.row(gm)))
  return {ex["file"].decode(): ex for ex in tfds.as_numpy(ds)}


def _build(tmp_path, labels_dir, **kwargs) -> builder.PreparedData:
  return builder.prepare(tmp_path / "images", labels_dir, "red116", tmp_path / "tfds", **kwargs)


@pytest.fixture
def count_builds(monkeypatch):
  """Counts the GM splits the builder generates (0 = the build was reused)."""
  calls = []
  generate = builder.RevgmImages._generate_examples

  def counting(self, gm, *args):
    calls.append(gm.name)
    return generate(self, gm, *args)

  monkeypatch.setattr(builder.RevgmImages, "_generate_examples", counting)
  return calls


def _save(array: np.ndarray, path, mode: str | None = None, fmt: str | None = None):
  img = Image.fromarray(array)
  (img.convert(mode) if mode else img).save(path, format=fmt)


# --- reading one image -------------------------------------------------------------------------

def test_read_image_returns_rgb_uint8_exactly(tmp_path):
  a = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
  for ext in ("png", "bmp"):
    _save(a, tmp_path / f"a.{ext}")
    out, converted = images.read_image(str(tmp_path / f"a.{ext}"))
    assert converted is None and out.dtype == np.uint8
    np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize("mode,ext", [("L", "png"), ("LA", "png"), ("P", "png"), ("RGBA", "png"),
                                      ("1", "bmp"), ("CMYK", "jpg")])
def test_read_image_converts_one_and_four_channel_modes(tmp_path, mode, ext):
  a = np.random.default_rng(1).integers(0, 256, (8, 6, 3), dtype=np.uint8)
  path = tmp_path / f"a.{ext}"
  _save(a, path, mode)
  out, converted = images.read_image(str(path))
  assert converted == mode and out.shape == (8, 6, 3)
  np.testing.assert_array_equal(out, np.asarray(Image.open(path).convert("RGB")))


def test_read_image_rejects_what_cannot_be_fixed(tmp_path):
  a = np.random.default_rng(2).integers(0, 256, (20, 20, 3), dtype=np.uint8)
  _save(a, tmp_path / "ok.png")
  data = (tmp_path / "ok.png").read_bytes()
  (tmp_path / "truncated.png").write_bytes(data[: len(data) // 2])
  (tmp_path / "garbage.jpg").write_bytes(b"not an image at all")
  (tmp_path / "empty.bmp").write_bytes(b"")
  Image.fromarray(np.full((4, 4), 40000, np.uint16)).save(tmp_path / "deep.png")
  for name, problem in [("truncated.png", "truncated"), ("garbage.jpg", "cannot be decoded"),
                        ("empty.bmp", "cannot be decoded"), ("deep.png", "16-bit")]:
    with pytest.raises(images.ImageError, match=problem) as e:
      images.read_image(str(tmp_path / name))
    assert str(tmp_path / name) in str(e.value)


# --- building ----------------------------------------------------------------------------------

def test_build_round_trip_is_pixel_exact_with_index_labels(tmp_path, red116_dir):
  expected = gm_folders.write_layout(tmp_path / "images", GMS, images_per_gm=6)
  data = _build(tmp_path, red116_dir, shards_per_gm=2)
  gt = labels.load_ground_truth(red116_dir, "red116")
  ids = []
  for gm in GMS:
    row = gt.row(gm)
    examples = _examples(data, gm)
    assert sorted(examples) == sorted(f for f in expected if f.startswith(gm + "/"))
    for f, ex in examples.items():
      np.testing.assert_array_equal(ex["image"], expected[f])  # PNG/BMP exact, JPEG as decoded
      assert ex["gm_name"].decode() == gm and ex["gm_row"] == row
      np.testing.assert_array_equal(ex["net"], gt.net[row])
      np.testing.assert_array_equal(ex["loss"], gt.loss[row])
      np.testing.assert_array_equal(ex["loss_group"], gt.loss_group[row])
      ids.append(int(ex["id"]))
    assert data.builder.info.splits[builder.split_name(row)].num_shards == 2
  assert data.gm_info["CONT_ENC"]["row"] == 21 == gt.row("CONT_ENC")
  assert sorted(ids) == list(range(3 * 6))
  # the stored bytes are PNG whatever the source format
  raw = next(iter(data.builder.as_dataset(split="gm_0", decoders={"image": tfds.decode.SkipDecoding()})))
  assert raw["image"].numpy()[:8] == b"\x89PNG\r\n\x1a\n"


def test_file_slices_take_the_first_images_of_each_gm(tmp_path, red116_dir):
  gm_folders.write_layout(tmp_path / "images", GMS, images_per_gm=6)
  data = _build(tmp_path, red116_dir, shards_per_gm=2)
  slices = data.file_slices(["AAE", "CONT_ENC"], max_per_gm=4)
  assert [(os.path.basename(s.filename).split(".")[0], s.skip, s.take) for s in slices] == [
      ("revgm_images-gm_0", 0, 3), ("revgm_images-gm_0", 0, 1),
      ("revgm_images-gm_21", 0, 3), ("revgm_images-gm_21", 0, 1)]
  assert data.num_images(["AAE", "CONT_ENC"], 4) == 8 and data.num_images(GMS) == 18
  with pytest.raises(builder.DataError, match="STARGAN.*no folder"):
    data.file_slices(["STARGAN"])


_KILLED_BUILD = """
import sys, time
from revgm_jax.data import builder
encode, done = builder._encode, []
def pausing(path):  # a pause for the test's SIGKILL, in the middle of the second GM
  done.append(path)
  if len(done) == 9:
    print("paused", flush=True)
    time.sleep(600)
  return encode(path)
builder._encode = pausing
builder.prepare(sys.argv[1], sys.argv[2], "red116", sys.argv[3], shards_per_gm=2)
"""


@pytest.mark.e2e
def test_build_killed_midway_is_redone_pixel_exact(tmp_path, red116_dir):
  """A real SIGKILL to a process converting the images; the next build is complete."""
  expected = gm_folders.write_layout(tmp_path / "images", GMS, images_per_gm=6)
  proc = subprocess.Popen([sys.executable, "-c", _KILLED_BUILD, str(tmp_path / "images"),
                           str(red116_dir), str(tmp_path / "tfds")], cwd=REPO,
                          stdout=subprocess.PIPE, text=True)
  assert "paused\n" in iter(proc.stdout.readline, "")  # (TFDS prints its own lines first)
  proc.kill()
  assert proc.wait() == -signal.SIGKILL
  data = _build(tmp_path, red116_dir, shards_per_gm=2)
  for gm in GMS:
    examples = _examples(data, gm)
    assert sorted(examples) == sorted(f for f in expected if f.startswith(gm + "/"))
    for f, ex in examples.items():
      np.testing.assert_array_equal(ex["image"], expected[f])


@pytest.mark.e2e
def test_a_second_build_of_the_same_folder_waits_for_the_first(tmp_path, red116_dir):
  """Two runs started together on one folder: the second waits (the first here pauses, then
  is killed), then builds; before, both wrote and the later rename failed (FileExistsError)."""
  expected = gm_folders.write_layout(tmp_path / "images", GMS, images_per_gm=6)
  args = [str(tmp_path / "images"), str(red116_dir), str(tmp_path / "tfds")]
  first = subprocess.Popen([sys.executable, "-c", _KILLED_BUILD, *args], cwd=REPO,
                           stdout=subprocess.PIPE, text=True)
  assert "paused\n" in iter(first.stdout.readline, "")
  second = subprocess.Popen([sys.executable, "-c", _KILLED_BUILD.replace("== 9", "< 0"), *args],
                            cwd=REPO, stdout=subprocess.PIPE, text=True)
  assert any("another process is writing them; waiting" in line
             for line in iter(second.stdout.readline, ""))
  first.kill()
  assert second.wait(timeout=300) == 0
  data = _build(tmp_path, red116_dir, shards_per_gm=2)
  for gm in GMS:
    assert sorted(_examples(data, gm)) == sorted(f for f in expected if f.startswith(gm + "/"))


def test_label_dir_of_official_tables_only_uses_the_shipped_index(tmp_path, red116_dir):
  gm_folders.write_layout(tmp_path / "images", GMS, images_per_gm=2)
  label_dir = gm_folders.copy_labels(red116_dir, tmp_path / "labels")
  os.remove(os.path.join(label_dir, labels.INDEX_FILE))
  data = _build(tmp_path, label_dir)
  gt = labels.load_ground_truth(red116_dir, "red116")
  assert data.gm_info["CONT_ENC"]["row"] == 21
  for gm in GMS:
    for ex in _examples(data, gm).values():
      np.testing.assert_array_equal(ex["net"], gt.net[gt.row(gm)])


def test_unchanged_input_does_no_work(tmp_path, red116_dir, count_builds):
  gm_folders.write_layout(tmp_path / "images", GMS, images_per_gm=4)
  first = _build(tmp_path, red116_dir)
  assert sorted(count_builds) == sorted(GMS)
  stamps = {f: os.stat(os.path.join(first.builder.data_dir, f)).st_mtime_ns
            for f in os.listdir(first.builder.data_dir)}
  count_builds.clear()
  second = _build(tmp_path, red116_dir)
  assert count_builds == []
  assert second.builder.data_dir == first.builder.data_dir
  assert {f: os.stat(os.path.join(second.builder.data_dir, f)).st_mtime_ns
          for f in os.listdir(second.builder.data_dir)} == stamps
  assert second.gm_info == first.gm_info


@pytest.mark.parametrize("change", ["add", "remove", "modify", "labels"])
def test_changed_input_is_rebuilt(tmp_path, red116_dir, count_builds, change):
  gm_folders.write_layout(tmp_path / "images", GMS, images_per_gm=4)
  label_dir = gm_folders.copy_labels(red116_dir, tmp_path / "labels")
  first = _build(tmp_path, label_dir)
  aae = tmp_path / "images" / "AAE"
  if change == "add":
    _save(np.zeros((24, 24, 3), np.uint8), aae / "new.png")
  elif change == "remove":
    os.remove(aae / "img_001.png")
  elif change == "modify":
    stat = os.stat(aae / "img_000.png")
    _save(np.full((24, 24, 3), 7, np.uint8), aae / "img_000.png")
    os.utime(aae / "img_000.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
  else:
    net_file = os.path.join(label_dir, labels.LABEL_FILES["red116"]["net"])
    net = np.load(net_file)
    net[0, 0] = 0.5  # AAE's first continuous label
    np.save(net_file, net)
  count_builds.clear()
  second = _build(tmp_path, label_dir)
  assert sorted(count_builds) == sorted(GMS)
  assert second.builder.data_dir != first.builder.data_dir
  assert not os.path.exists(first.builder.data_dir)  # the outdated build is removed
  examples = _examples(second, "AAE")
  if change == "add":
    assert len(examples) == 5 and not examples["AAE/new.png"]["image"].any()
  elif change == "remove":
    assert len(examples) == 3 and "AAE/img_001.png" not in examples
  elif change == "modify":
    assert (examples["AAE/img_000.png"]["image"] == 7).all()
  else:
    assert all(ex["net"][0] == np.float32(0.5) for ex in examples.values())


# --- bad input ---------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_image_fails_the_build_naming_the_file(tmp_path, red116_dir, damage):
  gm_folders.write_layout(tmp_path / "images", GMS, images_per_gm=3)
  bad = tmp_path / "images" / "BIGGAN_128" / "img_001.png"
  data = bad.read_bytes()
  bad.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"\x89PNG garbage")
  with pytest.raises(images.ImageError, match=str(bad)):
    _build(tmp_path, red116_dir)
  # no half-written build is left behind
  assert not [f for _, _, files in os.walk(tmp_path / "tfds" / builder.NAME) for f in files]


def test_one_and_four_channel_images_are_converted_and_logged_once(tmp_path, red116_dir, caplog):
  gm_folders.write_layout(tmp_path / "images", GMS, images_per_gm=2)
  rng = np.random.default_rng(3)
  folder = tmp_path / "images" / "AAE"
  sources = {}
  for mode, ext in [("L", "png"), ("RGBA", "png"), ("LA", "png"), ("CMYK", "jpg")]:
    path = folder / f"x_{mode}.{ext}"
    _save(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8), path, mode)
    sources[f"AAE/{path.name}"] = np.asarray(Image.open(path).convert("RGB"))
  with caplog.at_level(logging.INFO):
    data = _build(tmp_path, red116_dir)
  examples = _examples(data, "AAE")
  for f, rgb in sources.items():
    np.testing.assert_array_equal(examples[f]["image"], rgb)
  notes = [r.getMessage() for r in caplog.records if "converted" in r.getMessage()]
  assert len(notes) == 1 and str(folder) in notes[0]
  for mode in ("L", "RGBA", "LA", "CMYK"):
    assert f"mode {mode} " in notes[0]


def test_empty_gm_folder_is_an_error(tmp_path, red116_dir):
  gm_folders.write_layout(tmp_path / "images", GMS, images_per_gm=2)
  os.makedirs(tmp_path / "images" / "DCGAN")
  (tmp_path / "images" / "DCGAN" / "notes.txt").write_text("no images here")
  with pytest.raises(builder.DataError, match=r"GM folder .*DCGAN is empty"):
    _build(tmp_path, red116_dir)


def test_gm_folder_missing_from_the_index_is_an_error(tmp_path, red116_dir):
  gm_folders.write_layout(tmp_path / "images", GMS + ("MY_OWN_GAN",), images_per_gm=2)
  with pytest.raises(builder.DataError, match=r"images/MY_OWN_GAN not in the GM index"):
    _build(tmp_path, red116_dir)


@pytest.mark.parametrize("problem,match", [("shape", "has shape"), ("nan", "non-finite")])
def test_bad_ground_truth_table_is_an_error_naming_it(tmp_path, red116_dir, problem, match):
  gm_folders.write_layout(tmp_path / "images", GMS, images_per_gm=2)
  label_dir = gm_folders.copy_labels(red116_dir, tmp_path / "labels")
  name = labels.LABEL_FILES["red116"]["loss"]
  loss = np.load(os.path.join(label_dir, name))
  if problem == "shape":
    loss = loss[:, :9]
  else:
    loss[5, 2] = np.nan
  np.save(os.path.join(label_dir, name), loss)
  with pytest.raises(ValueError, match=match) as e:
    _build(tmp_path, label_dir)
  assert name in str(e.value)


def test_image_smaller_than_the_crop_is_named(tmp_path, red116_dir):
  gm_folders.write_layout(tmp_path / "images", GMS, images_per_gm=3)  # smallest: 24 x 20
  data = _build(tmp_path, red116_dir)
  data.check_min_size(GMS, 20)
  with pytest.raises(builder.DataError, match=r"img_001.png has width 20, smaller than the random "
                                              r"crop of 21 x 21"):
    data.check_min_size(GMS, 21)
  with pytest.raises(builder.DataError, match=r"img_000.png has height 24"):
    data.check_min_size(GMS, 25)


def test_missing_image_dir_is_an_error(tmp_path, red116_dir):
  with pytest.raises(builder.DataError, match="does not exist"):
    _build(tmp_path, red116_dir)
  os.makedirs(tmp_path / "images")
  with pytest.raises(builder.DataError, match="holds no GM folders"):
    _build(tmp_path, red116_dir)
