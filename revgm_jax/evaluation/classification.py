"""Evaluation of a detection or attribution model: validation metrics, test metrics, unknown
GMs, the report.

One pass of the one evaluator (`evaluator.collect`, the predict function of `revgm_jax.steps`)
per split: the test images of the known classes, the held-out ("unknown") GMs, and for
attribution the training images (class means) and validation images (open-set thresholds).
Detection is scored on the known test images and, separately, on real test images against the
unknown GMs' images (generators never seen in training). Attribution is scored closed-set on the
known test images and open-set with the unknown GMs as unknowns (docs/tasks.md#metrics).
"""

from __future__ import annotations

from absl import logging
import jax
import numpy as np
from sklearn import metrics as skm

from revgm_jax import steps
from revgm_jax import workdir as workdir_lib
from revgm_jax.data import splits
from revgm_jax.evaluation import evaluator, openset, task_metrics, task_report

results_table = task_report.results_table


def report_table(results: dict) -> str:
  """What eval.py prints of one report: the task's tables."""
  return "\n".join(task_report.tables(results))


def model_metrics(task, per_example, sums) -> dict:
  """Loss means and the closed-set metrics of labelled examples; score: detection AUC or
  attribution accuracy (model selection)."""
  out = {k: v / sums["count"] for k, v in sums.items() if k != "count"}
  prob, label = np.asarray(per_example["pred"]["prob"]), np.asarray(per_example["label"])
  known = label >= 0
  if task.name == "detection":
    out.update(task_metrics.detection_metrics(prob[known, 1], label[known]))
    out["score"] = out["auc"] if out["auc"] is not None else out["accuracy"]
  else:
    m = task_metrics.attribution_metrics(prob[known], label[known])
    out.update({k: v for k, v in m.items() if k != "confusion"})
    out["score"] = out["accuracy"]
  return out


def thresholds(prob, embedding, stats: dict) -> dict:
  """{open-set score kind: threshold accepting openset.TPR of these (validation, known)
  images}."""
  return {k: task_metrics.threshold_at_tpr(openset.score(k, prob, embedding, stats), openset.TPR)
          for k in openset.SCORES}


def _roc(y, score) -> dict | None:
  if len(np.unique(y)) < 2:
    return None
  fpr, tpr, _ = skm.roc_curve(y, score)
  return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}


def _detection(test: dict, unknown: dict | None, gm_names) -> tuple[dict, dict]:
  """(metrics of known and unseen generators, ROC curves and reliability bins); "unseen_gms":
  the AUC of each held-out GM against the real test images."""
  p, y = test["pred"]["prob"][:, 1], test["label"]
  out = {"known": task_metrics.detection_metrics(p, y)}
  curves = {"roc": {"known GMs": _roc(y, p)},
            "reliability": task_metrics.reliability(np.maximum(p, 1 - p), (p >= 0.5) == y)}
  if unknown is not None:
    real = y == 0
    pu = np.r_[p[real], unknown["pred"]["prob"][:, 1]]
    yu = np.r_[y[real], np.ones(len(unknown["label"]), int)]
    out["unseen"] = task_metrics.detection_metrics(pu, yu)
    curves["roc"]["held-out GMs"] = _roc(yu, pu)
    rows = unknown["gm_row"]
    out["unseen_gms"] = {
        gm_names[r]: skm.roc_auc_score(np.r_[np.zeros(real.sum()), np.ones(np.sum(rows == r))],
                                       np.r_[p[real], unknown["pred"]["prob"][rows == r, 1]])
        for r in np.unique(rows)} if real.any() else {}
  return out, curves


def _attribution(test, unknown, train, val) -> tuple[dict, dict, dict, dict]:
  """(closed-set and open-set metrics, open-set stats, thresholds, open-set ROC curves)."""
  num_classes = test["pred"]["prob"].shape[1]
  stats = openset.fit(train["pred"]["embedding"], train["label"], num_classes)
  thresh = thresholds(val["pred"]["prob"], val["pred"]["embedding"], stats)
  prob = test["pred"]["prob"]
  out = {"closed": task_metrics.attribution_metrics(prob, test["label"]), "open": {}}
  rocs = {}
  if unknown is not None:
    correct = prob.argmax(1) == test["label"]
    for kind in openset.SCORES:
      known_score = openset.score(kind, prob, test["pred"]["embedding"], stats)
      unknown_score = openset.score(kind, unknown["pred"]["prob"],
                                    unknown["pred"]["embedding"], stats)
      out["open"][kind] = task_metrics.open_set_metrics(known_score, correct, unknown_score,
                                                        thresh[kind])
      rocs[kind] = _roc(np.r_[np.ones(len(known_score)), np.zeros(len(unknown_score))],
                        np.r_[known_score, unknown_score])
  return out, stats, thresh, rocs


def _flat(task: str, m: dict, val_metrics: dict, score_kind: str) -> dict:
  """The headline numbers, one flat dict ("methods"/"model" of the results)."""
  out = dict(val_metrics)
  if task == "detection":
    for where in ("known", "unseen"):
      out.update({f"{where}/{k}": v for k, v in m.get(where, {}).items()})
  else:
    out.update({k: v for k, v in m["closed"].items() if k != "confusion"})
    for kind, d in m["open"].items():
      out.update({f"open/{kind}/{k}": v for k, v in d.items()})
    out["open_set_score"] = score_kind
  return out


def evaluate(task, model, workdir: str, data, variables, *, step: int, which: str,
             split: str = "test", out_dir: str = "") -> dict:
  """Evaluates `variables` of `model` (step `step` of `workdir`'s `which` manager) on `split`
  and the unknown GMs, writes the report (default WORKDIR/report) and, for attribution, the
  open-set statistics of that step (`openset.save`); returns the results (as metrics.json
  holds). task: the run's, with its class weights."""
  config, name = task.config, task.name
  predict_fn = steps.make_predict_fn(task, model, data.mesh)

  def run(split_name: str, **kw):
    return evaluator.collect(predict_fn, variables, data.eval_iter(split_name, **kw))

  logging.info("evaluating %s (%s step %d, %s) on %s and the unknown GMs", workdir, which, step,
               name, split)
  test, sums = run(split)
  unknown = run("unknown")[0] if data.split["unknown"] else None
  names = splits.class_names(name, data.split)
  results = {"task": name, "name": f"{split} images of the known classes",
             "split": split, "step": int(step), "checkpoint": which, "workdir": workdir,
             "classes": names, "known_gms": [n for n in data.split["train"] if n != splits.REAL],
             "unknown_gms": list(data.split["unknown"]), "num_images": len(test["label"]),
             "num_unknown_images": 0 if unknown is None else len(unknown["label"])}
  test_metrics = model_metrics(task, test, sums)
  if name == "detection":
    m, curves = _detection(test, unknown, data.gt.names)
  else:
    train = run("train", max_per_gm=config.eval.stats_images_per_class)[0]
    val = run("val")[0]
    m, stats, thresh, rocs = _attribution(test, unknown, train, val)
    curves = {"roc": rocs, "reliability": task_metrics.reliability(
        test["pred"]["prob"].max(1), test["pred"]["prob"].argmax(1) == test["label"])}
    if jax.process_index() == 0:
      with workdir_lib.writing(openset.path(workdir, which, step)):
        openset.save(workdir, which, step, stats, thresh)
    results["thresholds"] = thresh
    results["confusion"] = m["closed"]["confusion"]
  results["metrics"] = m
  results["methods"] = {"model": _flat(name, m, {k: v for k, v in test_metrics.items()
                                                 if k in ("loss", "fen", "ce")},
                                       config.eval.open_set_score)}
  if jax.process_index() == 0:
    out = out_dir or workdir_lib.report_dir(workdir)
    with workdir_lib.writing(out):
      paths = task_report.write_report(out, results, curves, config.eval.figures)
    logging.info("evaluation report: %s", ", ".join(paths))
  return results
