"""RevGM = FEN + parsing network, and its construction from a config."""

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from revgm_jax.labels import Space
from revgm_jax.models.fen import FEN
from revgm_jax.models.parser import Parser

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


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


def create_model(config: ml_collections.ConfigDict, space: Space,
                 axis_name: str | None = None) -> RevGM:
  """RevGM from `config.model`; `axis_name` = the mesh axis for cross-device BatchNorm."""
  m = config.model
  if m.dtype not in DTYPES:
    raise ValueError(f"config.model.dtype={m.dtype!r} is not supported; use one of "
                     f"{sorted(DTYPES)}")
  dtype = DTYPES[m.dtype]
  fen = FEN(depth=m.fen_depth, width=m.fen_width, bn_momentum=m.bn_momentum,
            bn_epsilon=m.bn_epsilon, axis_name=axis_name, dtype=dtype)
  parser = Parser(space=space, widths=tuple(m.parser_widths), fc_width=m.fc_width,
                  branch_widths=tuple(m.branch_widths), dropout=m.dropout,
                  share_branch=m.share_branch, dtype=dtype)
  return RevGM(fen=fen, parser=parser)
