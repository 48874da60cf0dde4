"""Model-parsing metrics (docs/protocol.md#metrics), with scikit-learn's definitions.

Predictions and targets are plain NumPy dicts, one row per scored sample (an image, or a group of
k images of one GM after `aggregate.aggregate`):

  pred   = {"cont": [N, 9] in [0, 1], "disc": 6 x [N, k] class probabilities,
            "group": [N, G] P(yes), "loss": [N, L] gated P(yes)}   (losses.parsing.predictions)
  target = {"net": [N, 15] (9 normalised values, 6 class indices), "loss": [N, L] int,
            "loss_group": [N, G] int}                                (the batch label keys)

The result is a flat dict so that test sets can be combined key by key (`combine`):
  cont_l1/<name>, cont_l1 (mean over the 9), cont_l1_std (std over the 9)
  net_acc/<name>, net_f1/<name>, net_acc, net_f1                         (6 discrete heads)
  loss_acc/<name>, loss_f1/<name>, loss_auc/<name>, loss_acc, loss_f1, loss_auc
  group_acc/<name>, group_f1/<name>, group_auc/<name>, group_acc, group_f1, group_auc
  num_samples
F1 is macro F1 over the classes present in target or prediction (`average="macro",
zero_division=0`, the 116 eval script). AUC is only defined when both classes occur in the
targets; otherwise it is None ("N/A") and the mean is over the defined ones (`*_auc_defined`
counts them; the mean is None when none is defined).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

from revgm_jax.labels import NUM_CONTINUOUS, Space

HEADLINE = ("cont_l1", "net_acc", "net_f1", "loss_acc", "loss_f1", "loss_auc",
            "group_acc", "group_f1", "group_auc")


def _mean(values: Sequence[float | None]) -> float | None:
  defined = [v for v in values if v is not None]
  return float(np.mean(defined)) if defined else None


def binary_scores(p_yes: np.ndarray, y: np.ndarray) -> tuple[float, float, float | None]:
  """Accuracy, macro-F1 and ROC AUC of P(yes) scores against 0/1 targets.

  The predicted class is the 2-way argmax, i.e. yes iff P(yes) > 0.5 (a tie goes to "no", as
  `argmax([1 - p, p])` does).
  """
  y = np.asarray(y).astype(np.int64)
  pred = (np.asarray(p_yes) > 0.5).astype(np.int64)
  acc = float(accuracy_score(y, pred))
  f1 = float(f1_score(y, pred, average="macro", zero_division=0))
  auc = float(roc_auc_score(y, p_yes)) if len(np.unique(y)) == 2 else None
  return acc, f1, auc


def _binary_family(prefix: str, names: Sequence[str], p_yes: np.ndarray,
                   y: np.ndarray) -> dict:
  out = {}
  scores = [binary_scores(p_yes[:, i], y[:, i]) for i in range(len(names))]
  for (acc, f1, auc), name in zip(scores, names):
    out[f"{prefix}_acc/{name}"], out[f"{prefix}_f1/{name}"] = acc, f1
    out[f"{prefix}_auc/{name}"] = auc
  out[f"{prefix}_acc"] = _mean([s[0] for s in scores])
  out[f"{prefix}_f1"] = _mean([s[1] for s in scores])
  out[f"{prefix}_auc"] = _mean([s[2] for s in scores])
  out[f"{prefix}_auc_defined"] = sum(s[2] is not None for s in scores)
  return out


def parsing_metrics(pred: Mapping, target: Mapping, space: Space) -> dict:
  """All parsing metrics of `pred` against `target` (see the module docstring)."""
  net = np.asarray(target["net"])
  n = len(net)
  if n == 0:
    raise ValueError("parsing_metrics: no sample to score")
  out = {"num_samples": n}
  l1 = np.abs(np.asarray(pred["cont"], np.float64) - net[:, :NUM_CONTINUOUS]).mean(0)  # [9]
  for name, v in zip(space.continuous_names, l1):
    out[f"cont_l1/{name}"] = float(v)
  out["cont_l1"], out["cont_l1_std"] = float(l1.mean()), float(l1.std())
  accs, f1s = [], []
  for j, name in enumerate(space.discrete_names):
    y = net[:, NUM_CONTINUOUS + j].astype(np.int64)
    p = np.asarray(pred["disc"][j]).argmax(-1)
    accs.append(float(accuracy_score(y, p)))
    f1s.append(float(f1_score(y, p, average="macro", zero_division=0)))
    out[f"net_acc/{name}"], out[f"net_f1/{name}"] = accs[-1], f1s[-1]
  out["net_acc"], out["net_f1"] = _mean(accs), _mean(f1s)
  out.update(_binary_family("loss", space.loss_names, np.asarray(pred["loss"]),
                            np.asarray(target["loss"])))
  out.update(_binary_family("group", space.group_names, np.asarray(pred["group"]),
                            np.asarray(target["loss_group"])))
  return out


def confusion(pred: Mapping, target: Mapping, space: Space) -> list[np.ndarray]:
  """6 confusion matrices [k, k] (rows: true class, columns: predicted) of the discrete heads."""
  out = []
  for j, k in enumerate(space.discrete_classes):
    y = np.asarray(target["net"])[:, NUM_CONTINUOUS + j].astype(np.int64)
    p = np.asarray(pred["disc"][j]).argmax(-1)
    out.append(confusion_matrix(y, p, labels=np.arange(k)))
  return out


def combine(per_set: Mapping[str, Mapping]) -> dict:
  """Mean and std (population, ddof=0) over test sets, key by key: {key: {"mean", "std", "n"}}.

  None values (an undefined AUC) are left out of that key's statistics; a key undefined in every
  set maps to mean/std None.
  """
  keys = sorted({k for m in per_set.values() for k in m})
  out = {}
  for key in keys:
    vals = [m[key] for m in per_set.values() if m.get(key) is not None]
    out[key] = {"mean": float(np.mean(vals)) if vals else None,
                "std": float(np.std(vals)) if vals else None, "n": len(vals)}
  return out
