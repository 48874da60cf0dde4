"""Open-set scores of the attribution model: how likely an image comes from a known source.

Every score is a "knownness" (higher = more likely known; docs/tasks.md#open-set):
  msp          the maximum softmax probability;
  cosine       the largest cosine similarity of the penultimate embedding to a class mean;
  mahalanobis  minus the smallest Mahalanobis distance (squared) to a class mean under the
               shared (tied) covariance of the training embeddings.
The class means and covariance come from training images, the threshold that decides
"unknown" from validation images of the known classes (the one accepting 95 % of them). They
are saved beside the checkpoint they belong to, so that `revgm attribute` can decide alone.
NumPy only: `revgm attribute` imports this module, and starts without scikit-learn.
"""

from __future__ import annotations

import os

import numpy as np

SCORES = ("msp", "cosine", "mahalanobis")
TPR = 0.95  # share of validation known images the threshold accepts (`classification.py`)
_DIR = "openset"


def fit(embedding, label, num_classes: int, shrinkage: float = 1e-3) -> dict:
  """Class means [K, D] and the precision [D, D] of the tied covariance (shrunk towards its
  mean variance by `shrinkage` so that it is invertible) of training embeddings [N, D]."""
  e, y = np.asarray(embedding, np.float64), np.asarray(label)
  missing = sorted(set(range(num_classes)) - set(y.tolist()))
  if missing:
    raise ValueError(f"no training embedding of class(es) {missing}: cannot fit class means")
  means = np.stack([e[y == k].mean(0) for k in range(num_classes)])
  centred = e - means[y]
  cov = centred.T @ centred / max(len(e) - num_classes, 1)
  cov = (1 - shrinkage) * cov + shrinkage * (np.trace(cov) / len(cov) + 1e-8) * np.eye(len(cov))
  return {"means": means, "precision": np.linalg.inv(cov)}


def score(kind: str, prob, embedding, stats: dict) -> np.ndarray:
  """[N] knownness of images with class probabilities [N, K] and embeddings [N, D]."""
  if kind == "msp":
    return np.asarray(prob).max(1)
  e, means = np.asarray(embedding, np.float64), stats["means"]
  if kind == "cosine":
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    return (unit(e) @ unit(means).T).max(1)
  if kind == "mahalanobis":
    d = e[:, None, :] - means[None]  # [N, K, D]
    return -np.einsum("nkd,de,nke->nk", d, stats["precision"], d).min(1)
  raise ValueError(f"open-set score {kind!r}; use one of {', '.join(SCORES)} "
                   "(config.eval.open_set_score)")


def path(workdir: str, which: str, step: int) -> str:
  return os.path.join(workdir, _DIR, f"{which}_{step}.npz")


def save(workdir: str, which: str, step: int, stats: dict, thresh: dict) -> str:
  p = path(workdir, which, step)
  os.makedirs(os.path.dirname(p), exist_ok=True)
  np.savez(p, means=stats["means"], precision=stats["precision"],
           **{f"threshold_{k}": v for k, v in thresh.items()})
  return p


def load(workdir: str, which: str, step: int) -> tuple[dict, dict] | None:
  """(stats, thresholds) saved for a checkpoint step, or None if it was never evaluated."""
  p = path(workdir, which, step)
  if not os.path.exists(p):
    return None
  with np.load(p, allow_pickle=False) as z:
    return ({"means": z["means"], "precision": z["precision"]},
            {k: float(z[f"threshold_{k}"]) for k in SCORES})
