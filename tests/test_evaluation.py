"""The evaluation report (files, tables) and the evaluation of a trained workdir."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from support import tiny_run
from revgm_jax import config_utils, labels, inference
from revgm_jax.data import splits
from revgm_jax import workdir as workdir_lib
from revgm_jax.evaluation import aggregate, baselines, metrics, parsing, report, run

SPACE = labels.RED116


def _results(red116_dir):
  """A results dict as parsing.evaluate makes it, from labels: majority vs a perfect model."""
  gt = labels.load_ground_truth(red116_dir, "red116")
  split = splits.split_gms(gt, test_set=1)
  te = np.repeat(gt.rows(split["test"]), 2)  # 2 "images" per GM
  target = {"net": gt.net[te], "loss": gt.loss[te], "loss_group": gt.loss_group[te]}
  perfect = baselines.label_predictions(gt, te)
  majority = baselines.majority_predictions(gt, gt.rows(split["train"]), len(te))
  methods = {"model": metrics.parsing_metrics(perfect, target, SPACE),
             "majority": metrics.parsing_metrics(majority, target, SPACE)}
  return {"name": "test set 1", "split": "test", "step": 7, "space": "red116",
          "gms": split["test"], "num_images": len(te), "methods": methods,
          "k_images": {"model": aggregate.k_image_metrics(perfect, target, te, (1, 2, 5), SPACE)},
          "confusion": [c.tolist() for c in metrics.confusion(perfect, target, SPACE)]}


def test_report_files_tables_and_figures(red116_dir, tmp_path):
  results = _results(red116_dir)
  rng = np.random.default_rng(0)
  fps = {gm: {"image": rng.random((16, 16, 3)), "fingerprint": rng.normal(size=(16, 16, 3)),
              "spectrum": rng.random((16, 16))} for gm in results["gms"][:2]}
  paths = report.write_report(str(tmp_path), results, SPACE, fingerprints=fps)
  names = sorted(p.rsplit("/", 1)[1] for p in paths)
  assert names == ["confusion.png", "fingerprints.png", "k_images.png", "metrics.json",
                   "per_hyperparameter.png", "report.md"]
  for p in paths:
    if p.endswith(".png"):
      with open(p, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  back = json.loads((tmp_path / "metrics.json").read_text())
  assert back["methods"]["model"]["cont_l1"] == 0.0
  assert back["methods"]["majority"]["cont_l1"] == results["methods"]["majority"]["cont_l1"]
  md = (tmp_path / "report.md").read_text()
  maj = results["methods"]["majority"]
  assert "| deep parser (ours) | 0.000 | 1.000 | 1.000 | 1.000 | 1.000 |" in md
  assert f"| mean / majority | {maj['cont_l1']:.3f} | {maj['net_acc']:.3f} | " in md
  assert "| group: pixel |" in md and "| num_params |" in md and "| deep parser (ours) | 2 | 12 |" in md


def test_report_without_figures_and_summary_over_sets(red116_dir, tmp_path):
  results = _results(red116_dir)
  paths = report.write_report(str(tmp_path), results, SPACE, figures=False)
  assert sorted(p.rsplit("/", 1)[1] for p in paths) == ["metrics.json", "report.md"]
  shifted = json.loads(json.dumps(results))
  shifted["methods"]["model"]["cont_l1"] = 0.1
  per_set = {"1": results, "2": shifted}
  combined = {m: metrics.combine({s: r["methods"][m] for s, r in per_set.items()})
              for m in ("model", "majority")}
  md = report.summary_markdown(per_set, combined)
  assert "| mean ± std (2 sets) | deep parser (ours) | 0.050 ± 0.050 | 1.000 ± 0.000 |" in md
  assert md.count("| 2 | deep parser (ours) |") == 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, red116_dir):
  return tiny_run.trained(tmp_path_factory, red116_dir)


@pytest.fixture(scope="module")
def evaluated(tiny, tmp_path_factory):
  """The tiny run evaluated with a random-GT twin: a copy of it marked shuffle_labels."""
  workdir, config = tiny
  twin = str(tmp_path_factory.mktemp("rgt") / "run")
  shutil.copytree(workdir, twin, ignore=shutil.ignore_patterns("report"))
  cfg = json.loads(open(os.path.join(twin, "config.json")).read())
  cfg["data"]["shuffle_labels"] = True
  with open(os.path.join(twin, "config.json"), "w") as f:
    json.dump(cfg, f)
  config = config_utils.with_overrides(  # figures are off in the :tiny preset
      config, {"eval.random_gt_workdir": twin, "eval.figures": True})
  out = str(tmp_path_factory.mktemp("report"))
  return run.evaluate_checkpoint(config, workdir, out_dir=out), out, config


def test_evaluate_workdir_results_and_report(evaluated, red116_dir):
  results, out, _ = evaluated
  assert results["gms"] == list(tiny_run.TEST_GMS)
  assert results["num_images"] == len(tiny_run.TEST_GMS) * tiny_run.IMAGES_PER_GM
  assert list(results["methods"]) == ["model", "spectral", "parser", "random_gt", "majority",
                                      "retrieval", "retrieval_features"]
  assert sorted(os.listdir(out)) == ["confusion.png", "fingerprints.png", "k_images.png",
                                     "metrics.json", "per_hyperparameter.png", "report.md"]
  # The twin has the same weights, so its row must equal the model's.
  for key in metrics.HEADLINE:
    assert results["methods"]["random_gt"][key] == results["methods"]["model"][key], key
  # Majority: the GM-level predictor of the training GMs, every test image weighted equally.
  gt = labels.load_ground_truth(red116_dir, "red116")
  train = [g for g in tiny_run.GMS if g not in tiny_run.TEST_GMS]
  assert len(train) == 6  # 5 training + 1 validation GM, the validation one is not counted
  te = gt.rows(tiny_run.TEST_GMS)
  target = {"net": gt.net[te], "loss": gt.loss[te], "loss_group": gt.loss_group[te]}
  train_rows = gt.rows([g for g in train if g != _val_gm(out)])
  expected = metrics.parsing_metrics(baselines.majority_predictions(gt, train_rows, len(te)),
                                     target, gt.space)
  for key in ("cont_l1", "net_acc", "net_f1", "loss_f1"):
    assert results["methods"]["majority"][key] == pytest.approx(expected[key]), key
  curve = results["k_images"]
  assert list(curve) == ["model", "model_mean_fingerprint", "spectral", "parser", "random_gt",
                         "majority", "retrieval", "retrieval_features"]
  assert sorted(curve["model"]) == [1, 2, 5]
  assert [curve["model"][k]["num_samples"] for k in (1, 2, 5)] == [20, 10, 4]
  assert curve["model"][1]["cont_l1"] == pytest.approx(results["methods"]["model"]["cont_l1"])
  # The mean of one fingerprint is that fingerprint: k = 1 agrees across the two aggregations.
  assert curve["model_mean_fingerprint"][1]["cont_l1"] == pytest.approx(
      curve["model"][1]["cont_l1"], abs=1e-5)
  assert curve["majority"][5]["cont_l1"] == pytest.approx(curve["majority"][1]["cont_l1"])
  back = json.loads(open(os.path.join(out, "metrics.json")).read())
  assert back["methods"]["model"]["cont_l1"] == results["methods"]["model"]["cont_l1"]
  assert back["step"] == results["step"] and back["checkpoint"] == "best"


def _val_gm(report_dir):
  workdir = json.loads(open(os.path.join(report_dir, "metrics.json")).read())["workdir"]
  return json.loads(open(os.path.join(workdir, "labels.json")).read())["split"]["val"][0]


def test_model_row_matches_parsing_the_image_files(evaluated, tiny):
  """The evaluation's TFRecord path and `parse`'s file path give the same predictions."""
  results, _, config = evaluated
  workdir, _ = tiny
  loaded = inference.load(workdir, config)
  gt = loaded.gt
  preds, rows = [], []
  for gm in tiny_run.TEST_GMS:
    folder = os.path.join(config.data.image_dir, gm)
    images, used, skipped = inference.load_images(
        sorted(os.path.join(folder, f) for f in os.listdir(folder)), loaded.config)
    assert not skipped and len(used) == tiny_run.IMAGES_PER_GM
    preds.append(inference.predict(loaded, images)["pred"])
    rows += [gt.row(gm)] * len(used)
  pred = jax.tree.map(lambda *a: np.concatenate(a, 0), *preds)
  rows = np.array(rows)
  target = {"net": gt.net[rows], "loss": gt.loss[rows], "loss_group": gt.loss_group[rows]}
  m = metrics.parsing_metrics(pred, target, gt.space)
  for key in ("cont_l1", "net_acc", "loss_acc"):
    assert m[key] == pytest.approx(results["methods"]["model"][key], abs=1e-5), key


def test_random_gt_workdir_must_be_a_shuffled_run_of_the_same_split(tiny, tmp_path):
  workdir, config = tiny
  config = config_utils.with_overrides(  # trained on the true labels
      config, {"eval.random_gt_workdir": workdir})
  with pytest.raises(ValueError, match="shuffle_labels=True"):
    run.evaluate_checkpoint(config, workdir, out_dir=str(tmp_path))


def test_a_run_of_another_split_rule_is_refused_not_evaluated_on_other_gms(tiny, tmp_path):
  """A run whose recorded validation GMs differ from what the code draws now (the rule changed
  on 2026-11-29) would get its baselines and calibration from other GMs: refused, named."""
  workdir, config = tiny
  copy = str(tmp_path / "run")
  shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns("lock"))
  path = os.path.join(copy, "labels.json")
  info = json.load(open(path))
  split = info["split"]
  split["val"][0], split["train"][0] = split["train"][0], split["val"][0]
  with open(path, "w") as f:
    json.dump(info, f)
  with pytest.raises(workdir_lib.WorkdirError,
                     match=r"trained with other train GMs .*2 differ.*split rule"):
    run.evaluate_checkpoint(config, copy, out_dir=str(tmp_path / "report"))


def test_summary_over_sets(evaluated, tmp_path):
  results, _, _ = evaluated
  other = json.loads(json.dumps(results))
  other["name"] = "test set 2"
  other["methods"]["model"]["cont_l1"] = results["methods"]["model"]["cont_l1"] + 0.1
  summary = parsing.write_summary(str(tmp_path), {"test set 1": results, "test set 2": other})
  assert sorted(os.listdir(tmp_path)) == ["summary.json", "summary.md", "summary_k_images.png"]
  k1 = summary["k_images_mean_std"]["model"]["1"]["cont_l1"]  # the same curve in both sets
  assert k1["n"] == 2 and k1["std"] == pytest.approx(0.0, abs=1e-12)
  stats = summary["mean_std"]["model"]["cont_l1"]
  assert stats["n"] == 2 and stats["std"] == pytest.approx(0.05)
  assert stats["mean"] == pytest.approx(results["methods"]["model"]["cont_l1"] + 0.05)
  assert "mean ± std (2 sets)" in (tmp_path / "summary.md").read_text()
