"""The input pipeline over a small generated published-layout folder (RED116 labels), and the
command-line config errors."""

import os
import subprocess
import sys
import types

from absl import flags
import jax
from jax.sharding import PartitionSpec as P
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from support import gm_folders, pipeline
from revgm_jax import config_check, config_utils, labels, input_pipeline
from revgm_jax.cli import cli_flags
from revgm_jax.cli import main as cli
from revgm_jax.data import builder, prepare

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_VAL = ("AAE", "ACGAN", "CONT_ENC", "DCGAN")
TEST_SET_1 = ("BIGGAN_128", "STARGAN")  # leave-out test set 1 of RED116
IMAGES_PER_GM = 6
CONFIG = os.path.join(REPO, "configs", "default.py")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  root = tmp_path_factory.mktemp("published")
  expected = gm_folders.write_layout(root / "images", TRAIN_VAL + TEST_SET_1, IMAGES_PER_GM)
  return root, expected


def make_config(folder, red116_dir, **overrides):
  """The `:tiny` config on the folder fixture; `overrides`: {"dotted.field": value}."""
  root, _ = folder
  return config_utils.load_config(f"{CONFIG}:tiny", {
      "data.source": "folder",
      "data.image_dir": str(root / "images"),
      "data.labels_dir": str(red116_dir),
      "data.tfds_dir": str(root / "tfds"),
      "data.space": "red116",
      "data.shards_per_gm": 2,
      "data.num_val_gms": 1,
      "data.shuffle_buffer": 64,
      "image_size": 24,
      "batch_size": 8,
      "eval_batch_size": 8,
      **overrides})


def mesh(n=8):
  return jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:n])


def files_by_id(data: builder.PreparedData) -> dict[int, str]:
  out = {}
  for info in data.gm_info.values():
    for ex in tfds.as_numpy(data.builder.as_dataset(split=builder.split_name(info["row"]))):
      out[int(ex["id"])] = ex["file"].decode()
  return out


def ids_of(gms, data) -> set[int]:
  return {i for i, f in files_by_id(data).items() if f.split("/")[0] in gms}


def eval_ids(ds, split, process_index, process_count):
  host, num_batches = ds.eval_dataset(split, process_index, process_count)
  batches = list(host.as_numpy_iterator())
  assert len(batches) == num_batches
  return [int(i) for b in batches for i in b["id"][b["mask"]]], num_batches


def test_train_batches_follow_the_contract(folder, red116_dir):
  ds = pipeline.datasets(make_config(folder, red116_dir), mesh(8))
  gt = labels.load_ground_truth(red116_dir, "red116")
  assert ds.split["test"] == list(TEST_SET_1) and len(ds.split["val"]) == 1
  assert sorted(ds.split["train"] + ds.split["val"]) == sorted(TRAIN_VAL)
  assert ds.num_train_images == 3 * IMAGES_PER_GM
  expected_w = labels.class_weights(gt, gt.rows(ds.split["train"]))
  for a, b in zip(jax.tree.leaves(ds.class_weights), jax.tree.leaves(expected_w)):
    np.testing.assert_array_equal(a, b)
  batch = next(ds.train_iter())
  shapes = {k: (v.shape, v.dtype) for k, v in batch.items()}
  assert shapes == {"image": ((8, 24, 24, 3), np.float32), "net": ((8, 15), np.float32),
                    "loss": ((8, 10), np.int32), "loss_group": ((8, 3), np.int32),
                    "gm_row": ((8,), np.int32), "id": ((8,), np.int32), "mask": ((8,), np.bool_)}
  for v in batch.values():
    assert v.sharding.spec == P("data") and len(v.sharding.device_set) == 8
  b = jax.device_get(batch)
  assert b["mask"].all()
  assert set(b["gm_row"]) <= set(gt.rows(ds.split["train"]))
  np.testing.assert_array_equal(b["net"], gt.net[b["gm_row"]])
  np.testing.assert_array_equal(b["loss"], gt.loss[b["gm_row"]])
  np.testing.assert_array_equal(b["loss_group"], gt.loss_group[b["gm_row"]])


def test_preprocessing_resizes_like_pil_and_normalises(folder, red116_dir):
  _, expected = folder
  c = make_config(folder, red116_dir)
  ds = pipeline.datasets(c, mesh(1))
  names = files_by_id(ds.data)
  host, _ = ds.eval_dataset("train", 0, 1)
  checked = 0
  for b in host.as_numpy_iterator():
    for image, i, m in zip(b["image"], b["id"], b["mask"]):
      if not m:
        continue
      src = expected[names[int(i)]]
      ref = np.asarray(Image.fromarray(src).resize((24, 24), Image.BILINEAR), np.float64)
      ref = (ref / 255 - c.data.mean) / c.data.std
      # PIL rounds its result to uint8; at the native size there is nothing to resample.
      tol = 1e-5 if src.shape[:2] == (24, 24) else 1.0 / 255 / c.data.std + 1e-5
      np.testing.assert_allclose(image, ref, atol=tol)
      checked += 1
  assert checked == 3 * IMAGES_PER_GM


@pytest.mark.parametrize("process_count", [2, 4])
def test_host_shards_are_disjoint_and_cover_the_split(folder, red116_dir, process_count):
  ds = pipeline.datasets(make_config(folder, red116_dir), mesh(8))
  slices = ds.data.file_slices(ds.split["train"])
  per_host = [input_pipeline.host_slices(slices, p, process_count) for p in range(process_count)]
  assert sorted(s for h in per_host for s in h) == sorted(slices)
  assert all(h for h in per_host)
  all_ids = ids_of(ds.split["train"], ds.data)
  seen, counts = [], set()
  for p in range(process_count):
    ids, n = eval_ids(ds, "train", p, process_count)
    seen += ids
    counts.add(n)
    # the training stream of host p reads only host p's files
    train = ds.train_dataset(p, process_count).take(4).as_numpy_iterator()
    assert {int(i) for b in train for i in b["id"]} <= set(ids)
    assert next(iter(ds.train_dataset(p, process_count)))["image"].shape[0] == 8 // process_count
  assert sorted(seen) == sorted(all_ids)  # disjoint and covering: each image exactly once
  assert len(counts) == 1  # every host yields the same number of batches


def test_same_seed_gives_the_same_order(folder, red116_dir):
  def first_batches(seed):
    c = make_config(folder, red116_dir, seed=seed, **{"data.random_crop": True, "image_size": 16})
    ds = pipeline.datasets(c, mesh(1))
    return list(ds.train_dataset(0, 1).take(6).as_numpy_iterator())

  a, b, other = first_batches(1), first_batches(1), first_batches(2)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["id"], y["id"])
    np.testing.assert_array_equal(x["image"], y["image"])  # random crops are seeded too
  assert [list(x["id"]) for x in a] != [list(x["id"]) for x in other]
  assert len({int(i) for x in a for i in x["id"]}) == 3 * IMAGES_PER_GM  # 48 draws of 18 images


def test_eval_iter_visits_every_example_exactly_once(folder, red116_dir):
  ds = pipeline.datasets(make_config(folder, red116_dir, eval_batch_size=8), mesh(8))
  batches = [jax.device_get(b) for b in ds.eval_iter("test")]
  assert len(batches) == 2  # 12 test images -> 2 batches of 8, 4 padding
  ids = [int(i) for b in batches for i in b["id"][b["mask"]]]
  assert sorted(ids) == sorted(ids_of(TEST_SET_1, ds.data))
  pad = np.concatenate([b["gm_row"][~b["mask"]] for b in batches])
  assert len(pad) == 4 and (pad == -1).all()
  assert ds.num_images("test") == 12
  ds = pipeline.datasets(
      make_config(folder, red116_dir, **{"eval.max_images_per_gm": 4}), mesh(8))
  batches = [jax.device_get(b) for b in ds.eval_iter("test")]
  assert len(batches) == 1 and batches[0]["mask"].all()


def test_max_images_per_gm_takes_the_first_files(folder, red116_dir):
  ds = pipeline.datasets(
      make_config(folder, red116_dir, **{"data.max_images_per_gm": 2}), mesh(1))
  assert ds.num_train_images == 3 * 2
  names = files_by_id(ds.data)
  ids, _ = eval_ids(ds, "train", 0, 1)
  assert sorted(names[i].split("/")[1] for i in ids) == ["img_000.png"] * 3 + ["img_001.png"] * 3


def test_shuffled_labels_permute_training_gms_only(folder, red116_dir):
  c = make_config(folder, red116_dir, **{"data.shuffle_labels": True, "data.num_val_gms": 0})
  ds = pipeline.datasets(c, mesh(1))
  gt = ds.gt
  train = gt.rows(ds.split["train"])
  rows = ds.label_rows
  assert sorted(rows[train]) == sorted(train) and (rows[train] != train).any()
  others = np.setdiff1d(np.arange(len(gt)), train)
  np.testing.assert_array_equal(rows[others], others)
  for b in ds.train_dataset(0, 1).take(3).as_numpy_iterator():
    np.testing.assert_array_equal(b["net"], gt.net[rows[b["gm_row"]]])
    np.testing.assert_array_equal(b["loss"], gt.loss[rows[b["gm_row"]]])
  for b in ds.eval_dataset("test", 0, 1)[0].as_numpy_iterator():
    real = b["mask"]
    np.testing.assert_array_equal(b["net"][real], gt.net[b["gm_row"][real]])


def test_image_smaller_than_the_crop_is_an_error(folder, red116_dir):
  c = make_config(folder, red116_dir, **{"data.random_crop": True, "image_size": 28})
  ds = pipeline.datasets(c, mesh(1))
  with pytest.raises(builder.DataError, match=r"img_000.png has height 24, smaller than the "
                                              r"random crop of 28 x 28"):
    ds.train_dataset(0, 1)
  c.data.random_crop = False  # resizing up is allowed
  batch = next(pipeline.datasets(c, mesh(1)).train_dataset(0, 1).as_numpy_iterator())
  assert batch["image"].shape == (8, 28, 28, 3)


def test_batch_sizes_must_divide(folder, red116_dir):
  for field in ("batch_size", "eval_batch_size"):
    with pytest.raises(ValueError, match=rf"config.{field}=6 is not divisible by the 8 devices"):
      config_check.check_config(make_config(folder, red116_dir, **{field: 6}), 8)


def test_data_source_errors(folder, red116_dir):
  with pytest.raises(ValueError, match="config.data.source='web'"):
    config_check.check_config(make_config(folder, red116_dir, **{"data.source": "web"}))
  with pytest.raises(ValueError, match="needs --config.data.image_dir"):
    config_check.check_config(make_config(folder, red116_dir, **{"data.image_dir": ""}))


def test_zoo_source_reads_the_zoo_layout(tmp_path, monkeypatch):
  """The zoo writes ZOO_OUT/gms/<GM>/ with labels in ZOO_OUT (here a stand-in build_zoo)."""
  space = labels.get_space("zoo")
  names = tuple(f"zoo_gm_{k}" for k in range(4))
  rng = np.random.default_rng(0)
  net = np.concatenate([rng.uniform(size=(4, 9)),
                        np.stack([rng.integers(0, k, 4) for k in space.discrete_classes], 1)], 1)
  gt = labels.GroundTruth(space=space, names=names, net=net.astype(np.float32),
                           loss=rng.integers(0, 2, (4, 10)).astype(np.int32),
                           loss_group=rng.integers(0, 2, (4, 3)).astype(np.int32),
                           test_set=np.array([0, 0, 0, 1], np.int32))
  calls = []

  def build_zoo(cfg, out_dir):
    calls.append((cfg.preset, out_dir))
    labels.write_ground_truth(out_dir, gt)
    gm_folders.write_layout(os.path.join(out_dir, "gms"), names, images_per_gm=4)
    return out_dir

  stub = types.SimpleNamespace(build_zoo=build_zoo, default_zoo_dir=lambda cfg: "unused")
  monkeypatch.setattr(prepare, "zoo_build", stub)
  c = config_utils.load_config(f"{CONFIG}:tiny", {
      "data.zoo_dir": str(tmp_path / "zoo"), "data.tfds_dir": str(tmp_path / "tfds"),
      "data.num_val_gms": 1, "image_size": 16, "batch_size": 4, "eval_batch_size": 4})
  ds = pipeline.datasets(c, mesh(1))
  assert calls == [("tiny", str(tmp_path / "zoo"))]
  assert ds.split["test"] == ["zoo_gm_3"] and ds.gt.space.name == "zoo"
  b = jax.device_get(next(ds.eval_iter("test")))
  np.testing.assert_array_equal(b["net"], np.repeat(gt.net[3:], 4, 0))


def test_revgm_prepare_builds_the_records_once_and_names_a_bad_config(folder, red116_dir,
                                                                       capsys):
  root, _ = folder
  argv = ["prepare", "--config", f"{CONFIG}:tiny", "--config.data.source=folder",
          f"--config.data.image_dir={root / 'images'}", f"--config.data.labels_dir={red116_dir}",
          f"--config.data.tfds_dir={root / 'tfds'}", "--config.data.space=red116",
          "--config.data.shards_per_gm=2"]
  assert cli.main(argv) == 0
  assert f"6 image folders of {root / 'images'}, 36 images" in capsys.readouterr().out
  assert cli.main(argv + ["--config.data.num_val_gms=0"]) == 1
  assert capsys.readouterr().err == (
      "revgm prepare: config.data.num_val_gms=0: model selection needs at least one validation "
      "GM (held out from the training GMs)\n")


# --- command-line config errors (absl + ml_collections, as the entry points parse them) -------


def _parse(*overrides, explicit=True):
  """With --config given, overrides are parsed by the flags parser (inside app.run); without
  it, ml_collections applies them to the default config already at flag definition."""
  argv = ["prog", *([f"--config={CONFIG}:tiny"] if explicit else []), *overrides]
  values = flags.FlagValues()
  cli_flags.define_config_file("config", CONFIG, flag_values=values, sys_argv=argv)
  cli_flags.parse_flags(argv, values)
  return values.config


def test_config_overrides_parse():
  c = _parse("--config.batch_size=4", "--config.data.source=folder")
  assert c.batch_size == 4 and c.data.source == "folder" and c.model.fen_depth == 3
  assert _parse("--config.batch_size=4", explicit=False).model.fen_depth == 8


@pytest.mark.parametrize("flag,message", [
    ("--config.data.nonexistent=1",
     "--config.data.nonexistent=1: the config has no field 'nonexistent'"),
    ("--config.nothing.here=1", "--config.nothing.here=1: the config has no field 'nothing'"),
    ("--config.batch_size=abc", "flag --config.batch_size=abc: invalid literal for int"),
    ("--config.data.random_crop=maybe",
     "flag --config.data.random_crop=maybe: ('Non-boolean argument"),
])
@pytest.mark.parametrize("explicit", [True, False])
def test_bad_config_flags_name_the_flag(flag, message, explicit, capsys):
  with pytest.raises(SystemExit) as e:
    _parse(flag, explicit=explicit)
  assert e.value.code == 1
  assert capsys.readouterr().err.startswith("FATAL Flags parsing error: " + message)


@pytest.mark.e2e
def test_bad_config_flag_ends_the_program_with_one_line(tmp_path):
  script = tmp_path / "prog.py"
  script.write_text(
      "from absl import app\nfrom revgm_jax.cli import cli_flags\n"
      f"cli_flags.define_config_file('config', {CONFIG!r})\n"
      "app.run(lambda argv: print('ran'), flags_parser=cli_flags.parse_flags)\n")
  for argv in (["--config.data.nonexistent=1"],
               [f"--config={CONFIG}", "--config.data.nonexistent=1"]):
    out = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True,
                         cwd=REPO, timeout=120)
    assert out.returncode == 1 and "ran" not in out.stdout
    assert ("FATAL Flags parsing error: --config.data.nonexistent=1: the config has no field "
            "'nonexistent'") in out.stderr
    assert "Traceback" not in out.stderr
