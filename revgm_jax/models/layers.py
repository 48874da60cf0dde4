"""Layers shared by the FEN and the parser: PyTorch-equivalent initialisers, a 3x3 conv."""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from jax import lax

# Kaiming-normal (fan-in, gain sqrt(2)), untruncated as torch.nn.init.kaiming_normal_; Flax's
# `he_normal` is truncated and would give a smaller std.
KAIMING_NORMAL = nn.initializers.variance_scaling(2.0, "fan_in", "normal")
# PyTorch's default Conv2d/Linear weight init, kaiming_uniform(a=sqrt(5)): U(+-1/sqrt(fan_in)).
TORCH_DEFAULT_KERNEL = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")


def torch_bias_init(fan_in: int) -> Callable:
  """PyTorch's default bias init, U(+-1/sqrt(fan_in)); Flax's bias init knows no fan-in."""
  bound = 1.0 / fan_in ** 0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


_DN = ("NHWC", "HWIO", "NHWC")


def conv3x3(x, w, pad: int = 1):
  """3x3 stride-1 correlation with zero padding `pad` (0-2); x [B, H, W, Ci], w [3, 3, Ci, Co].

  Padding 1 ("same") is given to the conv; any other padding is an explicit `jnp.pad` and a
  VALID conv: XLA:CPU's backward pass of a 3x3 conv with padding 2 falls off its fast path
  (docs/jax_notes.md#padding-2-convolutions, measured in benchmarks/RESULTS.md).
  """
  if pad not in (0, 1, 2):
    raise ValueError(f"conv3x3 supports padding 0, 1 or 2, got {pad}")
  if pad == 1:
    return lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_DN)
  x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  return lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=_DN)


class Conv3x3(nn.Module):
  """3x3 stride-1 conv (`conv3x3`) with symmetric zero padding `pad`, PyTorch's bias init."""
  features: int
  pad: int = 1
  kernel_init: Callable = KAIMING_NORMAL
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):  # [B, H, W, C] -> [B, H + 2 pad - 2, W + 2 pad - 2, features]
    fan_in = 9 * x.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features))
    bias = self.param("bias", torch_bias_init(fan_in), (self.features,))
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    return conv3x3(x, kernel, self.pad) + bias
