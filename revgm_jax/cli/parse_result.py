"""What `revgm parse` answers for one set of images: the JSON document and its text form.

The JSON document (docs/parse.md documents every field; tests/test_parse.py checks them):
  checkpoint {workdir, which, step}, space, aggregate, folder (with --each, else null),
  num_images, images, skipped [{path, reason}],
  calibration {applied, note}, reliability_source (the workdir's report/metrics.json or null),
  continuous [{name, value, normalized, range, integer, rounded, interval, answer, reliability}],
  discrete [{name, prediction, probability, probabilities, answer, reliability}],
  gating (one line), loss_groups [{name, probability, predicted, answer, reliability,
  loss_types [{name, group, probability, predicted, answer, reliability}]}],
  loss_types (the same loss-type entries, flat, in the space's order).
A reliability is {measured: false, text: "not measured"} for a workdir without an evaluation
report, else {measured: true, metric, score, baselines {name: score}, better_than_baselines,
text}, read from the held-out (test-GM) scores of the answer ("parser" row; "model" in reports
written before it) and the baselines in that report. `answer` is "parser", or "baseline" where
the report measured the answer no better than the training baseline (mean / majority: L1 for a
continuous column, macro-F1 for a class or a yes/no): the entry then gives the baseline's
answer (the training median, the class frequencies, a loss type's training frequency) instead
of a guess.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from revgm_jax import workdir as workdir_lib
from revgm_jax.evaluation import calibration, decisions

GATING = ("A loss type counts only if its group does: its probability is P(type | group) x "
          "P(group), never above its group's.")
BASELINES = {"majority": "mean / majority", "retrieval": "nearest training GM (fingerprint)",
             "retrieval_features": "nearest training GM (features)"}
INTERVAL = (10, 90)  # percentiles of the per-image values shown as a count's interval


def load_calibration(loaded) -> tuple[dict | None, str]:
  """(the workdir's decisions for the loaded checkpoint or None, a note saying which)."""
  calib = workdir_lib.read_json(workdir_lib.calibration_path(loaded.workdir))
  if calib is None:
    return None, "uncalibrated: the workdir has no calibration (run eval.py on it to fit one)"
  if (calib["step"], calib["checkpoint"]) != (loaded.step, loaded.which):
    return None, (f"uncalibrated: the workdir's calibration is for {calib['checkpoint']} step "
                  f"{calib['step']}, not this checkpoint")
  if "cont_alpha" not in calib:  # a calibration of temperatures only
    return calib, f"temperature-scaled on {calib['num_images']} images of the validation GMs"
  kept = [f for f, k in calib["calibration_kept"].items() if k]
  return calib, (f"each head's source, shrinkage or threshold fitted on {calib['num_images']} "
                 f"images of the validation GMs; temperature-scaled: {', '.join(kept) or 'none'}")


def answer(cands: dict, calib: dict | None, group_of_loss) -> dict:
  """The answer of each head (`decisions.answer`); temperatures only for an older calibration."""
  if calib is not None and "cont_alpha" not in calib:
    return calibration.apply(cands["deep"], calib["temperatures"], group_of_loss)
  return decisions.answer(cands, calib, group_of_loss)


def _row(methods: dict | None) -> str:
  return "parser" if methods and "parser" in methods else "model"


def _reliability(methods: dict | None, key: str, metric: str, lower_is_better: bool) -> dict:
  if not methods or methods.get(_row(methods), {}).get(key) is None:
    return {"measured": False, "text": "not measured"}
  score = methods[_row(methods)][key]
  base = {BASELINES[m]: methods[m][key] for m in BASELINES
          if methods.get(m, {}).get(key) is not None}
  better = all((score < b) if lower_is_better else (score > b) for b in base.values())
  text = f"held-out {metric} {score:.2f}" + (
      " (" + ", ".join(f"{n} {b:.2f}" for n, b in base.items()) + ")" if base else "")
  if not better:
    text += ", NOT better than a baseline"
  return {"measured": True, "metric": metric, "score": score, "baselines": base,
          "better_than_baselines": better, "text": text}


def _binary_reliability(methods, fam: str, name: str) -> dict:
  """AUC where the test GMs have both classes, else macro-F1."""
  auc = methods and methods.get("model", {}).get(f"{fam}_auc/{name}") is not None
  return (_reliability(methods, f"{fam}_auc/{name}", "AUC", False) if auc else
          _reliability(methods, f"{fam}_f1/{name}", "macro-F1", False))


def _beats_baseline(methods: dict | None, key: str, lower_is_better: bool) -> bool:
  """Whether the report measured the answer better than mean / majority on `key` (True where
  nothing was measured: the reliability then says so)."""
  if not methods or methods.get("majority", {}).get(key) is None:
    return True
  score, base = methods[_row(methods)].get(key), methods["majority"][key]
  return score is not None and (score < base if lower_is_better else score > base)


def _baseline_answer(mean: dict, calib: dict | None, methods: dict | None, space) -> tuple:
  """`mean` (one answer per head) with every head that does not beat its baseline replaced by
  the baseline's answer; ({family: [bool: answered by the baseline]}, the answer)."""
  base = {"cont": [not _beats_baseline(methods, f"cont_l1/{n}", True)
                   for n in space.continuous_names],
          "disc": [not _beats_baseline(methods, f"net_f1/{n}", False)
                   for n in space.discrete_names],
          "group": [not _beats_baseline(methods, f"group_f1/{n}", False)
                    for n in space.group_names],
          "loss": [not _beats_baseline(methods, f"loss_f1/{n}", False)
                   for n in space.loss_names]}
  if calib is None or "loss_rate" not in calib:  # no baseline answer saved: the head's own
    return {k: [False] * len(v) for k, v in base.items()}, mean
  out = {k: (list(v) if isinstance(v, (list, tuple)) else np.array(v)) for k, v in mean.items()}
  for i, b in enumerate(base["cont"]):
    out["cont"][i] = calib["center"][i] if b else out["cont"][i]
  out["disc"] = [np.asarray(calib["prior"][j]) if b else p
                 for j, (b, p) in enumerate(zip(base["disc"], out["disc"]))]
  for fam, rate in (("group", "group_rate"), ("loss", "loss_rate")):
    out[fam] = np.where(base[fam], np.asarray(calib[rate]), out[fam])
  out["loss"] = np.minimum(out["loss"], out["group"][np.asarray(space.group_of_loss)])  # gating
  return base, out


def summarize(loaded, pred: dict, per_image_cont: np.ndarray, calib: dict | None,
              metrics: dict | None) -> dict:
  """pred: per-sample answers [N, ...] (N images, or 1 mean fingerprint; `answer`'s) -> the
  document's head entries; per_image_cont [N_images, 9] gives the count intervals."""
  space, gt = loaded.space, loaded.gt
  methods = (metrics or {}).get("methods")
  mean = jax.tree.map(lambda a: np.asarray(a, np.float64).mean(0), pred)
  by_baseline, mean = _baseline_answer(mean, calib, methods, space)
  how = lambda fam, i: "baseline" if by_baseline[fam][i] else "parser"
  known = gt.cont_min is not None
  raw_all = gt.denormalize(np.asarray(gt.net)[:, :len(space.continuous_names)]) if known else None
  raw = gt.denormalize(mean["cont"]) if known else None
  spread = (np.percentile(gt.denormalize(per_image_cont) if known else per_image_cont,
                          INTERVAL, axis=0) if len(per_image_cont) else None)
  out = {"continuous": [], "discrete": [], "gating": GATING, "loss_groups": [],
         "loss_types": []}
  for i, name in enumerate(space.continuous_names):
    integer = bool(known and np.allclose(raw_all[:, i], np.round(raw_all[:, i])))
    interval = (None if spread is None or by_baseline["cont"][i]
                else [float(spread[0, i]), float(spread[1, i])])
    out["continuous"].append({
        "name": name, "value": float(raw[i]) if known else None,
        "normalized": float(mean["cont"][i]),
        "range": [float(gt.cont_min[i]), float(gt.cont_max[i])] if known else None,
        "integer": integer, "rounded": int(round(float(raw[i]))) if integer else None,
        "interval": [int(round(v)) for v in interval] if integer and interval else interval,
        "answer": how("cont", i),
        "reliability": _reliability(methods, f"cont_l1/{name}", "L1 (normalised)", True)})
  for j, name in enumerate(space.discrete_names):
    p = mean["disc"][j]
    out["discrete"].append({
        "name": name, "prediction": space.class_names[j][int(p.argmax())],
        "probability": float(p.max()),
        "probabilities": dict(zip(space.class_names[j], map(float, p))),
        "answer": how("disc", j),
        "reliability": _reliability(methods, f"net_f1/{name}", "macro-F1", False)})
  for i, name in enumerate(space.loss_names):
    p = float(mean["loss"][i])
    out["loss_types"].append({"name": name, "group": space.group_names[space.group_of_loss[i]],
                              "probability": p, "predicted": p > 0.5, "answer": how("loss", i),
                              "reliability": _binary_reliability(methods, "loss", name)})
  for g, name in enumerate(space.group_names):
    p = float(mean["group"][g])
    out["loss_groups"].append({
        "name": name, "probability": p, "predicted": p > 0.5, "answer": how("group", g),
        "reliability": _binary_reliability(methods, "group", name),
        "loss_types": [t for t in out["loss_types"] if t["group"] == name]})
  return out


def format_count(c: dict) -> str:
  if c["value"] is None:
    return f"{c['normalized']:.3f} (normalised)"
  if c.get("answer") == "baseline":  # one value for any image: no interval
    return str(c["rounded"]) if c["integer"] else f"{c['value']:.4g}"
  if c["integer"]:
    lo, hi = c["interval"] or (c["rounded"], c["rounded"])
    return f"{c['rounded']}  [{lo}-{hi}]"
  lo, hi = c["interval"] or (c["value"], c["value"])
  return f"{c['value']:.4g}  [{lo:.4g}-{hi:.4g}]"


def _said(entry: dict) -> str:
  """The reliability text, led by "baseline:" where the entry gives the baseline's answer."""
  text = entry["reliability"]["text"]
  return f"baseline: {text}" if entry.get("answer") == "baseline" else text


def format_text(result: dict) -> str:
  ck = result["checkpoint"]
  where = f" in {result['folder']}" if result.get("folder") else ""
  lo, hi = INTERVAL
  lines = [f"Parsed {result['num_images']} image(s){where} as one generator "
           f"(mean of {result['aggregate']}), checkpoint {ck['workdir']} ({ck['which']}, "
           f"step {ck['step']}), space {result['space']}.",
           f"Probabilities: {result['calibration']['note']}.",
           "Answers marked 'baseline' are the training baseline's (median, class or loss-type "
           "frequency): the report measured the parser no better there.",
           "Reliability: " + (f"scores on the held-out test GMs from "
                              f"{result['reliability_source']}" if result["reliability_source"]
                              else "not measured (the workdir has no evaluation report)") + ".",
           "", f"Architecture, continuous (mean [{lo}th-{hi}th percentile over the images]):"]
  for c in result["continuous"]:
    lines.append(f"  {c['name']:24s}{format_count(c):>22s}   {_said(c)}")
  lines += ["", "Architecture, discrete (probability):"]
  for d in result["discrete"]:
    lines.append(f"  {d['name']:24s}{d['prediction']:>14s} {d['probability']:.2f}   "
                 f"{_said(d)}")
    lines.append("      " + ", ".join(f"{k} {v:.2f}" for k, v in d["probabilities"].items()))
  lines += ["", "Loss groups, and the loss types within them (P(yes)):", f"  {result['gating']}"]
  for g in result["loss_groups"]:
    lines.append(f"  {g['name']:28s}{g['probability']:.2f}  {'yes' if g['predicted'] else 'no ':3s}"
                 f"   {_said(g)}")
    for t in g["loss_types"]:
      lines.append(f"    {t['name']:26s}{t['probability']:.2f}  "
                   f"{'yes' if t['predicted'] else 'no ':3s}   {_said(t)}")
  return "\n".join(lines)


def reliability_source(workdir: str) -> tuple[dict | None, str | None]:
  """(the workdir's evaluation metrics, their path), or (None, None) for an older run."""
  path = workdir_lib.metrics_path(workdir)
  metrics = workdir_lib.read_json(path)
  return metrics, (os.path.abspath(path) if metrics is not None else None)
