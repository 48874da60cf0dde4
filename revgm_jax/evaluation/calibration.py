"""Temperature scaling of the probability heads, fitted on the validation GMs, and their ECE.

Why: a parser trained on a few dozen GMs is over-confident on generators it has not seen, and
an analyst reads its probabilities as such. A temperature T rescales a head's logits
(softmax(z / T) for a discrete head, sigmoid(z / T) for a binary one), with z recovered from
the probabilities of `losses.parsing.predictions` (log p, or logit(p) for P(yes)); for a loss
type z is the logit of its gated probability, and the result is capped at its group's
calibrated P(yes), so that a type is never more likely than its group. T > 0 keeps the argmax
and the side of 0.5 (the cap too: a type above 0.5 has its group above 0.5), so accuracy and
F1 do not change; only the confidence does. One T per head family (the heads of a family
share it: a validation split has only a few GMs, and one T per head overfits them) is the
grid value of least negative log-likelihood on the validation images (the GMs selection already
uses), so it is never fitted on the test GMs. Heads whose validation labels hold one class only
are left out of the fit (there, least NLL would just push every probability to that class);
a family without any other keeps T = 1.

A calibration (what `workdir.calibration_path` holds, JSON):
  {"temperatures": {"disc": [6], "group": [G], "loss": [L]}, "step": int, "checkpoint": which,
   "fitted_on": "val", "num_images": int,
   "ece": {"val": {"before": {family: ece}, "after": {...}}, SPLIT: {...}}}
ECE is the top-label expected calibration error (10 equal-width confidence bins), averaged over
the heads of a family ("disc", "group", "loss").
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

GRID = np.exp(np.linspace(np.log(0.05), np.log(20.0), 161))  # candidate temperatures
_EPS = 1e-7


def _binary_logit(p: np.ndarray) -> np.ndarray:
  p = np.clip(np.asarray(p, np.float64), _EPS, 1 - _EPS)
  return np.log(p) - np.log1p(-p)


def _softmax(z: np.ndarray) -> np.ndarray:
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


def scale_disc(p: np.ndarray, t: float) -> np.ndarray:
  """Class probabilities [..., k] at temperature t."""
  return _softmax(np.log(np.clip(np.asarray(p, np.float64), _EPS, 1.0)) / t)


def scale_binary(p: np.ndarray, t: float) -> np.ndarray:
  """P(yes) [...] at temperature t."""
  return 1.0 / (1.0 + np.exp(-_binary_logit(p) / t))


def _heads(pred: Mapping, target: Mapping) -> dict:
  """{family: [(probabilities, labels)]}, one entry per head; binary heads as [N, 2]."""
  net = np.asarray(target["net"])
  n_cont = net.shape[1] - len(pred["disc"])
  out = {"disc": [(np.asarray(p), net[:, n_cont + j].astype(np.int64))
                  for j, p in enumerate(pred["disc"])]}
  for fam, key in (("group", "loss_group"), ("loss", "loss")):
    p, y = np.asarray(pred[fam]), np.asarray(target[key]).astype(np.int64)
    out[fam] = [(np.stack([1 - p[:, i], p[:, i]], -1), y[:, i]) for i in range(p.shape[1])]
  return out


def _nll(p: np.ndarray, y: np.ndarray) -> float:
  return float(-np.log(np.clip(p[np.arange(len(y)), y], _EPS, 1.0)).mean())


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
  """Top-label expected calibration error of class probabilities [N, k] against labels [N]."""
  conf, correct = p.max(-1), (p.argmax(-1) == y).astype(np.float64)
  which = np.minimum((conf * bins).astype(np.int64), bins - 1)
  total = 0.0
  for b in range(bins):
    sel = which == b
    if sel.any():
      total += sel.sum() * abs(correct[sel].mean() - conf[sel].mean())
  return float(total / len(y))


def fit(pred: Mapping, target: Mapping) -> dict:
  """{family: [T per head]}: one T per family (the same for its heads), the `GRID` value of
  least NLL summed over the family's heads that hold both classes on (pred, target); T = 1
  where none does."""
  temps = {}
  for fam, heads in _heads(pred, target).items():
    usable = [(np.log(np.clip(p, _EPS, 1.0)), y) for p, y in heads if len(np.unique(y)) > 1]
    t = 1.0
    if usable:
      nll = [sum(_nll(_softmax(logp / t), y) for logp, y in usable) for t in GRID]
      t = float(GRID[int(np.argmin(nll))])
    temps[fam] = [t] * len(heads)
  return temps


def apply(pred: Mapping, temperatures: Mapping | None, group_of_loss) -> dict:
  """`pred` (the `metrics` format) with every probability head at its temperature; a loss
  type capped at its group (`group_of_loss`: [L] group index of each type)."""
  if temperatures is None:
    return dict(pred)
  group = scale_binary(pred["group"], np.asarray(temperatures["group"]))
  loss = scale_binary(pred["loss"], np.asarray(temperatures["loss"]))
  return {**pred, "group": group,
          "disc": [scale_disc(p, t) for p, t in zip(pred["disc"], temperatures["disc"])],
          "loss": np.minimum(loss, group[..., np.asarray(group_of_loss)])}


def family_ece(pred: Mapping, target: Mapping) -> dict:
  """{family: mean ECE over its heads}."""
  return {fam: float(np.mean([ece(p, y) for p, y in heads]))
          for fam, heads in _heads(pred, target).items()}


def before_after(pred: Mapping, target: Mapping, temperatures: Mapping, group_of_loss) -> dict:
  return {"before": family_ece(pred, target),
          "after": family_ece(apply(pred, temperatures, group_of_loss), target)}
