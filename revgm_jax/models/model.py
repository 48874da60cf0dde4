"""RevGM = FEN + parsing network, and its construction from a config."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import ml_collections
import numpy as np

from revgm_jax import config_check
from revgm_jax.labels import NUM_CONTINUOUS, GroundTruth, Space
from revgm_jax.models.fen import FEN
from revgm_jax.models.parser import Parser

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_PRIOR_CLIP = 1e-3  # a column constant at 0 or 1 starts at sigmoid(bias) = 0.001 or 0.999


class RevGM(nn.Module):
  """Image -> fingerprint (FEN) -> parser head logits; trained jointly end to end."""
  fen: FEN
  parser: Parser

  def __call__(self, x, train: bool):
    """x: [B, H, W, 3] normalised image -> (fingerprint [B, H, W, 3] float32, outputs).

    outputs = {"cont": [B, 9], "disc": 6 x [B, k], "group": [B, G, 2], "loss": [B, L, 2]}
    logits. Training needs the "dropout" rng and mutable "batch_stats".
    """
    f = self.fen(x, train)
    return f, self.parser(f, train)


def dtype_of(config: ml_collections.ConfigDict):
  """The compute dtype of config.model.dtype (a ConfigError names a wrong one)."""
  config_check.check_dtype(config.model.dtype)
  return DTYPES[config.model.dtype]


def cont_bias(config: ml_collections.ConfigDict, gt: GroundTruth,
              train_gms: Sequence[str]) -> tuple[float, ...] | None:
  """Initial bias of the continuous head: None (PyTorch's init) or, for
  config.model.cont_bias_init="mean", the logit of each column's mean over the training GMs.

  Why: the sigmoid head then starts at the mean-value baseline of the report, and
  moves from it only where the images say so; from PyTorch's init every column starts near 0.5,
  and a column constant over the zoo is slow to reach its value
  (docs/model.md#initial-bias-of-the-continuous-head).
  """
  if config_check.cont_bias_init(config) == "torch":
    return None
  mean = gt.net[gt.rows(list(train_gms)), :NUM_CONTINUOUS].astype(np.float64).mean(0)  # [9]
  p = np.clip(mean, _PRIOR_CLIP, 1 - _PRIOR_CLIP)
  return tuple(float(v) for v in np.log(p) - np.log1p(-p))


def create_model(config: ml_collections.ConfigDict, space: Space,
                 axis_name: str | None = None,
                 cont_bias_init: Sequence[float] | None = None) -> RevGM:
  """RevGM from `config.model`; `axis_name` = the mesh axis for cross-device BatchNorm;
  `cont_bias_init` = `cont_bias(...)` where the model is initialised for training (elsewhere
  the variables are restored, and the init does not matter)."""
  m = config.model
  dtype = dtype_of(config)
  fen = FEN(depth=m.fen_depth, width=m.fen_width, bn_momentum=m.bn_momentum,
            bn_epsilon=m.bn_epsilon, axis_name=axis_name, dtype=dtype)
  parser = Parser(space=space, widths=tuple(m.parser_widths), fc_width=m.fc_width,
                  branch_widths=tuple(m.branch_widths), dropout=m.dropout,
                  share_branch=m.share_branch, dtype=dtype,
                  cont_bias=None if cont_bias_init is None else tuple(cont_bias_init))
  return RevGM(fen=fen, parser=parser)
