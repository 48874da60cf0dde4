"""Fitting of `linear.SpectralParser` with scikit-learn (the only module here that imports it).

Regularisation by grouped cross-validation over the training GMs: folds hold out whole groups
(a zoo cohort, i.e. one architecture, or a single GM), and a candidate is scored on the
out-of-fold predictions pooled over the folds: L1 per continuous column (alpha per column: a
column the features cannot predict gets the largest alpha, i.e. the training mean); per
logistic family (disc, group, loss) one C, scored by the family's headline metrics (macro-F1
of the discrete heads; macro-F1 + ROC AUC of the loss flags), since a per-head C would be
chosen on a few dozen GMs.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits

from revgm_jax.features import linear
from revgm_jax.features.spectral import gm_mean_features
from revgm_jax.labels import GroundTruth

ALPHAS = (1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e7)  # ridge, on standardised features
CS = (1e-4, 1e-3, 1e-2, 1e-1)  # logistic regression (inverse strength)


def _logistic(x, y, k, c, class_weight, max_iter) -> tuple[np.ndarray, np.ndarray]:
  """([D, k] weights, [k] biases) of softmax logits over all k classes (k = 2: binary, as
  logits [0, z]); a single present class gives a constant answer."""
  classes = np.unique(y)
  w, b = np.zeros((x.shape[1], k)), np.full(k, linear.ABSENT_LOGIT)
  if len(classes) == 1:
    b[classes[0]] = 0.0
    if k == 2:
      b[:] = [0.0, linear.BIG_LOGIT if classes[0] == 1 else -linear.BIG_LOGIT]
    return w, b
  m = LogisticRegression(C=c, class_weight=class_weight, max_iter=max_iter, tol=1e-4)
  m.fit(x, y)
  b[classes] = 0.0
  if len(classes) == 2:  # sklearn: one logit, of classes_[1] against classes_[0]
    w[:, classes[1]], b[classes[1]] = m.coef_[0], m.intercept_[0]
  else:
    w[:, classes], b[classes] = m.coef_.T, m.intercept_
  return w, b


def _binary(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
  """Softmax logits over (no, yes) -> the logit of yes: ([D], scalar)."""
  return w[:, 1] - w[:, 0], float(np.clip(b[1] - b[0], -linear.BIG_LOGIT, linear.BIG_LOGIT))


def _family(x, y, ks, c, class_weight, max_iter) -> list[tuple[np.ndarray, np.ndarray]]:
  return [_logistic(x, y[:, j], k, c, class_weight, max_iter) for j, k in enumerate(ks)]


def _family_probs(x, heads) -> list[np.ndarray]:
  return [linear.softmax(x @ w + b) for w, b in heads]


def _family_score(probs: list[np.ndarray], y: np.ndarray, binary: bool) -> float:
  scores = []
  for j, p in enumerate(probs):
    f1 = f1_score(y[:, j], p.argmax(1), average="macro", zero_division=0)
    if binary:
      auc = roc_auc_score(y[:, j], p[:, 1]) if len(np.unique(y[:, j])) == 2 else None
      scores.append(f1 if auc is None else 0.5 * (f1 + auc))
    else:
      scores.append(f1)
  return float(np.mean(scores))


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  mean = x.mean(0)
  sd = x.std(0)
  return mean, np.where(sd > 1e-8, sd, 1.0)


def _folds(groups: np.ndarray, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
  n = min(n_folds, len(np.unique(groups)))
  idx = np.arange(len(groups))
  return list(GroupKFold(n_splits=n).split(idx, idx, groups)) if n >= 2 else []


def fit(*args, **kwargs) -> linear.SpectralParser:
  """`_fit` with one BLAS thread: hundreds of small fits, which several threads slow down
  ~5x on a busy CPU (measured on the shared 2-core machine)."""
  with threadpool_limits(limits=1):
    return _fit(*args, **kwargs)


def _fit(features: np.ndarray, gm_rows: Sequence[int], gt: GroundTruth,
         train_rows: Sequence[int], *, unit: str = "image", images_per_gm: int = 10,
         folds: int = 4, alphas: Sequence[float] = ALPHAS, cs: Sequence[float] = CS,
         class_weight: str | None = None, pca_dims: int = 32, max_iter: int = 200,
         seed: int = 0) -> linear.SpectralParser:
  """Fits the heads on the training GMs' samples.

  unit: "image" fits every (kept) image with its GM's labels; "gm" fits one mean feature
  vector per GM. images_per_gm > 0 keeps that many images of each GM (seeded), to bound the
  fitting time. class_weight: None, or "balanced" (as the deep parser's weighted cross-entropy;
  it tied None on the validation GMs, experiments/spectral_parser.py).
  pca_dims > 0 fits the heads on the leading principal components of the standardised
  training features (fewer parameters, and ~10x faster logistic fits); the weights are mapped
  back to the features, so the parser stays linear in them.
  """
  features, gm_rows = np.asarray(features, np.float64), np.asarray(gm_rows)
  keep = np.isin(gm_rows, np.asarray(train_rows))
  x, rows = features[keep], gm_rows[keep]
  if images_per_gm > 0 and unit == "image":
    rng = np.random.default_rng(seed)
    sel = np.concatenate([rng.permutation(np.flatnonzero(rows == r))[:images_per_gm]
                          for r in np.unique(rows)])
    x, rows = x[np.sort(sel)], rows[np.sort(sel)]
  if unit == "gm":
    rows, x = gm_mean_features(x, rows)
    x = x.astype(np.float64)
  elif unit != "image":
    raise ValueError(f"fit: unit {unit!r}; use image or gm")
  if len(np.unique(rows)) < 2:
    raise ValueError("fit: need at least 2 training GMs")
  mean, scale = _standardise(x)
  z = (x - mean) / scale
  basis = np.eye(z.shape[1])  # [D, K]: features -> what the heads see
  if 0 < pca_dims < min(z.shape):
    basis = np.linalg.svd(z - z.mean(0), full_matrices=False)[2][:pca_dims].T
    z = z @ basis
  y = linear.targets(gt, rows)
  cohort = gt.cohort[rows] if gt.cohort is not None else np.full(len(rows), -1)
  groups = np.where(cohort >= 0, cohort, -1 - rows)  # a cohort, or the GM itself
  splits = _folds(groups, folds)
  space = gt.space
  ks = {"disc": space.discrete_classes, "group": (2,) * space.num_groups,
        "loss": (2,) * space.num_loss_types}

  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    # Ridge: one multi-output fit per alpha per fold; alpha chosen per column.
    alpha = np.full(y["cont"].shape[1], max(alphas))
    if splits:
      err = np.zeros((len(alphas), y["cont"].shape[1]))
      for a, al in enumerate(alphas):
        oof = np.zeros_like(y["cont"])
        for tr, te in splits:
          oof[te] = Ridge(alpha=al).fit(z[tr], y["cont"][tr]).predict(z[te])
        err[a] = np.abs(np.clip(oof, 0, 1) - y["cont"]).mean(0)
      alpha = np.asarray(alphas)[err.argmin(0)]
    cont_w, cont_b = np.zeros((z.shape[1], y["cont"].shape[1])), np.zeros(y["cont"].shape[1])
    for j, al in enumerate(alpha):
      m = Ridge(alpha=al).fit(z, y["cont"][:, j])
      cont_w[:, j], cont_b[j] = m.coef_, m.intercept_

    heads, chosen = {}, []
    for fam in ("disc", "group", "loss"):
      best = (-np.inf, cs[0])
      for c in cs if splits and len(cs) > 1 else cs[:1]:
        probs = [np.zeros((len(z), k)) for k in ks[fam]]
        for tr, te in splits:
          for j, p in enumerate(_family_probs(z[te], _family(z[tr], y[fam][tr], ks[fam], c,
                                                             class_weight, max_iter))):
            probs[j][te] = p
        score = _family_score(probs, y[fam], binary=fam != "disc") if splits else 0.0
        best = max(best, (score, c), key=lambda t: t[0])
      chosen.append(best[1])
      heads[fam] = _family(z, y[fam], ks[fam], best[1], class_weight, max_iter)

  cont_w = basis @ cont_w
  heads = {fam: [(basis @ w, b) for w, b in hs] for fam, hs in heads.items()}
  group = [_binary(w, b) for w, b in heads["group"]]
  loss = [_binary(w, b) for w, b in heads["loss"]]
  return linear.SpectralParser(
      mean=mean, scale=scale, cont_w=cont_w, cont_b=cont_b,
      disc_w=tuple(w for w, _ in heads["disc"]), disc_b=tuple(b for _, b in heads["disc"]),
      group_w=np.stack([w for w, _ in group], 1), group_b=np.array([b for _, b in group]),
      loss_w=np.stack([w for w, _ in loss], 1), loss_b=np.array([b for _, b in loss]),
      cont_alpha=alpha.astype(np.float64), family_c=np.array(chosen, np.float64))
