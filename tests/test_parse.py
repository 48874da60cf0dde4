"""`revgm parse` end to end on a tiny trained workdir: output, JSON, bad files, exit codes,
calibration, reliability, --each and the visual report."""

import json
import os
import shutil
import subprocess
import sys
import tomllib

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from support import tiny_run
from revgm_jax import inference, input_pipeline
from revgm_jax.cli import main as cli
from revgm_jax.cli import parse, parse_result
from revgm_jax import workdir as workdir_lib
from revgm_jax.evaluation import decisions
from revgm_jax.features import spectral
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
  # docs/parse.md: every documented field, reliability from the workdir's report, calibration.
  assert set(res) == {"checkpoint", "space", "aggregate", "folder", "num_images", "images",
                      "skipped", "calibration", "reliability_source", "continuous", "discrete",
                      "gating", "loss_groups", "loss_types"}
  with open(os.path.join(tiny_run.REPO, "docs", "parse.md")) as f:
    documented = f.read()
  assert all(f"`{key}`" in documented for key in (*res, "error", "report"))
  assert res["folder"] is None and res["calibration"]["applied"]
  assert res["reliability_source"] == workdir_lib.metrics_path(workdir)
  metrics = workdir_lib.read_json(workdir_lib.metrics_path(workdir))["methods"]
  for d in res["discrete"]:
    rel = d["reliability"]
    assert rel["measured"] and rel["metric"] == "macro-F1"
    assert rel["score"] == metrics["parser"][f"net_f1/{d['name']}"]
    assert rel["baselines"]["mean / majority"] == metrics["majority"][f"net_f1/{d['name']}"]
    assert rel["better_than_baselines"] == all(rel["score"] > b for b in rel["baselines"].values())
    assert ("NOT better than a baseline" in rel["text"]) != rel["better_than_baselines"]
  for c in res["continuous"]:
    assert c["reliability"]["metric"] == "L1 (normalised)" and c["answer"] in ("parser", "baseline")
    # A baseline's answer is one value for every image: no interval.
    assert (c["interval"] is None) == (c["answer"] == "baseline")
    if c["integer"] and c["interval"]:
      assert all(isinstance(v, int) for v in (c["rounded"], *c["interval"]))
  for g in res["loss_groups"]:
    assert [t["name"] for t in g["loss_types"]] == [
        t["name"] for t in res["loss_types"] if t["group"] == g["name"]]
    assert all(t["probability"] <= g["probability"] + 1e-9 for t in g["loss_types"])


def test_parse_is_the_mean_of_per_image_answers(tiny, folder, capsys):
  workdir, config = tiny
  rc, res, _ = _json(capsys, ["--checkpoint", workdir, str(folder), "--json"])
  loaded = inference.load(workdir)
  images, used, _ = inference.load_images(sorted(res["images"]), loaded.config)
  assert used == sorted(res["images"])
  calib, _ = parse_result.load_calibration(loaded)
  spectral_parser = parse.load_spectral(loaded, calib)
  features = spectral.image_features(spectral.unit_images(images, config.data.mean,
                                                         config.data.std))
  cands = decisions.candidates(inference.predict(loaded, images)["pred"],
                               spectral_parser.predict(features))
  pred = decisions.answer(cands, calib, loaded.space.group_of_loss)
  for i, c in enumerate(res["continuous"]):
    want = calib["center"][i] if c["answer"] == "baseline" else pred["cont"][:, i].mean()
    assert c["normalized"] == pytest.approx(want, abs=1e-6)
  for j, d in enumerate(res["discrete"]):
    want = calib["prior"][j] if d["answer"] == "baseline" else pred["disc"][j].mean(0)
    np.testing.assert_allclose(list(d["probabilities"].values()), want, atol=1e-6)
  for i, t in enumerate(res["loss_types"]):
    want = calib["loss_rate"][i] if t["answer"] == "baseline" else pred["loss"][:, i].mean()
    assert t["probability"] == pytest.approx(want, abs=1e-6)
  rc, fp, _ = _json(capsys, ["--checkpoint", workdir, str(folder), "--json",
                             "--aggregate", "fingerprint"])
  assert rc == 0 and fp["aggregate"] == "fingerprint" and fp["num_images"] == 5


def test_the_report_scores_what_parse_answers(tiny):
  """The report holds the spectral parser, feature retrieval and the decided answer beside the
  deep parser; the decisions and the spectral parser `revgm parse` applies are in the workdir."""
  workdir, _ = tiny
  methods = workdir_lib.read_json(workdir_lib.metrics_path(workdir))["methods"]
  assert {"model", "spectral", "parser", "majority", "retrieval",
          "retrieval_features"} <= set(methods)
  calib = workdir_lib.read_json(workdir_lib.calibration_path(workdir))
  assert calib["fitted_on"] == "val" and calib["spectral"]
  assert set(calib["sources"]["cont"]) <= set(decisions.SOURCES)
  assert os.path.exists(workdir_lib.spectral_path(workdir))
  with open(os.path.join(workdir_lib.report_dir(workdir), "report.md")) as f:
    md = f.read()
  assert "## The answer of `revgm parse`" in md and "| revgm parse answer |" in md


def test_a_head_measured_no_better_than_its_baseline_answers_the_baseline(
    tiny, folder, tmp_path, capsys):
  """docs/parse.md: where the report's answer does not beat mean / majority, parse gives the
  baseline's answer and says so; where it does, its own."""
  workdir, _ = tiny
  run = tmp_path / "run"
  shutil.copytree(workdir, run)
  path = workdir_lib.metrics_path(str(run))
  doc = workdir_lib.read_json(path)
  m, maj = doc["methods"]["parser"], doc["methods"]["majority"]
  cont, disc, loss = RED116.continuous_names, RED116.discrete_names, RED116.loss_names
  m[f"cont_l1/{cont[0]}"], maj[f"cont_l1/{cont[0]}"] = 0.3, 0.2  # worse than the baseline
  m[f"cont_l1/{cont[1]}"], maj[f"cont_l1/{cont[1]}"] = 0.1, 0.2  # better
  m[f"net_f1/{disc[0]}"], maj[f"net_f1/{disc[0]}"] = 0.2, 0.2  # a tie is no gain
  m[f"loss_f1/{loss[0]}"], maj[f"loss_f1/{loss[0]}"] = 0.4, 0.5
  workdir_lib.write_json(path, doc)
  rc, res, _ = _json(capsys, ["--checkpoint", str(run), str(folder), "--json"])
  calib = workdir_lib.read_json(workdir_lib.calibration_path(str(run)))
  c0, c1 = res["continuous"][:2]
  d0, t0 = res["discrete"][0], res["loss_types"][0]
  assert rc == 0 and (c0["answer"], c1["answer"]) == ("baseline", "parser")
  assert c0["normalized"] == pytest.approx(calib["center"][0]) and c0["interval"] is None
  assert d0["answer"] == "baseline"
  np.testing.assert_allclose(list(d0["probabilities"].values()), calib["prior"][0])
  assert t0["answer"] == "baseline" and t0["probability"] == pytest.approx(calib["loss_rate"][0])
  assert parse.main(["--checkpoint", str(run), str(folder)]) == 0
  text = capsys.readouterr().out
  assert f"{cont[0]}" in text and "baseline: held-out L1" in text


def test_parse_text_output_and_checkpoint_paths(tiny, folder, capsys):
  workdir, _ = tiny
  step = sorted(os.listdir(os.path.join(workdir, "latest")))[-1]
  assert cli.main(["parse", "--checkpoint", os.path.join(workdir, "latest", step),
                   str(folder)]) == 0
  out = capsys.readouterr().out
  assert "Parsed 5 image(s) as one generator" in out and f"(latest, step {step})" in out
  assert "Loss groups, and the loss types within them" in out and "held-out" in out
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


def test_images_of_any_size_are_preprocessed_like_training(tiny, tmp_path):
  """The parse path's NumPy resize (and central crop) against the TensorFlow input pipeline."""
  _, config = tiny
  rng = np.random.default_rng(0)
  big = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
  small = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
  Image.fromarray(big).save(tmp_path / "big.png")
  Image.fromarray(small).save(tmp_path / "small.bmp")
  images, used, skipped = inference.load_images(
      [str(tmp_path / "big.png"), str(tmp_path / "small.bmp")], config)
  assert images.shape == (2, 16, 16, 3) and not skipped
  for got, src in zip(images, (big, small)):
    want = input_pipeline.preprocess(tf.constant(src), 16, False, config.data.mean,
                                     config.data.std).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
  crop = config.copy_and_resolve_references()
  crop.data.random_crop = True
  want = input_pipeline.preprocess(tf.constant(big), 16, True, config.data.mean,
                                   config.data.std).numpy()
  np.testing.assert_allclose(inference.preprocess(big, crop), want, atol=1e-6)


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
  assert proc.returncode == 1 and "error" in json.loads(proc.stdout)  # --json: still JSON
  assert "cannot be decoded" in proc.stderr and "no readable image" in proc.stderr


def _copy_images(src_gm: str, config, dst, n: int):
  dst.mkdir(parents=True)
  src = os.path.join(config.data.image_dir, src_gm)
  for name in sorted(os.listdir(src))[:n]:
    shutil.copy(os.path.join(src, name), dst / name)


def test_each_gives_the_answers_of_one_call_per_folder(tiny, tmp_path, capsys):
  workdir, config = tiny
  _copy_images("STARGAN", config, tmp_path / "cases" / "a", 3)
  _copy_images("BIGGAN_128", config, tmp_path / "cases" / "b", 1)  # a folder of one image
  Image.fromarray(np.full((40, 24, 3), 128, np.uint8)).save(tmp_path / "cases" / "a" / "z.jpg")
  (tmp_path / "cases" / "empty").mkdir()
  assert parse.main(["--checkpoint", workdir, "--each", str(tmp_path / "cases"), "--json"]) == 0
  out = capsys.readouterr()
  docs = [json.loads(line) for line in out.out.splitlines()]
  assert [os.path.basename(d["folder"]) for d in docs] == ["a", "b", "empty"]
  assert [d["num_images"] for d in docs] == [4, 1, 0]  # sizes and formats mixed in "a"
  assert docs[2]["num_images"] == 0 and "no readable image" in docs[2]["error"]
  assert "empty: no readable image" in out.err
  for doc in docs[:2]:
    rc, single, _ = _json(capsys, ["--checkpoint", workdir, doc["folder"], "--json"])
    assert rc == 0
    single["folder"] = doc["folder"]
    assert json.dumps(doc, sort_keys=True) == json.dumps(single, sort_keys=True)
  assert parse.main(["--checkpoint", workdir, "--each", str(tmp_path / "cases" / "empty")]) == 1


def test_older_workdir_without_report_says_not_measured(tiny, folder, tmp_path, capsys):
  workdir, _ = tiny
  old = tmp_path / "old_run"
  shutil.copytree(workdir, old)
  shutil.rmtree(workdir_lib.report_dir(str(old)))
  os.remove(workdir_lib.calibration_path(str(old)))
  rc, res, _ = _json(capsys, ["--checkpoint", str(old), str(folder), "--json"])
  assert rc == 0 and res["reliability_source"] is None and not res["calibration"]["applied"]
  for entry in res["continuous"] + res["discrete"] + res["loss_types"] + res["loss_groups"]:
    assert entry["reliability"] == {"measured": False, "text": "not measured"}
  assert parse.main(["--checkpoint", str(old), str(folder)]) == 0
  assert "not measured" in capsys.readouterr().out


def test_report_file_holds_the_figures_and_the_table(tiny, folder, tmp_path, capsys):
  workdir, _ = tiny
  out = tmp_path / "r" / "parse.html"
  rc, res, _ = _json(capsys, ["--checkpoint", workdir, str(folder), "--json",
                              "--report", str(out)])
  assert rc == 0 and res["report"] == str(out)
  page = out.read_text()
  assert page.count("src='data:image/png;base64,") == 2
  assert "mean fingerprint" in page and "held-out" in page
  for d in res["discrete"]:
    assert d["name"] in page


def test_a_missing_or_corrupt_spectral_parser_is_exit_2_naming_the_file(tiny, folder, tmp_path,
                                                                         capsys):
  workdir, _ = tiny
  run = tmp_path / "run"
  shutil.copytree(workdir, run)
  path = workdir_lib.spectral_path(str(run))
  os.remove(path)
  assert parse.main(["--checkpoint", str(run), str(folder)]) == 2
  assert f"{path} is missing" in capsys.readouterr().err
  with open(path, "w") as f:
    f.write("not an npz")
  assert parse.main(["--checkpoint", str(run), str(folder)]) == 2
  err = capsys.readouterr().err
  assert f"{path} is not a spectral parser saved by revgm_jax" in err and "Traceback" not in err
