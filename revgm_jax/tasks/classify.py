"""Detection and attribution as tasks: FEN constraints with the classification coefficients
plus a weighted cross-entropy (docs/tasks.md#losses), class probabilities and the penultimate
embedding as predictions (their metrics are `revgm_jax.evaluation.classification`'s)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
from jax import lax

from revgm_jax.losses import constraints


def weighted_ce(logits, label, weights, mask, axis_name=None):
  """sum_i w[y_i] CE_i / sum_i w[y_i] over the examples with mask True (PyTorch's weighted
  mean), global over `axis_name`. logits [B, K], label [B] int, weights [K], mask [B] bool."""
  valid = mask & (label >= 0)
  y = jnp.where(valid, label, 0)
  ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None], axis=1)[:, 0]
  w = jnp.where(valid, jnp.asarray(weights, jnp.float32)[y], 0.0)
  num, den = jnp.sum(w * ce), jnp.sum(w)
  if axis_name is not None:
    num, den = lax.psum(num, axis_name), lax.psum(den, axis_name)
  return num / jnp.maximum(den, 1e-12)


@dataclasses.dataclass(frozen=True)
class ClassifyTask:
  """Detection (classes real, generated) or attribution (known GMs + real); the interface is
  `revgm_jax.tasks`'s."""
  config: ml_collections.ConfigDict
  class_weights: dict | None = None
  summary_keys = ("loss", "fen", "ce", "score", "auc", "accuracy", "macro_f1")

  @property
  def name(self) -> str:
    return self.config.task

  def loss(self, fingerprint, outputs, batch, axis_name):
    c = self.config
    terms = constraints.constraint_terms(fingerprint, constraints.low_freq_radius(c),
                                         c.loss.rep_clip, axis_name=axis_name, mask=batch["mask"])
    fen = constraints.fen_loss(terms, c.loss)
    ce = weighted_ce(outputs["logits"], batch["label"], self.class_weights["class"][0],
                     batch["mask"], axis_name)
    return fen + c.loss.w_ce * ce, {"fen": fen, "ce": ce,
                                    **{f"fen/{k}": v for k, v in terms.items()}}

  def predictions(self, outputs):
    return {"prob": jax.nn.softmax(outputs["logits"], -1), "embedding": outputs["embedding"]}
