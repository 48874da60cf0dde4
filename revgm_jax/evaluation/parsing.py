"""Evaluation of a parsing model: validation metrics, and on a GM split the model, baselines,
k-image curve and report.

`evaluate` takes variables already in memory: `train_and_evaluate` passes the selected step's
at its end, `run.evaluate_checkpoint` (what `eval.py` runs) restores a checkpoint first. It
writes `WORKDIR/report/` (see `report.py`) and returns the results. Both passes go through the
one evaluator (`evaluator.collect`) with the predict function of `revgm_jax.steps`:
  1. training GMs (at most config.eval.retrieval_images_per_gm images each): the mean
     fingerprint of each training GM, the bank of the retrieval baseline, and (with
     config.eval.spectral) the image features the spectral parser is fitted on (`answers.py`);
  2. validation GMs: the choices and decisions of each head (`decisions.py`), the answer of
     `revgm parse`, written to WORKDIR/calibration.json (the spectral parser beside it);
  3. the evaluated split: the deep parser's per-image predictions and loss terms, the spectral
     parser's, the decided answer ("parser"), the retrieval predictions of every image (by
     fingerprint and by features), the random-ground-truth model's predictions (if
     config.eval.random_gt_workdir is set; it must hold the same split), and the data of the
     fingerprint figure.
"""

from __future__ import annotations

import json
import os
from typing import Callable

from absl import logging
import jax
import numpy as np

from revgm_jax import inference, input_pipeline, labels, sharding, steps
from revgm_jax import workdir as workdir_lib
from revgm_jax.evaluation import aggregate, answers, baselines, calibration, decisions, evaluator
from revgm_jax.evaluation import metrics, report

results_table = report.results_table


def report_table(results: dict) -> str:
  """What eval.py prints of one report: the model against the baselines, and the calibration."""
  lines = report.headline_table(results["methods"])
  if results.get("calibration"):
    lines += ["", *report.calibration_table(results["calibration"])]
  return "\n".join(lines)


def model_metrics(task, per_example, sums) -> dict:
  """Validation metrics and the selection score of a parsing model (`evaluator.model_metrics`)."""
  return evaluator.model_metrics(per_example, sums, task.space)


def _bank(predict_fn, variables, batches, num_rows: int, keep: Callable[[dict], dict]
          ) -> tuple[tuple[np.ndarray, np.ndarray], dict]:
  """((GT rows [T], mean flattened fingerprint [T, D]) of the GMs present in `batches`, the
  per-example `keep(per)` of every image: its GT row, and its features with the spectral
  parser)."""
  state = {"sums": None, "counts": np.zeros(num_rows, np.int64)}

  def accumulate(per: dict) -> dict:
    f = per["fingerprint"].reshape(len(per["gm_row"]), -1)
    if state["sums"] is None:
      state["sums"] = np.zeros((num_rows, f.shape[1]), np.float64)
    np.add.at(state["sums"], per["gm_row"], f)
    np.add.at(state["counts"], per["gm_row"], 1)
    return keep(per)

  kept, _ = evaluator.collect(predict_fn, variables, batches, on_batch=accumulate)
  present = np.nonzero(state["counts"])[0]
  return (present, state["sums"][present] / state["counts"][present, None]), kept


class _Figures:
  """Per-batch reduction of the evaluated split: retrieval predictions, the figure GMs' first
  image and fingerprint and mean spectrum; fingerprints kept only if asked."""

  def __init__(self, gt, bank, figure_rows, mean, std, keep_fingerprints, features):
    self.gt, self.bank, self.rows = gt, bank, figure_rows
    self.mean, self.std, self.keep, self.features = mean, std, keep_fingerprints, features
    self.figs = {}

  def __call__(self, per: dict) -> dict:
    f, s = per.pop("fingerprint"), per.pop("spectrum")
    image = per.get("image")
    per = answers.features_of(per, self.mean, self.std) if self.features else per
    per.pop("image", None)
    per["retrieval"] = baselines.retrieval_predictions(self.gt, self.bank[0], self.bank[1],
                                                       f.reshape(len(f), -1))
    for i, row in enumerate(per["gm_row"]):
      if row in self.rows:
        if row not in self.figs:
          self.figs[row] = {"image": image[i] * self.std + self.mean, "fingerprint": f[i],
                            "spectrum": np.zeros_like(s[i], np.float64), "n": 0}
        self.figs[row]["spectrum"] += s[i]
        self.figs[row]["n"] += 1
    if self.keep:
      per["fingerprint"] = f
    return per

  def figures(self) -> dict:
    return {self.gt.names[r]: {**d, "spectrum": d["spectrum"] / d["n"]}
            for r, d in sorted(self.figs.items())}


def _fingerprint_curve(parse_fn, variables, fingerprints, target, rows, ks, seed, batch_size,
                       space) -> dict:
  """k-image metrics of the parser heads applied to the mean of k fingerprints."""
  out = {}
  for k in ks:
    groups = aggregate.disjoint_groups(rows, k, seed)
    if not len(groups):
      continue
    preds = [sharding.to_host(parse_fn(variables, fingerprints[groups[i:i + batch_size]].mean(1)))
             for i in range(0, len(groups), batch_size)]
    pred = jax.tree.map(lambda *a: np.concatenate(a, 0), *preds)
    out[int(k)] = metrics.parsing_metrics(pred, aggregate.first_of_groups(target, groups), space)
    out[int(k)]["num_gms"] = len(np.unique(rows[groups[:, 0]]))
  return out


def _ece(pred: dict, answered: dict, target: dict) -> dict:
  """ECE per head family of the deep parser's raw output and of the decided answer."""
  return {"before": calibration.family_ece(pred, target),
          "after": calibration.family_ece(answered, target)}


def _fit_decisions(predict_fn, variables, data: input_pipeline.Datasets,
                   spectral: answers.Spectral | None, mean: float, std: float) -> dict | None:
  """The decisions of every head (`decisions.py`) fitted on the validation GMs."""
  if not data.split.get("val"):
    return None

  def reduce(per: dict) -> dict:
    per = {k: v for k, v in per.items() if k not in ("fingerprint", "spectrum")}
    return answers.features_of(per, mean, std) if spectral else per

  fn = answers.with_images(predict_fn) if spectral else predict_fn
  per, _ = evaluator.collect(fn, variables, data.eval_iter("val"), on_batch=reduce)
  doc, cands = answers.fit_decisions(per, data.gt, data.gt.rows(data.split["train"]), spectral)
  target = {k: per[k] for k in labels.LABEL_KEYS}
  answered = decisions.answer(cands, doc, data.gt.space.group_of_loss)
  return {**doc, "fitted_on": "val", "ece": {"val": _ece(per["pred"], answered, target)},
          "spectral": spectral is not None}


def _load_random_gt(path: str, test_gms: list[str], mesh) -> inference.Loaded:
  """The random-ground-truth model; it must have been trained for the same test GMs."""
  rgt = inference.load(path, mesh=mesh)
  if sorted(rgt.split["test"]) != sorted(test_gms):
    raise ValueError(f"config.eval.random_gt_workdir={path} was trained for test GMs "
                     f"{rgt.split['test']}, not the evaluated {test_gms}")
  if not rgt.config.data.shuffle_labels:
    raise ValueError(f"config.eval.random_gt_workdir={path} was not trained with "
                     "config.data.shuffle_labels=True")
  return rgt


def evaluate(task, model, workdir: str, data: input_pipeline.Datasets, variables, *, step: int,
             which: str, split: str = "test", out_dir: str = "") -> dict:
  """Evaluates `variables` of `model` (of `workdir`'s run, step `step` of its `which` manager)
  on `split` and writes the report to `out_dir` (default WORKDIR/report); returns the results
  dict of `report.py` (as written to metrics.json). task: the run's, with its class weights."""
  config = task.config
  gt, space, mesh = data.gt, data.gt.space, data.mesh
  gms = data.split[split]
  predict_fn = steps.make_predict_fn(task, model, mesh, fingerprints=True)
  logging.info("evaluating %s (%s step %d) on %d %s GMs", workdir, which, step, len(gms), split)
  use_spectral = config.eval.get("spectral", False)
  mean, std = config.data.mean, config.data.std
  def keep(per: dict) -> dict:  # of each training image: its GT row, its features if used
    per = answers.features_of(per, mean, std) if use_spectral else per
    return {k: v for k, v in per.items() if k in ("gm_row", "features")}

  bank, train = _bank(answers.with_images(predict_fn) if use_spectral else predict_fn,
                      variables,
                      data.eval_iter("train", max_per_gm=config.eval.retrieval_images_per_gm),
                      len(gt), keep)
  train_rows = gt.rows(data.split["train"])
  spectral = (answers.fit_spectral(train["features"], train["gm_row"], gt, train_rows,
                                   config.seed) if use_spectral else None)

  figure_gms = gms[:config.eval.num_figure_gms] if config.eval.figures else []
  rgt = (_load_random_gt(config.eval.random_gt_workdir, data.split["test"], mesh)
         if config.eval.random_gt_workdir else None)
  rgt_fn = inference.make_predict_fn(rgt) if rgt else None

  def predict_all(v, batch):  # the model, and beside it what the report needs of the batch
    out, sums = predict_fn(v["model"], batch)
    if rgt_fn is not None:
      out["rgt"] = rgt_fn(v["rgt"], batch)[0]["pred"]
    if figure_gms or use_spectral:
      out["image"] = batch["image"]
    return out, sums

  reduce = _Figures(gt, bank, set(gt.rows(figure_gms).tolist()), mean, std,
                    config.eval.aggregate_fingerprints, use_spectral)
  per, sums = evaluator.collect(
      predict_all, {"model": variables, "rgt": rgt.variables if rgt else None},
      data.eval_iter(split), on_batch=reduce)

  target = {k: per[k] for k in labels.LABEL_KEYS}
  rows = per["gm_row"]
  decided = _fit_decisions(predict_fn, variables, data, spectral, mean, std)
  preds = {"model": per["pred"]}
  if spectral is not None:
    preds["spectral"], feature_retrieval = spectral.predictions(gt, per["features"])
  cands = decisions.candidates(per["pred"], preds.get("spectral"))
  if decided is not None:
    preds["parser"] = decisions.answer(cands, decided, space.group_of_loss)
    decided["ece"][split] = _ece(per["pred"], preds["parser"], target)
  if rgt is not None:
    preds["random_gt"] = per["rgt"]
  preds["majority"] = baselines.majority_predictions(gt, train_rows, len(rows))
  preds["retrieval"] = per["retrieval"]
  if spectral is not None:
    preds["retrieval_features"] = feature_retrieval
  ks = tuple(config.eval.k_images)
  k_images = {m: aggregate.k_image_metrics(p, target, rows, ks, space, config.seed)
              for m, p in preds.items()}
  if config.eval.aggregate_fingerprints:
    parse_fn = steps.make_parse_fingerprint_fn(task, model)
    k_images = {"model": k_images.pop("model"),
                "model_mean_fingerprint": _fingerprint_curve(
                    parse_fn, variables, per["fingerprint"], target, rows, ks, config.seed,
                    config.eval_batch_size, space),
                **k_images}
  methods = {m: metrics.parsing_metrics(p, target, space) for m, p in preds.items()}
  methods["model"] = evaluator.model_metrics(per, sums, space)
  results = {
      "name": (f"test set {config.data.test_set}" if split == "test" and not config.data.test_gms
               else f"{split} GMs"),
      "split": split, "step": int(step), "checkpoint": which, "space": space.name,
      "workdir": workdir, "gms": list(gms), "num_images": len(rows),
      "methods": methods, "k_images": k_images,
      "confusion": [c.tolist() for c in metrics.confusion(preds["model"], target, space)],
      "calibration": decided,
  }
  if rgt is not None:
    results["random_gt_workdir"] = rgt.workdir
  if jax.process_index() == 0:
    out = out_dir or workdir_lib.report_dir(workdir)
    with workdir_lib.writing(out):
      paths = report.write_report(out, results, space, config.eval.figures, reduce.figures())
    logging.info("evaluation report: %s", ", ".join(paths))
    if decided is not None and not out_dir:  # what `revgm parse` applies
      workdir_lib.write_json(workdir_lib.calibration_path(workdir),
                             {**decided, "step": int(step), "checkpoint": which})
      if spectral is not None:
        with workdir_lib.writing(workdir_lib.spectral_path(workdir)):
          spectral.parser.save(workdir_lib.spectral_path(workdir))
  return results


def _combine_k_images(per_set: dict[str, dict]) -> dict:
  """{method: {k: mean ± std over the sets of that k's metrics}}."""
  # Keys as in metrics.json (str), whether a result was read back from it or is fresh (int).
  curves = [{m: {str(k): v for k, v in c.items()} for m, c in res.get("k_images", {}).items()}
            for res in per_set.values()]
  methods = dict.fromkeys(m for c in curves for m in c)
  return {m: {k: metrics.combine({i: c[m][k] for i, c in enumerate(curves)
                                  if k in c.get(m, {})})
              for k in sorted({k for c in curves for k in c.get(m, {})}, key=int)}
          for m in methods}


def write_summary(out_dir: str, per_set: dict[str, dict]) -> dict:
  """Combines the results of several leave-out sets (one workdir each): mean ± std per method
  and per k of the k-image curve over the sets that have it; writes summary.json, summary.md
  and the mean k-image curve (summary_k_images.png) into `out_dir`."""
  methods = dict.fromkeys(m for res in per_set.values() for m in res["methods"])
  combined = {m: metrics.combine({s: res["methods"][m] for s, res in per_set.items()
                                  if m in res["methods"]}) for m in methods}
  k_images = _combine_k_images(per_set)
  os.makedirs(out_dir, exist_ok=True)
  summary = {"sets": {s: {"workdir": r.get("workdir"), "gms": r["gms"], "methods": r["methods"]}
                      for s, r in per_set.items()}, "mean_std": combined,
             "k_images_mean_std": k_images}
  with open(os.path.join(out_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  with open(os.path.join(out_dir, "summary.md"), "w") as f:
    f.write(report.summary_markdown(per_set, combined, k_images))
  if k_images:
    report.k_figure({m: {k: {key: s["mean"] for key, s in stats.items()}
                         for k, stats in curve.items()} for m, curve in k_images.items()},
                    os.path.join(out_dir, "summary_k_images.png"))
  return summary
