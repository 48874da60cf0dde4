"""`revgm parse` end to end on a tiny trained workdir: output, JSON, bad files, exit codes."""

import json
import os
import subprocess
import sys
import tomllib

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

import tiny_run
from revgm_jax import cli, inference, parse
from revgm_jax import workdir as workdir_lib
from revgm_jax.labels import RED116


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, red116_dir):
  return tiny_run.trained(tmp_path_factory, red116_dir)


@pytest.fixture
def folder(tiny, tmp_path):
  """5 images of a test GM, a text file, a corrupt .png and a sub-folder."""
  _, config = tiny
  src = os.path.join(config.data.image_dir, "STARGAN")
  for name in sorted(os.listdir(src))[:5]:
    with open(os.path.join(src, name), "rb") as f, open(tmp_path / name, "wb") as g:
      g.write(f.read())
  (tmp_path / "notes.txt").write_text("not an image")
  (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
  (tmp_path / "sub").mkdir()
  return tmp_path


def _json(capsys, argv):
  rc = parse.main(argv)
  out = capsys.readouterr()
  return rc, (json.loads(out.out) if rc == 0 else None), out.err


def test_parse_json_schema_and_skipped_files(tiny, folder, capsys):
  workdir, _ = tiny
  rc, res, err = _json(capsys, ["--checkpoint", workdir, str(folder), "--json",
                                str(folder / "missing.png")])
  assert rc == 0
  assert res["num_images"] == 5 and len(res["images"]) == 5
  assert res["checkpoint"]["workdir"] == workdir and res["checkpoint"]["which"] == "best"
  assert isinstance(res["checkpoint"]["step"], int) and res["space"] == "red116"
  reasons = {os.path.basename(s["path"]): s["reason"] for s in res["skipped"]}
  assert sorted(reasons) == ["broken.png", "missing.png", "notes.txt", "sub"]
  assert "cannot be decoded" in reasons["broken.png"]
  assert "no such file" in reasons["missing.png"]
  assert "not an image file name" in reasons["notes.txt"]
  for name in reasons:
    assert f"skipped {os.path.join(str(folder), name)}" in err
  assert [c["name"] for c in res["continuous"]] == list(RED116.continuous_names)
  for c in res["continuous"]:
    lo, hi = c["range"]
    assert 0 <= c["normalized"] <= 1
    assert c["value"] == pytest.approx(lo + c["normalized"] * (hi - lo))
  assert [d["name"] for d in res["discrete"]] == list(RED116.discrete_names)
  for d, classes in zip(res["discrete"], RED116.class_names):
    assert list(d["probabilities"]) == list(classes)
    assert sum(d["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    best = max(d["probabilities"].values())
    assert d["probabilities"][d["prediction"]] == d["probability"] == best
  assert [t["name"] for t in res["loss_types"]] == list(RED116.loss_names)
  assert [t["group"] for t in res["loss_types"][:5]] == ["pixel"] * 4 + ["distribution"]
  for t in res["loss_types"] + res["loss_groups"]:
    assert 0 <= t["probability"] <= 1 and t["predicted"] == (t["probability"] > 0.5)
  assert [g["name"] for g in res["loss_groups"]] == list(RED116.group_names)


def test_parse_is_the_mean_of_per_image_predictions(tiny, folder, capsys):
  workdir, config = tiny
  rc, res, _ = _json(capsys, ["--checkpoint", workdir, str(folder), "--json"])
  loaded = inference.load(workdir)
  images, used, _ = inference.load_images(sorted(res["images"]), loaded.config)
  assert used == sorted(res["images"])
  pred = inference.predict(loaded, images)["pred"]
  np.testing.assert_allclose([c["normalized"] for c in res["continuous"]],
                             pred["cont"].mean(0), atol=1e-6)
  np.testing.assert_allclose(list(res["discrete"][0]["probabilities"].values()),
                             pred["disc"][0].mean(0), atol=1e-6)
  np.testing.assert_allclose([t["probability"] for t in res["loss_types"]],
                             pred["loss"].mean(0), atol=1e-6)
  rc, fp, _ = _json(capsys, ["--checkpoint", workdir, str(folder), "--json",
                             "--aggregate", "fingerprint"])
  assert rc == 0 and fp["aggregate"] == "fingerprint" and fp["num_images"] == 5


def test_parse_text_output_and_checkpoint_paths(tiny, folder, capsys):
  workdir, _ = tiny
  step = sorted(os.listdir(os.path.join(workdir, "latest")))[-1]
  assert cli.main(["parse", "--checkpoint", os.path.join(workdir, "latest", step),
                   str(folder)]) == 0
  out = capsys.readouterr().out
  assert "Parsed 5 image(s) as one generator" in out and f"(latest, step {step})" in out
  for name in ("num_params", "normalization_type", "cross_entropy", "classification"):
    assert name in out
  assert workdir_lib.resolve_checkpoint(workdir) == (workdir, "best", None)
  assert workdir_lib.resolve_checkpoint(os.path.join(workdir, "latest")) == (
      workdir, "latest", None)
  assert workdir_lib.resolve_checkpoint(os.path.join(workdir, "latest", step)) == (
      workdir, "latest", int(step))


def test_no_readable_image_is_exit_1_and_bad_checkpoint_exit_2(tiny, tmp_path, capsys):
  workdir, _ = tiny
  (tmp_path / "a.png").write_bytes(b"garbage")
  (tmp_path / "b.txt").write_text("text")
  assert parse.main(["--checkpoint", workdir, str(tmp_path)]) == 1
  err = capsys.readouterr().err
  assert "no readable image" in err and "a.png" in err and "b.txt" in err
  assert parse.main(["--checkpoint", str(tmp_path), str(tmp_path)]) == 2
  assert "neither a training workdir" in capsys.readouterr().err
  assert parse.main(["--checkpoint", str(tmp_path / "nope"), str(tmp_path)]) == 2
  assert "does not exist" in capsys.readouterr().err


def test_large_image_is_resized_like_training(tiny, tmp_path):
  _, config = tiny
  rng = np.random.default_rng(0)
  big = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
  Image.fromarray(big).save(tmp_path / "big.png")
  images, used, skipped = inference.load_images([str(tmp_path / "big.png")], config)
  assert images.shape == (1, 16, 16, 3) and not skipped
  want = tf.image.resize(big, [16, 16], method="bilinear", antialias=True).numpy()
  np.testing.assert_allclose(images[0], (want / 255 - config.data.mean) / config.data.std,
                             atol=1e-5)


def test_console_script(tiny, folder):
  """The `revgm` entry point pyproject.toml declares, run as `pip install` makes it run, in a
  fresh process (the installed script may belong to another checkout); exit status 1 here."""
  workdir, _ = tiny
  with open(os.path.join(tiny_run.REPO, "pyproject.toml"), "rb") as f:
    module, function = tomllib.load(f)["project"]["scripts"]["revgm"].split(":")
  script = f"import sys, {module}; sys.exit({module}.{function}())"
  proc = subprocess.run([sys.executable, "-c", script, "parse", "--checkpoint", workdir,
                         str(folder / "broken.png"), str(folder / "notes.txt"), "--json"],
                        capture_output=True, text=True, cwd=tiny_run.REPO, timeout=300)
  assert proc.returncode == 1 and proc.stdout == ""
  assert "cannot be decoded" in proc.stderr and "no readable image" in proc.stderr
