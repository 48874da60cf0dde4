"""Fingerprint estimation network (FEN): the DnCNN of docs/model.md#fen."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from revgm_jax.models.layers import Conv3x3


class FEN(nn.Module):
  """DnCNN: conv+ReLU, (depth - 2) x conv+BN+ReLU, conv to 3 channels (no activation).

  The output is the fingerprint itself (the "residual"; nothing is subtracted from the input).
  BatchNorm follows PyTorch's defaults (torch momentum 0.1 == Flax momentum 0.9, eps 1e-5).
  With `axis_name`, training-mode batch statistics are the pmean of per-device moments, which
  equals the global-batch statistics because every device holds the same number of examples.
  `dtype` is the compute dtype (bfloat16 for mixed precision); params stay float32 and the
  fingerprint is returned in float32 because the FFT losses need it.
  """
  depth: int = 17
  width: int = 64
  bn_momentum: float = 0.9
  bn_epsilon: float = 1e-5
  axis_name: str | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):  # [B, H, W, 3] -> [B, H, W, 3] float32
    if self.depth < 2:
      raise ValueError(f"FEN depth must be >= 2 (config.model.fen_depth), got {self.depth}")
    x = nn.relu(Conv3x3(self.width, dtype=self.dtype, name="conv_0")(x))
    for i in range(1, self.depth - 1):
      x = Conv3x3(self.width, dtype=self.dtype, name=f"conv_{i}")(x)
      x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                       epsilon=self.bn_epsilon, axis_name=self.axis_name, dtype=self.dtype,
                       param_dtype=jnp.float32, name=f"bn_{i}")(x)
      x = nn.relu(x)
    x = Conv3x3(3, dtype=self.dtype, name=f"conv_{self.depth - 1}")(x)
    return x.astype(jnp.float32)
