"""Detection and attribution end to end on tiny folders: data errors, the model's shapes, one
trained run of each task (report, metrics.json), `revgm detect` / `revgm attribute` (JSON
schema, bad files, exit codes, a checkpoint of another task)."""

import json
import os
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from support import pipeline, tiny_run, tiny_tasks
from revgm_jax import input_pipeline, sharding, tasks
from revgm_jax.cli import main as cli
from revgm_jax.cli import parse
from revgm_jax.data import builder
from revgm_jax.tasks import classify

TASKS = ("detection", "attribution")


@pytest.fixture(scope="module", params=TASKS)
def trained(request, tmp_path_factory, red116_dir):
  return request.param, *tiny_tasks.trained(request.param, tmp_path_factory, red116_dir)


def _datasets(task, root, red116_dir, **overrides):
  c = tiny_tasks.config(task, str(root), red116_dir, **overrides)
  return pipeline.datasets(c, sharding.make_mesh(jax.devices()[:1])), c


@pytest.mark.parametrize("task", TASKS)
def test_split_labels_and_model_shapes(task, tmp_path, red116_dir):
  ds, c = _datasets(task, tmp_path, red116_dir)
  assert ds.split["unknown"] == ["BIGGAN_128", "STARGAN"]  # leave-out set 1
  assert ds.split["train"][-1] == "real" and ds.split["train"] == ds.split["test"]
  k = 2 if task == "detection" else len(ds.split["train"])
  # 10 images per class: 6 train, 2 val, 2 test each (fractions 0.2 / 0.2).
  assert ds.num_images("train") == 6 * 7 and ds.num_images("test") == 2 * 7
  batch = next(ds.eval_iter("test"))
  labels = np.asarray(batch["label"])[np.asarray(batch["mask"])]
  real = np.asarray(batch["gm_row"])[np.asarray(batch["mask"])] == builder.REAL_ROW
  assert real.sum() == 2
  real_class = 0 if task == "detection" else k - 1
  assert np.all(labels[real] == real_class) and np.all(labels[~real] != real_class)
  unknown = next(ds.eval_iter("unknown"))
  assert set(np.asarray(unknown["label"])[np.asarray(unknown["mask"])]) == (
      {1} if task == "detection" else {-1})
  model = tasks.create_model(c, ds.gt.space, ds.split)
  (f, out), _ = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), jnp.zeros((3, 16, 16, 3)), train=False))
  assert f.shape == (3, 16, 16, 3) and out["logits"].shape == (3, k)
  assert out["embedding"].shape == (3, c.model.fc_width)


def test_weighted_ce_by_hand():
  logits = jnp.array([[0.0, np.log(3.0)], [0.0, 0.0], [5.0, 0.0]])  # CE of label 1: log(4/3)
  label, mask = jnp.array([1, 0, 0]), jnp.array([True, True, False])
  ce = classify.weighted_ce(logits, label, jnp.array([1.0, 3.0]), mask)
  # (3 log(4/3) + 1 log 2) / (3 + 1); the masked third example is left out.
  assert float(ce) == pytest.approx((3 * np.log(4 / 3) + np.log(2)) / 4, rel=1e-6)


def test_data_errors(tmp_path, red116_dir):
  root = tmp_path / "d"
  image_dir = tiny_tasks.write_data(str(root))
  shutil.rmtree(os.path.join(image_dir, "real"))
  with pytest.raises(builder.DataError, match=r"no real images: folder .*real does not exist"):
    _datasets("detection", root, red116_dir)
  os.makedirs(os.path.join(image_dir, "real"))
  with pytest.raises(builder.DataError, match=r"real-image folder .*real is empty"):
    _datasets("detection", root, red116_dir)
  tiny_tasks.write_data(str(tmp_path / "e"))  # a complete folder
  all_test = ",".join(n for n in os.listdir(os.path.join(tmp_path, "e", "images")) if n != "real")
  with pytest.raises(ValueError, match="needs at least two classes"):
    _datasets("attribution", tmp_path / "e", red116_dir, **{"data.test_gms": all_test})
  with pytest.raises(builder.DataError, match=r"class AAE has 10 image\(s\): none left for"):
    _datasets("attribution", tmp_path / "e", red116_dir, **{"data.val_fraction": 0.01})


def test_one_trained_run_reports(trained):
  task, workdir, _ = trained
  with open(os.path.join(workdir, "report", "metrics.json")) as f:
    results = json.load(f)
  assert results["task"] == task and results["unknown_gms"] == ["BIGGAN_128", "STARGAN"]
  model = results["methods"]["model"]
  if task == "detection":
    assert results["classes"] == ["real", "generated"]
    for key in ("known/auc", "known/ap", "known/accuracy", "known/eer", "known/ece",
                "unseen/auc"):
      assert 0.0 <= model[key] <= 1.0, key
    assert model["unseen/num_generated"] == 20 and model["unseen/num_real"] == 2
    assert sorted(results["metrics"]["unseen_gms"]) == ["BIGGAN_128", "STARGAN"]
  else:
    assert len(results["classes"]) == 7
    assert np.asarray(results["confusion"]).sum() == results["num_images"] == 14
    for kind in ("msp", "cosine", "mahalanobis"):
      assert 0.0 <= model[f"open/{kind}/auroc"] <= 1.0
      assert f"open/{kind}/oscr" in model and f"open/{kind}/tnr_at_95tpr" in model
    assert os.path.exists(os.path.join(workdir, "openset", f"best_{results['step']}.npz"))
  assert os.path.exists(os.path.join(workdir, "report", "report.md"))


def _run(capsys, argv):
  rc = cli.main(argv)
  out = capsys.readouterr()
  return rc, (json.loads(out.out) if rc == 0 and "--json" in argv else out.out), out.err


@pytest.fixture
def images(tmp_path, trained):
  """3 images of an unknown GM, a text file and a corrupt .png."""
  src = os.path.join(trained[2].data.image_dir, "STARGAN")
  for name in sorted(os.listdir(src))[:3]:
    shutil.copy(os.path.join(src, name), tmp_path / name)
  (tmp_path / "notes.txt").write_text("not an image")
  (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
  return tmp_path


def test_command_json_and_bad_files(trained, images, capsys):
  task, workdir, _ = trained
  command = "detect" if task == "detection" else "attribute"
  rc, res, err = _run(capsys, [command, "--checkpoint", workdir, str(images), "--json"])
  assert rc == 0 and res["task"] == task and res["num_images"] == len(res["images"]) == 3
  assert sorted(os.path.basename(s["path"]) for s in res["skipped"]) == ["broken.png",
                                                                         "notes.txt"]
  assert "skipped" in err
  for e in res["images"]:
    if task == "detection":
      assert 0.0 <= e["p_generated"] <= 1.0 and e["prediction"] in ("real", "generated")
    else:
      probs = [t["probability"] for t in e["top"]]
      assert len(probs) == 3 and probs == sorted(probs, reverse=True)
      assert {t["source"] for t in e["top"]} <= set(res["classes"])
      o = e["open_set"]
      assert o["score"] == "cosine" and o["unknown"] == (o["value"] < o["threshold"])
      assert e["prediction"] == ("unknown" if o["unknown"] else e["top"][0]["source"])
  if task == "detection":
    assert res["summary"]["num_generated"] + res["summary"]["num_real"] == 3
  else:
    assert sum(res["summary"]["predictions"].values()) == 3
  rc, text, _ = _run(capsys, [command, str(images), "--checkpoint", workdir])
  assert rc == 0 and "Summary" in text


def test_command_exit_codes(trained, images, capsys):
  task, workdir, _ = trained
  command, other = ("detect", "attribute") if task == "detection" else ("attribute", "detect")
  rc, _, err = _run(capsys, [other, "--checkpoint", workdir, str(images)])
  assert rc == 2 and f"holds a model of task {task}" in err and f"revgm {command}" in err
  assert parse.main(["--checkpoint", workdir, str(images)]) == 2
  assert f"task {task}, not parsing" in capsys.readouterr().err
  rc, _, err = _run(capsys, [command, "--checkpoint", workdir, str(images / "notes.txt")])
  assert rc == 1 and "no readable image" in err
  rc, _, err = _run(capsys, [command, "--checkpoint", str(images), str(images)])
  assert rc == 2 and "cannot load checkpoint" in err


def test_eval_py_prints_the_table_of_the_workdir_s_task(trained, tmp_path):
  task, workdir, _ = trained
  status, out = tiny_run.run([sys.executable, "eval.py", f"--workdir={workdir}",
                              f"--out_dir={tmp_path}"])
  assert status == 0, out
  table = ("held-out GMs (never trained on) vs real" if task == "detection"
           else "known GMs + real")
  assert table in out and "L1 cont." not in out, out  # not the parsing table
