"""The evaluation report (files, tables) and the evaluation of a trained workdir."""

import json

import numpy as np

from revgm_jax import hparams
from revgm_jax.evaluation import aggregate, baselines, metrics, report

SPACE = hparams.RED116


def _results(red116_dir):
  """A results dict as run.evaluate_workdir makes it, from labels: majority vs a perfect model."""
  gt = hparams.load_ground_truth(red116_dir, "red116")
  split = hparams.split_gms(gt, test_set=1)
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
  assert "| model (ours) | 0.000 | 1.000 | 1.000 | 1.000 | 1.000 |" in md
  assert f"| mean / majority | {maj['cont_l1']:.3f} | {maj['net_acc']:.3f} | " in md
  assert "| group: pixel |" in md and "| num_params |" in md and "| model (ours) | 2 | 12 |" in md


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
  assert "| mean ± std (2 sets) | model (ours) | 0.050 ± 0.050 | 1.000 ± 0.000 |" in md
  assert md.count("| 2 | model (ours) |") == 1
