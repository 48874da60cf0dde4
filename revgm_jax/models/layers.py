"""Layers shared by the FEN and the parser: PyTorch-equivalent initialisers, a fast 3x3 conv."""

import functools
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
WEIGHT_GRADS = ("auto", "chunked", "xla")
# Output pixels per weight-gradient chunk: its [9 Ci, n] im2col (590 KB at Ci = 64) stays in
# the core's L2 cache.
_CHUNK_PIXELS = 256


def _conv(x, w, padding):
  return lax.conv_general_dilated(x, w, (1, 1), padding, dimension_numbers=_DN)


def _conv3x3_forward(x, w, pad: int):
  # Padding 1 ("same") is given to the conv; any other padding is an explicit `jnp.pad` and a
  # VALID conv (measured faster on XLA:CPU for the parser's padding 2).
  if pad == 1:
    return _conv(x, w, ((1, 1), (1, 1)))
  return _conv(jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))), w, "VALID")


def _weight_grad(x, dy, pad: int):
  """dL/dkernel of a 3x3 conv: a loop over chunks of output rows, each im2col @ dy.

  XLA lowers the weight gradient as one convolution with an (H x W) kernel, which XLA:CPU's
  conv libraries run 3-5x slower than the forward conv; per chunk, a [9 Ci, n] im2col (taps
  stacked on the major axis of a channel-major slice) times dy [n, Co] is a plain GEMM on
  data in cache. x: [B, H, W, Ci], dy: [B, Ho, Wo, Co] -> [3, 3, Ci, Co] float32.
  """
  b, ho, wo, co = dy.shape
  ci = x.shape[-1]
  rows = max(1, min(ho, _CHUNK_PIXELS // wo))
  chunks = -(-ho // rows)
  extra = chunks * rows - ho  # zero rows so that every chunk is full (they add nothing)
  xt = jnp.pad(jnp.transpose(x, (0, 3, 1, 2)),
               ((0, 0), (0, 0), (pad, pad + extra), (pad, pad)))  # [B, Ci, Ho + 2 + extra, Wo + 2]
  dy = jnp.pad(dy, ((0, 0), (0, extra), (0, 0), (0, 0)))  # [B, Ho + extra, Wo, Co]

  def chunk(i):  # [9 Ci, Co] from output rows r .. r + rows of image `img`
    img, r = i // chunks, (i % chunks) * rows
    xs = lax.dynamic_slice(xt, (img, 0, r, 0), (1, ci, rows + 2, wo + 2))[0]
    cols = jnp.concatenate([xs[:, kh:kh + rows, kw:kw + wo]
                            for kh in range(3) for kw in range(3)])  # [9 Ci, rows, Wo]
    d = lax.dynamic_slice(dy, (img, r, 0, 0), (1, rows, wo, co)).reshape(rows * wo, co)
    return jnp.dot(cols.reshape(9 * ci, rows * wo), d, preferred_element_type=jnp.float32)

  # The first chunk seeds the sum, so that inside shard_map the carry has the batch's type.
  dw = lax.fori_loop(1, b * chunks, lambda i, acc: acc + chunk(i), chunk(0))
  return dw.reshape(3, 3, ci, co)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _conv3x3(x, w, pad):
  return _conv3x3_forward(x, w, pad)


def _conv3x3_fwd(x, w, pad):
  return _conv3x3_forward(x, w, pad), (x, w)


def _conv3x3_bwd(pad, res, dy):
  x, w = res
  q = 2 - pad  # the input gradient is a conv of dy with the flipped, transposed kernel
  dx = _conv(dy, jnp.swapaxes(w[::-1, ::-1], 2, 3), ((q, q), (q, q)))
  return dx, _weight_grad(x, dy, pad).astype(w.dtype)


_conv3x3.defvjp(_conv3x3_fwd, _conv3x3_bwd)


def conv3x3(x, w, pad: int = 1, weight_grad: str = "auto"):
  """3x3 stride-1 correlation with zero padding `pad` (0-2); x [B, H, W, Ci], w [3, 3, Ci, Co].

  Same values and gradients as `lax.conv_general_dilated`. `weight_grad`: "chunked" computes
  the kernel gradient as chunked GEMMs (`_weight_grad`), which made the paper-size training
  step 1.5x faster on a 2-core CPU (benchmarks/RESULTS.md); "xla" leaves it to XLA (cuDNN on
  GPUs does it well, a loop of small GEMMs would not); "auto" = chunked on CPU only.
  """
  if pad not in (0, 1, 2):
    raise ValueError(f"conv3x3 supports padding 0, 1 or 2, got {pad}")
  if weight_grad not in WEIGHT_GRADS:
    raise ValueError(f"conv weight_grad must be one of {WEIGHT_GRADS}, got {weight_grad!r}")
  if weight_grad == "xla" or (weight_grad == "auto" and jax.default_backend() != "cpu"):
    return _conv3x3_forward(x, w, pad)
  # Inside shard_map, give w the mesh axes x varies over (the replicated kernel becomes
  # per-device): the all-reduce of its gradient is then the transpose of this cast.
  x_axes = jax.typeof(x).manual_axis_type.varying
  axes = tuple(sorted(x_axes - jax.typeof(w).manual_axis_type.varying))
  if axes:
    w = lax.pcast(w, axes, to="varying")
  return _conv3x3(x, w, pad)


class Conv3x3(nn.Module):
  """3x3 stride-1 conv with symmetric zero padding `pad`, bias initialised as PyTorch.

  The conv is `conv3x3` (`weight_grad` picks its kernel-gradient formulation). Padding other
  than 1 is an explicit pad and a VALID conv, because XLA:CPU's backward pass falls off its
  fast path for a 3x3 conv with padding 2 (measured 17-40x slower for FEN-sized stacks).
  """
  features: int
  pad: int = 1
  kernel_init: Callable = KAIMING_NORMAL
  dtype: Any = jnp.float32
  weight_grad: str = "auto"

  @nn.compact
  def __call__(self, x):  # [B, H, W, C] -> [B, H + 2 pad - 2, W + 2 pad - 2, features]
    fan_in = 9 * x.shape[-1]
    kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features))
    bias = self.param("bias", torch_bias_init(fan_in), (self.features,))
    x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
    return conv3x3(x, kernel, self.pad, self.weight_grad) + bias
