"""Decisions fitted on held-out validation cohorts: what the parser answers, head by head.

Why: the heads are trained on GMs whose architectures the validation and test GMs do not share
(whole cohorts are held out, docs/protocol.md#gm-splits). On such GMs a head's raw answer can
be worse than the training baseline, and its probabilities over-confident. So, per head and
fitted on the validation GMs' predictions only (never the test GMs'):

- source: the deep parser, the spectral parser (`revgm_jax.features`) or the mean of the two,
  per continuous column, per discrete head and per binary family (groups, types), by validation
  L1, macro-F1 and AUC;
- continuous column c: answer = center_c + alpha_c (pred_c - center_c), center = the training
  GMs' median (the L1-optimal constant), alpha_c in `ALPHAS` of least validation L1
  (alpha = 0 answers the baseline, 1 the head);
- discrete head j: probabilities alpha_j p + (1 - alpha_j) prior_j (prior: the training GMs'
  class frequencies), alpha_j of best validation macro-F1;
- binary heads (loss groups, then loss types): a threshold t of best validation macro-F1,
  applied as a shift of the logit, so that P(yes) > 0.5 exactly when the head's P(yes) > t
  (AUC does not change); a type stays capped at its group (docs/losses.md#gating);
- temperature scaling (`calibration.py`) of the answers of a family, kept only where it lowers
  the ECE of validation cohorts it was not fitted on (inner leave-cohort-out).

Ties go to the more conservative choice (smaller alpha, the threshold nearer 0.5). Pure NumPy:
`revgm parse` applies the same decisions without scikit-learn. Decisions are plain JSON values.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from revgm_jax.evaluation import calibration
from revgm_jax.labels import NUM_CONTINUOUS

ALPHAS = np.linspace(0.0, 1.0, 11)  # shrinkage towards the training baseline (0 = baseline)
SOURCES = ("deep", "spectral", "mean")  # the candidate answers of a head, in order of preference
_EPS = 1e-6


def macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
  """Macro F1 over the classes present in `y` or `pred`, 0 where undefined (scikit-learn's
  `f1_score(average="macro", zero_division=0)`, without importing it)."""
  y, pred = np.asarray(y).astype(np.int64), np.asarray(pred).astype(np.int64)
  f1s = []
  for c in np.union1d(y, pred):
    tp = np.sum((pred == c) & (y == c))
    denom = np.sum(pred == c) + np.sum(y == c)
    f1s.append(2.0 * tp / denom if denom else 0.0)
  return float(np.mean(f1s)) if f1s else 0.0


def auc(p: np.ndarray, y: np.ndarray) -> float | None:
  """ROC AUC of scores `p` against 0/1 `y` (ties count one half); None with one class."""
  p, y = np.asarray(p, np.float64), np.asarray(y).astype(bool)
  pos, neg = p[y], p[~y]
  if not len(pos) or not len(neg):
    return None
  order = np.argsort(np.concatenate([pos, neg]), kind="stable")
  ranks = np.empty(len(order))
  ranks[order] = np.arange(1, len(order) + 1)
  allv = np.concatenate([pos, neg])
  for v in np.unique(allv):  # average ranks of ties
    tie = allv == v
    ranks[tie] = ranks[tie].mean()
  return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def candidates(deep: Mapping, spectral: Mapping | None = None) -> dict:
  """{source: pred} of the `SOURCES` available: the deep parser's, the spectral parser's and
  their mean, key by key."""
  if spectral is None:
    return {"deep": dict(deep)}
  mean = {k: ([(np.asarray(a) + np.asarray(b)) / 2 for a, b in zip(deep[k], spectral[k])]
              if isinstance(deep[k], (list, tuple))
              else (np.asarray(deep[k]) + np.asarray(spectral[k])) / 2)
          for k in ("cont", "disc", "group", "loss")}
  return {"deep": dict(deep), "spectral": dict(spectral), "mean": mean}


def combine(cands: Mapping, sources: Mapping | None) -> dict:
  """One prediction taking each head from its source (None: the deep parser throughout)."""
  if sources is None:
    return dict(cands["deep"])
  return {"cont": np.stack([np.asarray(cands[s]["cont"])[:, c]
                            for c, s in enumerate(sources["cont"])], 1),
          "disc": [cands[s]["disc"][j] for j, s in enumerate(sources["disc"])],
          "group": np.asarray(cands[sources["group"]]["group"]),
          "loss": np.asarray(cands[sources["loss"]]["loss"])}


def _binary_score(p: np.ndarray, y: np.ndarray) -> float:
  """Mean AUC over the columns with both classes, else mean macro-F1 at 0.5."""
  aucs = [a for a in (auc(p[:, i], y[:, i]) for i in range(y.shape[1])) if a is not None]
  if aucs:
    return float(np.mean(aucs))
  return float(np.mean([macro_f1(y[:, i], p[:, i] > 0.5) for i in range(y.shape[1])]))


def choose_sources(cands: Mapping, target: Mapping) -> dict:
  """Per head, the source of best validation score (the first in `SOURCES` among ties)."""
  names = [s for s in SOURCES if s in cands]
  net = np.asarray(target["net"], np.float64)
  pick = lambda scores, lower=False: names[_best(scores, lower_is_better=lower)]
  return {
      "cont": [pick([np.abs(np.asarray(cands[s]["cont"])[:, c] - net[:, c]).mean()
                     for s in names], lower=True) for c in range(NUM_CONTINUOUS)],
      "disc": [pick([macro_f1(net[:, NUM_CONTINUOUS + j], np.asarray(cands[s]["disc"][j])
                              .argmax(-1)) for s in names])
               for j in range(len(cands["deep"]["disc"]))],
      "group": pick([_binary_score(np.asarray(cands[s]["group"]),
                                   np.asarray(target["loss_group"])) for s in names]),
      "loss": pick([_binary_score(np.asarray(cands[s]["loss"]), np.asarray(target["loss"]))
                    for s in names])}


def _logit(p: np.ndarray) -> np.ndarray:
  p = np.clip(np.asarray(p, np.float64), _EPS, 1 - _EPS)
  return np.log(p) - np.log1p(-p)


def shift(p: np.ndarray, threshold) -> np.ndarray:
  """P(yes) [..., H] moved so that `threshold` [H] maps to 0.5 (the logit minus its logit)."""
  return 1.0 / (1.0 + np.exp(-(_logit(p) - _logit(np.asarray(threshold, np.float64)))))


def cohort_groups(gm_rows: np.ndarray, cohort: np.ndarray | None) -> np.ndarray:
  """[N] group of each example for leave-cohort-out: its GM's cohort, or the GM itself when it
  has none (random-init GMs, published GMs)."""
  gm_rows = np.asarray(gm_rows)
  if cohort is None:
    return gm_rows.astype(np.int64)
  c = np.asarray(cohort)[gm_rows].astype(np.int64)
  return np.where(c >= 0, c, -1 - gm_rows.astype(np.int64))


def baseline(net: np.ndarray, discrete_classes: Sequence[int], loss: np.ndarray | None = None,
             loss_group: np.ndarray | None = None) -> dict:
  """The training baseline from the training GMs' label rows (one vote per GM; net [T, 15],
  loss [T, L], loss_group [T, G]): the continuous median, the class frequencies of each
  discrete head, and the frequency of each loss type and group (what `revgm parse` answers for
  a head that does not beat its baseline)."""
  net = np.asarray(net, np.float64)
  out = {"center": np.median(net[:, :NUM_CONTINUOUS], 0).tolist(),
         "prior": [np.bincount(net[:, NUM_CONTINUOUS + j].astype(np.int64), minlength=k)
                   .astype(np.float64) / len(net) for j, k in enumerate(discrete_classes)]}
  if loss is not None and loss_group is not None:
    out["loss_rate"] = np.asarray(loss, np.float64).mean(0).tolist()
    out["group_rate"] = np.asarray(loss_group, np.float64).mean(0).tolist()
  return out


def _best(scores: Sequence[float], lower_is_better: bool = False) -> int:
  """Index of the best score; the first (most conservative candidate) among ties."""
  s = np.asarray(scores, np.float64) * (-1 if lower_is_better else 1)
  return int(np.flatnonzero(s >= s.max() - 1e-12)[0])


def _thresholds(p: np.ndarray, y: np.ndarray) -> list[float]:
  """Per column of P(yes) [N, H]: the threshold of best macro-F1 on (p, y); 0.5 where the
  labels hold one class (nothing to fit). Candidates lie between observed P(yes) values and are
  ordered by their distance to 0.5."""
  out = []
  for i in range(p.shape[1]):
    if len(np.unique(y[:, i])) < 2:
      out.append(0.5)
      continue
    q = np.unique(np.quantile(p[:, i], np.linspace(0.0, 1.0, 51)))
    cands = np.unique(np.concatenate([[0.5], (q[1:] + q[:-1]) / 2]))  # between observed values
    cands = np.clip(cands[np.argsort(np.abs(cands - 0.5), kind="stable")], 0.01, 0.99)
    out.append(float(cands[_best([macro_f1(y[:, i], p[:, i] > t) for t in cands])]))
  return out


def _answer(pred: Mapping, d: Mapping, group_of_loss) -> dict:
  """Shrinkage and thresholds of `d` applied to `pred` (no temperatures)."""
  center = np.asarray(d["center"])
  cont = center + np.asarray(d["cont_alpha"]) * (np.asarray(pred["cont"]) - center)
  disc = [a * np.asarray(p) + (1 - a) * np.asarray(prior)
          for p, a, prior in zip(pred["disc"], d["disc_alpha"], d["prior"])]
  group = shift(pred["group"], d["group_threshold"])
  loss = shift(pred["loss"], d["loss_threshold"])
  return {**pred, "cont": cont, "disc": disc, "group": group,
          "loss": np.minimum(loss, group[..., np.asarray(group_of_loss)])}


def apply(pred: Mapping, decisions: Mapping | None, group_of_loss) -> dict:
  """`pred` (the `metrics` format) answered as `decisions` say, then at their temperatures
  (which keep every answer: argmax and the side of 0.5); None leaves `pred` as it is."""
  if decisions is None:
    return dict(pred)
  return calibration.apply(_answer(pred, decisions, group_of_loss),
                           decisions.get("temperatures"), group_of_loss)


def _fit_answers(pred: Mapping, target: Mapping, base: Mapping, group_of_loss) -> dict:
  """Shrinkage and thresholds of the answers (no temperatures) on (pred, target)."""
  net = np.asarray(target["net"], np.float64)
  center = np.asarray(base["center"])
  cont = np.asarray(pred["cont"], np.float64)
  cont_alpha = [float(ALPHAS[_best([np.abs(center[c] + a * (cont[:, c] - center[c])
                                            - net[:, c]).mean() for a in ALPHAS],
                                   lower_is_better=True)]) for c in range(NUM_CONTINUOUS)]
  disc_alpha = []
  for j, (p, prior) in enumerate(zip(pred["disc"], base["prior"])):
    y = net[:, NUM_CONTINUOUS + j]
    f1 = [macro_f1(y, (a * np.asarray(p) + (1 - a) * np.asarray(prior)).argmax(-1))
          for a in ALPHAS]
    disc_alpha.append(float(ALPHAS[_best(f1)]))
  group_t = _thresholds(np.asarray(pred["group"]), np.asarray(target["loss_group"]))
  group = shift(pred["group"], group_t)[:, np.asarray(group_of_loss)]
  # A type's answer is capped at its group's: its threshold is fitted on the capped value.
  loss_p, loss_y = np.asarray(pred["loss"]), np.asarray(target["loss"])
  loss_t = []
  for i in range(loss_p.shape[1]):
    t = _thresholds(loss_p[:, i:i + 1], loss_y[:, i:i + 1])[0]
    cands = sorted({t, 0.5}, key=lambda v: abs(v - 0.5))
    f1 = [macro_f1(loss_y[:, i], np.minimum(shift(loss_p[:, i], c), group[:, i]) > 0.5)
          for c in cands]
    loss_t.append(float(cands[_best(f1)]))
  rates = {k: base[k] for k in ("loss_rate", "group_rate") if k in base}
  return {"center": center.tolist(), "prior": [np.asarray(p).tolist() for p in base["prior"]],
          **rates,
          "cont_alpha": cont_alpha, "disc_alpha": disc_alpha,
          "group_threshold": group_t, "loss_threshold": loss_t}


def _take(tree: Mapping, sel: np.ndarray) -> dict:
  return {k: ([np.asarray(a)[sel] for a in v] if isinstance(v, (list, tuple))
              else np.asarray(v)[sel]) for k, v in tree.items()}


def _inner_ece(answered: Mapping, target: Mapping, groups: np.ndarray,
               group_of_loss) -> tuple[dict, dict]:
  """Family ECE of the answers on each validation cohort, at temperatures fitted on the other
  cohorts and at none, weighted by images: ({family: ece without}, {family: ece with})."""
  before, after = {}, {}
  for g in np.unique(groups):
    held, rest = groups == g, groups != g
    temps = calibration.fit(_take(answered, rest), _take(target, rest)) if rest.any() else None
    held_pred, held_target = _take(answered, held), _take(target, held)
    for out, t in ((before, None), (after, temps)):
      ece = calibration.family_ece(calibration.apply(held_pred, t, group_of_loss), held_target)
      for fam, v in ece.items():
        out.setdefault(fam, []).append((v, int(held.sum())))
  mean = lambda d: {f: float(sum(v * n for v, n in vs) / sum(n for _, n in vs))
                    for f, vs in d.items()}
  return mean(before), mean(after)


def fit(cands: Mapping, target: Mapping, groups: np.ndarray, base: Mapping,
        group_of_loss) -> dict:
  """The decisions of a parser on its validation examples.

  cands: `candidates(...)` on the validation images (the `metrics` format, one row per image);
  groups: [N] cohort of each image (`cohort_groups`); base: `baseline(...)` of the training GMs.
  """
  groups = np.asarray(groups)
  sources = choose_sources(cands, target)
  pred = combine(cands, sources)
  answers = _fit_answers(pred, target, base, group_of_loss)
  answered = _answer(pred, answers, group_of_loss)
  before, after = _inner_ece(answered, target, groups, group_of_loss)
  keep = {f: after[f] < before[f] for f in before}
  temps = calibration.fit(answered, target)
  temps = {f: (t if keep[f] else [1.0] * len(t)) for f, t in temps.items()}
  return {"sources": sources, **answers, "temperatures": temps, "calibration_kept": keep,
          "inner_ece": {"before": before, "after": after},
          "num_images": int(len(groups)), "num_cohorts": int(len(np.unique(groups)))}


def answer(cands: Mapping, decisions: Mapping | None, group_of_loss) -> dict:
  """The parser's answer: each head from its source, as `decisions` say (None: the deep
  parser's raw output)."""
  if decisions is None:
    return dict(cands["deep"])
  return apply(combine(cands, decisions.get("sources")), decisions, group_of_loss)
