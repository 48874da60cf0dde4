"""Evaluation of a training workdir on a GM split: model, baselines, k-image curve, report.

`evaluate_workdir(config, workdir, datasets=None)` is what `train_and_evaluate` calls at its end
and what `eval.py` runs; it writes `workdir/report/` (see `report.py`) and returns the results.
Two passes over the data:
  1. training GMs (at most config.eval.retrieval_images_per_gm images each): the mean
     fingerprint of each training GM, the bank of the retrieval baseline;
  2. the evaluated split: the model's per-image predictions and fingerprints, the retrieval
     prediction of every image, the random-ground-truth model's predictions (if
     config.eval.random_gt_workdir is set; it must hold the same split), and the data of the
     fingerprint figure.
"""

from __future__ import annotations

import json
import os
from typing import Iterator

from absl import logging
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from revgm_jax import inference, input_pipeline
from revgm_jax.evaluation import aggregate, baselines, metrics, report

REPORT_DIR = "report"


def _local(tree):
  """Global per-example arrays -> NumPy on this host (all examples, every host)."""
  return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def _bank(loaded: inference.Loaded, predict_fn, batches: Iterator[dict],
          num_rows: int) -> tuple[np.ndarray, np.ndarray]:
  """(GT rows [T], mean flattened fingerprint [T, D]) of the GMs present in `batches`."""
  sums, counts = None, np.zeros(num_rows, np.int64)
  for batch in batches:
    out = _local({"f": predict_fn(loaded.variables, batch["image"])["fingerprint"],
                  "row": batch["gm_row"], "mask": batch["mask"]})
    keep = out["mask"].astype(bool)
    f, rows = out["f"][keep].reshape(keep.sum(), -1), out["row"][keep]
    if sums is None:
      sums = np.zeros((num_rows, f.shape[1]), np.float64)
    np.add.at(sums, rows, f)
    np.add.at(counts, rows, 1)
  present = np.nonzero(counts)[0]
  if sums is None or not len(present):
    raise ValueError("retrieval baseline: the training split yielded no image")
  return present, sums[present] / counts[present, None]


def _capped_batches(datasets: input_pipeline.Datasets, gm_names: list[str],
                    cap: int) -> Iterator[dict]:
  """Global padded batches of the first `cap` images (0: all) of each GM of `gm_names`.

  GMs with at most `cap` images are read whole: a TFDS slice beyond a split's end is an error.
  """
  counts = datasets.data.gm_info
  groups = ((0, [n for n in gm_names if cap <= 0 or counts[n]["num_images"] <= cap]),
            (cap, [n for n in gm_names if 0 < cap < counts[n]["num_images"]]))
  for max_per_gm, names in groups:
    if names:
      ds, _ = input_pipeline.eval_dataset(datasets.data, names, datasets.config,
                                          max_per_gm=max_per_gm,
                                          process_index=jax.process_index(),
                                          process_count=jax.process_count())
      for batch in ds.as_numpy_iterator():
        yield input_pipeline.to_global(batch, datasets.mesh)


def _collect(loaded, predict_fn, batches, bank, rgt=None, figure_rows=(), keep_fingerprints=False):
  """One pass over an evaluation split: per-image predictions, labels and figure data."""
  mean, std = loaded.config.data.mean, loaded.config.data.std
  outs, fingerprints, figs = [], [], {}
  for batch in batches:
    out = predict_fn(loaded.variables, batch["image"])
    per = {"pred": out["pred"], "f": out["fingerprint"], "s": out["spectrum"],
           **{k: batch[k] for k in ("net", "loss", "loss_group", "gm_row", "mask")}}
    if rgt is not None:
      per["rgt"] = rgt[1](rgt[0].variables, batch["image"])["pred"]
    if figure_rows:
      per["image"] = batch["image"]
    per = _local(per)
    keep = per.pop("mask").astype(bool)
    per = jax.tree.map(lambda a: a[keep], per)
    f, s = per.pop("f"), per.pop("s")
    per["retrieval"] = baselines.retrieval_predictions(loaded.gt, bank[0], bank[1],
                                                       f.reshape(len(f), -1))
    for i, row in enumerate(per["gm_row"]):
      if row in figure_rows:
        if row not in figs:
          figs[row] = {"image": per["image"][i] * std + mean, "fingerprint": f[i],
                       "spectrum": np.zeros_like(s[i], np.float64), "n": 0}
        figs[row]["spectrum"] += s[i]
        figs[row]["n"] += 1
    per.pop("image", None)
    if keep_fingerprints:
      fingerprints.append(f)
    outs.append(per)
  if not outs or not sum(len(o["gm_row"]) for o in outs):
    raise ValueError("the evaluated split yielded no image")
  allx = jax.tree.map(lambda *a: np.concatenate(a, 0), *outs)
  for d in figs.values():
    d["spectrum"] /= d.pop("n")
  return allx, (np.concatenate(fingerprints, 0) if keep_fingerprints else None), figs


def _fingerprint_curve(loaded, fingerprints, target, rows, ks, seed, batch_size) -> dict:
  """k-image metrics of the parser heads applied to the mean of k fingerprints."""
  parse_fn = inference.make_parse_fingerprint_fn(loaded)
  out = {}
  for k in ks:
    groups = aggregate.disjoint_groups(rows, k, seed)
    if not len(groups):
      continue
    preds = [jax.tree.map(np.asarray, parse_fn(loaded.variables,
                                               fingerprints[groups[i:i + batch_size]].mean(1)))
             for i in range(0, len(groups), batch_size)]
    pred = jax.tree.map(lambda *a: np.concatenate(a, 0), *preds)
    out[int(k)] = metrics.parsing_metrics(pred, aggregate.first_of_groups(target, groups),
                                          loaded.space)
    out[int(k)]["num_gms"] = len(np.unique(rows[groups[:, 0]]))
  return out


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


def evaluate_workdir(config: ml_collections.ConfigDict, workdir: str,
                     datasets: input_pipeline.Datasets | None = None, split: str = "test",
                     checkpoint: str = "", out_dir: str = "") -> dict:
  """Evaluates a training workdir on `split` and writes its report.

  config: the run's config (config.eval.* selects the checkpoint, k values, baselines);
  datasets: the run's `input_pipeline.get_datasets(config)` (built if None);
  checkpoint: a path for `inference.load` instead of workdir's config.eval.which checkpoint;
  out_dir: where the report goes (default workdir/report). Returns the results dict of
  `report.py` (as written to metrics.json).
  """
  datasets = datasets or input_pipeline.get_datasets(config)
  if not checkpoint:
    checkpoint = os.path.join(workdir, "best" if config.eval.which == "best" else "checkpoints")
  loaded = inference.load(checkpoint, config, datasets.mesh)
  gt, space = loaded.gt, loaded.space
  if list(loaded.split[split]) != list(datasets.split[split]):
    raise ValueError(f"{checkpoint} was trained with {split} GMs {loaded.split[split]}, but the "
                     f"config's data gives {datasets.split[split]}")
  predict_fn = inference.make_predict_fn(loaded)
  logging.info("evaluating %s (step %d) on %d %s GMs", loaded.workdir, loaded.step,
               len(datasets.split[split]), split)

  bank = _bank(loaded, predict_fn, _capped_batches(datasets, datasets.split["train"],
                                                   config.eval.retrieval_images_per_gm), len(gt))
  rgt = None
  if config.eval.random_gt_workdir:
    rgt_loaded = _load_random_gt(config.eval.random_gt_workdir, datasets.split["test"],
                                 datasets.mesh)
    rgt = (rgt_loaded, inference.make_predict_fn(rgt_loaded))
  figure_gms = datasets.split[split][:config.eval.num_figure_gms] if config.eval.figures else []
  allx, fingerprints, figs = _collect(
      loaded, predict_fn, datasets.eval_iter(split), bank, rgt,
      figure_rows=set(gt.rows(figure_gms).tolist()),
      keep_fingerprints=config.eval.aggregate_fingerprints)

  target = {k: allx[k] for k in ("net", "loss", "loss_group")}
  rows = allx["gm_row"]
  preds = {"model": allx["pred"]}
  if rgt is not None:
    preds["random_gt"] = allx["rgt"]
  preds["majority"] = baselines.majority_predictions(gt, gt.rows(datasets.split["train"]),
                                                     len(rows))
  preds["retrieval"] = allx["retrieval"]
  ks = tuple(config.eval.k_images)
  k_images = {m: aggregate.k_image_metrics(p, target, rows, ks, space, config.seed)
              for m, p in preds.items()}
  if fingerprints is not None:
    k_images = {"model": k_images.pop("model"),
                "model_mean_fingerprint": _fingerprint_curve(
                    loaded, fingerprints, target, rows, ks, config.seed, config.eval_batch_size),
                **k_images}
  results = {
      "name": (f"test set {config.data.test_set}" if split == "test" and not config.data.test_gms
               else f"{split} GMs"),
      "split": split, "step": loaded.step, "checkpoint": loaded.which, "space": space.name,
      "workdir": loaded.workdir, "gms": list(datasets.split[split]), "num_images": len(rows),
      "methods": {m: metrics.parsing_metrics(p, target, space) for m, p in preds.items()},
      "k_images": k_images,
      "confusion": [c.tolist() for c in metrics.confusion(preds["model"], target, space)],
  }
  if rgt is not None:
    results["random_gt_workdir"] = rgt[0].workdir
  if jax.process_index() == 0:
    out_dir = out_dir or os.path.join(workdir, REPORT_DIR)
    fp = {gt.names[r]: d for r, d in sorted(figs.items())}
    paths = report.write_report(out_dir, results, space, config.eval.figures, fp)
    logging.info("evaluation report: %s", ", ".join(paths))
  return results


def write_summary(out_dir: str, per_set: dict[str, dict]) -> dict:
  """Combines the results of several leave-out sets (one workdir each): mean ± std per method
  over the sets that have it; writes summary.json and summary.md into `out_dir`."""
  methods = dict.fromkeys(m for res in per_set.values() for m in res["methods"])
  combined = {m: metrics.combine({s: res["methods"][m] for s, res in per_set.items()
                                  if m in res["methods"]}) for m in methods}
  os.makedirs(out_dir, exist_ok=True)
  summary = {"sets": {s: {"workdir": r.get("workdir"), "gms": r["gms"], "methods": r["methods"]}
                      for s, r in per_set.items()}, "mean_std": combined}
  with open(os.path.join(out_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  with open(os.path.join(out_dir, "summary.md"), "w") as f:
    f.write(report.summary_markdown(per_set, combined))
  return summary
