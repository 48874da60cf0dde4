"""Baselines printed beside the model (docs/protocol.md#baselines), in the `metrics` format.

- majority: the training-GM mean of each continuous value, the training class frequencies of each
  discrete head and loss flag (argmax = majority class). Counted over GMs, one vote each, so it
  matches the GM-level table of docs/protocol.md#trivial-baselines.
- retrieval: the label vector of the training GM whose mean fingerprint has the highest cosine
  similarity with the test image's (or image group's) fingerprint;
- feature retrieval: the same with the fixed image features of `revgm_jax.features` (the
  nearest training GM in standardised feature space).
The third baseline, random ground truth, is a trained model (`config.data.shuffle_labels`); its
metrics come from its own workdir (`run.py`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from revgm_jax.labels import NUM_CONTINUOUS, GroundTruth


def label_predictions(gt: GroundTruth, rows: np.ndarray) -> dict:
  """The label vectors of GT rows as a (certain) prediction: one-hot classes, 0/1 flags."""
  rows = np.asarray(rows)
  net = gt.net[rows]
  disc = [np.eye(k, dtype=np.float32)[net[:, NUM_CONTINUOUS + j].astype(np.int64)]
          for j, k in enumerate(gt.space.discrete_classes)]
  return {"cont": net[:, :NUM_CONTINUOUS].astype(np.float32), "disc": disc,
          "group": gt.loss_group[rows].astype(np.float32), "loss": gt.loss[rows].astype(np.float32)}


def majority_predictions(gt: GroundTruth, train_rows: Sequence[int], n: int) -> dict:
  """The same prediction for all `n` samples, from the label statistics of the training GMs."""
  train = label_predictions(gt, np.asarray(train_rows))
  return {"cont": np.tile(train["cont"].mean(0), (n, 1)),
          "disc": [np.tile(d.mean(0), (n, 1)) for d in train["disc"]],
          "group": np.tile(train["group"].mean(0), (n, 1)),
          "loss": np.tile(train["loss"].mean(0), (n, 1))}


def cosine_nearest(queries: np.ndarray, bank: np.ndarray) -> np.ndarray:
  """[N] index of the bank row most cosine-similar to each query ([N, D] vs [T, D])."""
  q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
  b = bank / np.maximum(np.linalg.norm(bank, axis=1, keepdims=True), 1e-12)
  return (q @ b.T).argmax(1)


def retrieval_predictions(gt: GroundTruth, bank_rows: np.ndarray, bank: np.ndarray,
                          queries: np.ndarray) -> dict:
  """Nearest-training-GM retrieval: bank = [T, D] mean fingerprints of GT rows `bank_rows`."""
  if len(bank) == 0:
    raise ValueError("retrieval baseline: no training GM fingerprint to retrieve from")
  return label_predictions(gt, np.asarray(bank_rows)[cosine_nearest(queries, bank)])


def feature_retrieval_predictions(gt: GroundTruth, bank_rows: np.ndarray, bank: np.ndarray,
                                  queries: np.ndarray, metric: str = "euclidean",
                                  mean: np.ndarray | None = None,
                                  scale: np.ndarray | None = None) -> dict:
  """Nearest training GM in feature space: the labels of the bank GM closest to each query.

  bank: [T, D] mean features of GT rows `bank_rows`; queries: [N, D]. Features are first
  standardised with (mean, scale) (default: the bank's own); metric "euclidean" or "cosine"
  (Euclidean scored higher on the validation GMs of the default zoo's 4 leave-out sets:
  experiments/spectral_parser.py).
  """
  bank = np.asarray(bank, np.float64)
  mean = bank.mean(0) if mean is None else mean
  scale = np.where(bank.std(0) > 1e-8, bank.std(0), 1.0) if scale is None else scale
  b, q = (bank - mean) / scale, (np.asarray(queries, np.float64) - mean) / scale
  if metric == "cosine":
    return retrieval_predictions(gt, bank_rows, b, q)
  if metric != "euclidean":
    raise ValueError(f"feature_retrieval_predictions: metric {metric!r}; use euclidean or cosine")
  d2 = (q ** 2).sum(1)[:, None] - 2 * q @ b.T + (b ** 2).sum(1)[None]  # [N, T]
  return label_predictions(gt, np.asarray(bank_rows)[d2.argmin(1)])
