"""Metrics of detection, attribution and open-set attribution (docs/tasks.md#metrics).

scikit-learn where it has the metric (ROC AUC, average precision, F1, confusion matrix, ROC
curve); EER, ECE, OSCR and TNR at 95 % TPR are computed here from their definitions.
Conventions: detection scores are P(generated), class 1 the positive; open-set scores are
"knownness" (higher = more likely a known source), known the positive class.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm


def _two_classes(y) -> bool:
  return len(np.unique(y)) == 2


def eer(y, score) -> float | None:
  """Equal error rate: the point of the ROC curve where the false positive rate equals the
  false negative rate, linearly interpolated between the two ROC points around the crossing."""
  if not _two_classes(y):
    return None
  fpr, tpr, _ = skm.roc_curve(y, score)
  fnr = 1.0 - tpr
  i = int(np.argmax(fnr <= fpr))  # first point past the crossing (fnr falls, fpr rises)
  if i == 0:
    return float(fpr[0])
  # On the segment from point i-1 to i, fpr - fnr goes from d0 < 0 to d1 >= 0.
  d0, d1 = fpr[i - 1] - fnr[i - 1], fpr[i] - fnr[i]
  t = -d0 / (d1 - d0)
  return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def reliability(confidence, correct, num_bins: int = 10) -> dict:
  """Equal-width confidence bins over [0, 1]: per bin the count, mean confidence, accuracy."""
  confidence, correct = np.asarray(confidence, float), np.asarray(correct, float)
  b = np.minimum((confidence * num_bins).astype(int), num_bins - 1)
  count = np.bincount(b, minlength=num_bins)
  conf = np.bincount(b, confidence, num_bins) / np.maximum(count, 1)
  acc = np.bincount(b, correct, num_bins) / np.maximum(count, 1)
  return {"count": count.tolist(), "confidence": conf.tolist(), "accuracy": acc.tolist()}


def ece(confidence, correct, num_bins: int = 10) -> float:
  """Expected calibration error: sum over bins of |bin| / N * |accuracy - confidence|."""
  r = reliability(confidence, correct, num_bins)
  count = np.asarray(r["count"])
  gap = np.abs(np.asarray(r["accuracy"]) - np.asarray(r["confidence"]))
  return float(np.sum(count * gap) / max(count.sum(), 1))


def detection_metrics(p_generated, y) -> dict:
  """AUC, average precision, accuracy at 0.5, EER and ECE (of the predicted class's
  probability) of P(generated) against y (1 = generated, 0 = real)."""
  p, y = np.asarray(p_generated, float), np.asarray(y, int)
  two = _two_classes(y)
  pred = (p >= 0.5).astype(int)
  return {"auc": float(skm.roc_auc_score(y, p)) if two else None,
          "ap": float(skm.average_precision_score(y, p)) if two else None,
          "accuracy": float(np.mean(pred == y)),
          "eer": eer(y, p),
          "ece": ece(np.maximum(p, 1 - p), pred == y),
          "num_real": int(np.sum(y == 0)), "num_generated": int(np.sum(y == 1))}


def attribution_metrics(prob, y) -> dict:
  """Accuracy, macro-F1 over all K classes (zero_division=0) and the K x K confusion matrix
  (rows true, columns predicted) of class probabilities [N, K] against y [N]."""
  prob, y = np.asarray(prob), np.asarray(y, int)
  k = prob.shape[1]
  pred = prob.argmax(1)
  return {"accuracy": float(np.mean(pred == y)),
          "macro_f1": float(skm.f1_score(y, pred, labels=range(k), average="macro",
                                         zero_division=0)),
          "ece": ece(prob.max(1), pred == y),
          "confusion": skm.confusion_matrix(y, pred, labels=range(k)).tolist()}


def threshold_at_tpr(known_score, tpr: float = 0.95) -> float:
  """The largest threshold that accepts (score >= threshold) at least `tpr` of `known_score`."""
  s = np.sort(np.asarray(known_score, float))[::-1]
  return float(s[max(int(np.ceil(tpr * len(s))) - 1, 0)])


def oscr(known_score, known_correct, unknown_score) -> float:
  """Open-set classification rate: the area under the curve of the correct-classification
  rate (known images accepted and classified right / known images) against the false positive
  rate (unknown images accepted / unknown images) as the threshold falls from +inf."""
  ks, kc = np.asarray(known_score, float), np.asarray(known_correct, bool)
  us = np.asarray(unknown_score, float)
  thresholds = np.unique(np.concatenate([ks, us]))[::-1]
  ccr = [0.0] + [float(np.sum(kc & (ks >= t)) / len(ks)) for t in thresholds]
  fpr = [0.0] + [float(np.sum(us >= t) / len(us)) for t in thresholds]
  return float(np.trapezoid(ccr, fpr))


def open_set_metrics(known_score, known_correct, unknown_score,
                     threshold: float | None = None) -> dict:
  """Known (test images of the known classes) vs unknown (held-out GMs): AUROC, OSCR, TNR at
  95 % TPR, the closed-set accuracy, and with `threshold` (chosen on validation data) the
  share of known images accepted and of unknown images rejected."""
  ks, us = np.asarray(known_score, float), np.asarray(unknown_score, float)
  y = np.r_[np.ones(len(ks)), np.zeros(len(us))]
  s = np.r_[ks, us]
  out = {"auroc": float(skm.roc_auc_score(y, s)),
         "oscr": oscr(ks, known_correct, us),
         "tnr_at_95tpr": float(np.mean(us < threshold_at_tpr(ks, 0.95))),
         "closed_set_accuracy": float(np.mean(known_correct)),
         "num_known": len(ks), "num_unknown": len(us)}
  if threshold is not None:
    out.update(threshold=float(threshold), known_accepted=float(np.mean(ks >= threshold)),
               unknown_rejected=float(np.mean(us < threshold)))
  return out
