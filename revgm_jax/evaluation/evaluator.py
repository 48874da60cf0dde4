"""The one evaluation path: a predict function applied to one pass over a split.

Validation during training, the evaluation report and the k-image curves all go through
`collect` (per-example outputs on the host, padding dropped) and score the model with
`model_metrics`; the predict function is `revgm_jax.steps.make_predict_fn`'s.
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import jax
import numpy as np

from revgm_jax import labels, sharding
from revgm_jax.evaluation import metrics as metrics_lib

# Per-example batch entries that travel with the predictions ("label": detection, attribution).
BATCH_KEYS = (*labels.LABEL_KEYS, "gm_row", "id", "label")


def collect(predict_fn: Callable, variables, batches: Iterable[dict],
            on_batch: Callable[[dict], dict] | None = None) -> tuple[dict, dict]:
  """(per-example outputs [N, ...] of every real example in image-id order, summed batch sums).

  The order is that of the images' ids (when the batches carry them), whatever the number of
  processes that read the split.

  `on_batch` maps each batch's host outputs (real examples only; the batch's `BATCH_KEYS`
  included) to what is kept, e.g. to reduce fingerprints before they pile up.
  """
  sums, outs = {}, []
  for batch in batches:
    per_example, s = predict_fn(variables, batch)
    for k, v in sharding.to_host(s).items():
      sums[k] = sums.get(k, 0.0) + float(v)
    per = sharding.gather_to_host(
        {**per_example, **{k: batch[k] for k in (*BATCH_KEYS, "mask") if k in batch}})
    keep = per.pop("mask").astype(bool)
    per = jax.tree.map(lambda a: a[keep], per)
    outs.append(on_batch(per) if on_batch else per)
  if not sums.get("count"):
    raise ValueError("the evaluated split yielded no image")
  out = jax.tree.map(lambda *a: np.concatenate(a, 0), *outs)
  if "id" in out:
    out = jax.tree.map(lambda a, order=np.argsort(out["id"], kind="stable"): a[order], out)
  return out, sums


def selection_score(m: Mapping) -> float:
  """The 116 eval script's checkpoint rule, F1_net + F1_loss - 5 L1, here on validation GMs."""
  return m["net_f1"] + m["loss_f1"] - 5.0 * m["cont_l1"]


def model_metrics(per_example: Mapping, sums: Mapping, space: labels.Space) -> dict:
  """Example-weighted means of the loss sums (if any) and the parsing metrics, with the
  selection score."""
  count = sums["count"]
  out = {k: v / count for k, v in sums.items() if k != "count"}
  out.update(metrics_lib.parsing_metrics(per_example["pred"], per_example, space))
  out["score"] = selection_score(out)
  return out


def evaluate(predict_fn: Callable, variables, batches: Iterable[dict],
             metrics_fn: Callable[[dict, dict], dict]) -> dict:
  """`metrics_fn(per_example, sums)` of one pass over `batches` (validation): a task's
  `metrics`, `model_metrics` for parsing."""
  per_example, sums = collect(predict_fn, variables, batches)
  return metrics_fn(per_example, sums)
