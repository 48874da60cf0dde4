"""The report of a detection or attribution evaluation: metrics.json, report.md, figures.

`results` is what `revgm_jax.evaluation.classification.evaluate` returns; `curves` holds what
only the figures need: {"roc": {name: {"fpr", "tpr"}}, "reliability": bins of
`task_metrics.reliability`}. Figures: ROC curves, the reliability diagram and, for
attribution, the confusion matrix (docs/tasks.md#metrics).
"""

from __future__ import annotations

import json
import os
from typing import Mapping

import numpy as np

from revgm_jax import workdir as workdir_lib
from revgm_jax.evaluation.report import _table, fmt, plt

DETECTION_COLUMNS = (("AUC ↑", "auc"), ("AP ↑", "ap"), ("acc@0.5 ↑", "accuracy"),
                     ("EER ↓", "eer"), ("ECE ↓", "ece"), ("real", "num_real"),
                     ("generated", "num_generated"))
OPEN_COLUMNS = (("AUROC ↑", "auroc"), ("OSCR ↑", "oscr"), ("TNR@95%TPR ↑", "tnr_at_95tpr"),
                ("closed-set acc ↑", "closed_set_accuracy"), ("threshold", "threshold"),
                ("known accepted", "known_accepted"), ("unknown rejected", "unknown_rejected"))
DETECTION_SETS = {"known": "known GMs (test images) vs real",
                  "unseen": "held-out GMs (never trained on) vs real"}


def _cell(v):
  return v if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else fmt(v)


def tables(results: Mapping) -> list[str]:
  """The headline tables of a detection or attribution result."""
  m = results["metrics"]
  if results["task"] == "detection":
    lines = _table(["images", *(c for c, _ in DETECTION_COLUMNS)],
                   [[DETECTION_SETS[k], *(_cell(m[k].get(key)) for _, key in DETECTION_COLUMNS)]
                    for k in DETECTION_SETS if k in m])
    if m.get("unseen_gms"):
      lines += ["", "AUC of each held-out GM against the real test images:", ""]
      lines += _table(["held-out GM", "AUC ↑"], [[g, fmt(v)] for g, v in m["unseen_gms"].items()])
    return lines
  c = m["closed"]
  lines = _table(["closed set", "accuracy ↑", "macro-F1 ↑", "ECE ↓", "classes", "images"],
                 [["known GMs + real", fmt(c["accuracy"]), fmt(c["macro_f1"]), fmt(c["ece"]),
                   len(results["classes"]), results["num_images"]]])
  if m["open"]:
    chosen = results["methods"]["model"]["open_set_score"]
    lines += ["", f"Open set: test images of the known classes vs the "
              f"{results['num_unknown_images']} images of the {len(results['unknown_gms'])} "
              f"held-out GMs; `revgm attribute` decides with **{chosen}**:", ""]
    lines += _table(["score", *(h for h, _ in OPEN_COLUMNS)],
                    [[k, *(fmt(d.get(key)) for _, key in OPEN_COLUMNS)]
                     for k, d in m["open"].items()])
  return lines


def markdown(results: Mapping) -> str:
  lines = [f"# {results['task'].capitalize()}: {results['name']}", "",
           f"Checkpoint {results['workdir']} ({results['checkpoint']}, step {results['step']}); "
           f"{results['num_images']} test images of {len(results['known_gms'])} known GMs and "
           f"real; unknown GMs: {', '.join(results['unknown_gms']) or 'none'}.", ""]
  lines += tables(results)
  if results["task"] == "attribution":
    lines += ["", "Confusion matrix (rows: true class, columns: predicted; "
              f"classes {', '.join(results['classes'])}): confusion.png and metrics.json."]
  return "\n".join(lines) + "\n"


def results_table(results: Mapping) -> str:
  """What `python train.py` prints for these tasks: validation of the last and selected step,
  then the report's tables."""
  report = results["report"]
  cols = ("score", "loss", "ce", "auc", "accuracy", "macro_f1")
  rows = [[f"last ({results['last_step']})", *(fmt((results["val_last"] or {}).get(k))
                                               for k in cols)],
          [f"selected ({results['selected_step']})",
           *(fmt((results["val_selected"] or {}).get(k)) for k in cols)]]
  return "\n".join(["validation images:", "", *_table(["step", *cols], rows), "",
                    f"{report['name']} ({report['checkpoint']} step {report['step']}):", "",
                    *tables(report)])


def _roc_figure(rocs: Mapping, path: str, title: str):
  fig, ax = plt.subplots(figsize=(4.5, 4.5))
  for name, r in rocs.items():
    if r is not None:
      ax.plot(r["fpr"], r["tpr"], label=name)
  ax.plot([0, 1], [0, 1], ":", color="grey")
  ax.set_xlabel("false positive rate")
  ax.set_ylabel("true positive rate")
  ax.set_title(title, fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _reliability_figure(bins: Mapping, path: str):
  n = len(bins["count"])
  centres = (np.arange(n) + 0.5) / n
  count = np.asarray(bins["count"])
  acc = np.where(count > 0, bins["accuracy"], np.nan)
  fig, ax = plt.subplots(figsize=(4.5, 4.5))
  ax.bar(centres, acc, width=1 / n, edgecolor="black", label="accuracy")
  ax.plot([0, 1], [0, 1], ":", color="grey", label="perfect calibration")
  ax.set_xlabel("confidence (probability of the predicted class)")
  ax.set_ylabel("accuracy")
  ax.set_title("Reliability diagram", fontsize=9)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _confusion_figure(confusion, names, path: str):
  cm = np.asarray(confusion)
  size = max(4.0, 0.18 * len(names))
  fig, ax = plt.subplots(figsize=(size, size))
  ax.imshow(cm / np.maximum(cm.sum(1, keepdims=True), 1), cmap="Blues")
  ax.set_xticks(range(len(names)), names, rotation=90, fontsize=5)
  ax.set_yticks(range(len(names)), names, fontsize=5)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title("Attribution confusion (row-normalised)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_report(out_dir: str, results: Mapping, curves: Mapping, figures: bool = True
                 ) -> list[str]:
  """Writes metrics.json, report.md and (optionally) the figures; returns the written paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = [os.path.join(out_dir, workdir_lib.METRICS_FILE), os.path.join(out_dir, "report.md")]
  with open(paths[0], "w") as f:
    json.dump(results, f, indent=1)
  with open(paths[1], "w") as f:
    f.write(markdown(results))
  if figures:
    title = ("Detection ROC" if results["task"] == "detection"
             else "Open-set ROC (known vs held-out GMs)")
    if any(r is not None for r in curves.get("roc", {}).values()):
      paths.append(os.path.join(out_dir, "roc.png"))
      _roc_figure(curves["roc"], paths[-1], title)
    paths.append(os.path.join(out_dir, "reliability.png"))
    _reliability_figure(curves["reliability"], paths[-1])
    if results["task"] == "attribution":
      paths.append(os.path.join(out_dir, "confusion.png"))
      _confusion_figure(results["confusion"], results["classes"], paths[-1])
  return paths
