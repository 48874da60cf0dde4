"""Model parsing as a task (docs/losses.md): the FEN constraints plus the parsing losses, and
the parser's predictions."""

from __future__ import annotations

import dataclasses

import ml_collections

from revgm_jax import labels
from revgm_jax.losses import constraints, parsing


def total_loss(fingerprint, outputs, batch, *, config, space, class_weights, axis_name):
  """Total loss and every term (docs/losses.md#total-loss): FEN constraints + weighted parsing
  losses.

  Examples with mask False (evaluation padding) are left out of every term.
  """
  c_terms = constraints.constraint_terms(fingerprint, constraints.low_freq_radius(config),
                                         config.loss.rep_clip, axis_name=axis_name,
                                         mask=batch["mask"])
  fen = constraints.fen_loss(c_terms, config.loss)
  parse, p_terms = parsing.parsing_loss(outputs, batch, class_weights, config.loss, space,
                                        config.model.head_activation, axis_name=axis_name)
  terms = {"fen": fen, "parsing": parse,
           **{f"fen/{k}": v for k, v in c_terms.items()},
           **{f"parsing/{k}": v for k, v in p_terms.items() if k != "parsing"}}
  return fen + parse, terms


@dataclasses.dataclass(frozen=True)
class ParsingTask:
  """The parsing task of `revgm_jax.tasks` (see there for the interface)."""
  config: ml_collections.ConfigDict
  space: labels.Space
  class_weights: dict | None = None
  summary_keys = ("loss", "fen", "parsing", "score", "cont_l1", "net_f1", "loss_f1")
  name = "parsing"

  def loss(self, fingerprint, outputs, batch, axis_name):
    return total_loss(fingerprint, outputs, batch, config=self.config, space=self.space,
                      class_weights=self.class_weights, axis_name=axis_name)

  def predictions(self, outputs):
    return parsing.predictions(outputs, self.space, self.config.model.head_activation)
