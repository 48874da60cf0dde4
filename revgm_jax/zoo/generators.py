"""The zoo's generator family: latent -> RGB image, architecture set by a `GeneratorSpec`.

    z [B, latent_size]
      -> projection: Dense to s0 x s0 x C0 (fc_latent) or a 3x3 conv on z seen as an
         s0 x s0 noise map, then norm + non-linearity           (s0 = image_size / 2^num_blocks)
      -> num_blocks x UpBlock: x2 up-sampling layer (+ norm + non-linearity), then
         convs_per_block - 1 further 3x3 convs (+ norm + non-linearity each); with `skip`, a
         nearest-up-sampled 1x1-conv shortcut is added to the block output
      -> to_rgb 3x3 conv -> last-layer non-linearity            [B, image_size, image_size, 3]

Up-sampling kinds: `transposed` (4x4 stride-2 transposed conv, computed in its sub-pixel form),
`pixel_shuffle` (3x3 conv to 4C channels + depth-to-space), `nearest` / `bilinear`
(interpolation + 3x3 conv). Channels halve per block: C_b = min(width * 2^(num_blocks - b),
max_channels).

Label columns of the "zoo" space (`revgm_jax.labels.ZOO`); every count is read off the built
model by `architecture_counts` (module calls recorded while tracing `init`, parameter shapes),
never typed by hand:

| col | name                 | zoo meaning                                                         |
|-----|----------------------|---------------------------------------------------------------------|
| 0   | num_layers           | conv + FC + norm + pooling + parameter-free resampling layers       |
| 1   | num_conv_layers      | conv layers (a transposed conv counts once)                         |
| 2   | num_fc_layers        | dense layers (0 or 1: the latent projection)                        |
| 3   | num_pool_layers      | pooling layers (always 0: the generators only up-sample)            |
| 4   | num_norm_layers      | normalisation layers                                                |
| 5   | num_filters          | sum of the output channels of all conv layers                       |
| 6   | num_blocks           | up-sampling blocks (2-4)                                            |
| 7   | num_layers_per_block | layers inside a block (mean over blocks; all blocks alike)          |
| 8   | num_params           | trainable parameters (batch statistics excluded)                    |
| 9   | normalization_type   | 0 none, 1 batch, 2 instance, 3 layer (over H, W, C)                 |
| 10  | nonlin_last_layer    | 0 tanh, 1 sigmoid, 2 none, 3 clip to [-1, 1]                        |
| 11  | nonlin_last_block    | block non-linearity: 0 ReLU, 1 LeakyReLU(0.2), 2 GELU, 3 ELU        |
| 12  | upsampling_type      | 0 learned (transposed, pixel shuffle), 1 interp. (nearest, bilinear)|
| 13  | skip_connection      | 0 no, 1 yes                                                         |
| 14  | fc_latent_projection | 0 no (conv on a noise map), 1 yes (dense projection)                |

Resampling layers are interpolation and depth-to-space; activations are not counted as layers.

Columns 0-8 are min-max normalised over the zoo by the builder (raw ranges in net_ranges.csv).
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

UPSAMPLING = ("transposed", "pixel_shuffle", "nearest", "bilinear")
LEARNED_UPSAMPLING = ("transposed", "pixel_shuffle")
NORMS = ("none", "batch", "instance", "layer")
LAST_NONLINS = ("tanh", "sigmoid", "none", "clip")
BLOCK_NONLINS = ("relu", "leaky_relu", "gelu", "elu")

_ACTIVATIONS = {
    "relu": nn.relu,
    "leaky_relu": functools.partial(nn.leaky_relu, negative_slope=0.2),
    "gelu": nn.gelu,
    "elu": nn.elu,
}
_LAST = {
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "none": lambda x: x,
    "clip": lambda x: jnp.clip(x, -1.0, 1.0),
}


@dataclasses.dataclass(frozen=True)
class GeneratorSpec:
  """Native hyperparameters of one generator (hashable: it keys jit caches)."""
  image_size: int = 32
  num_blocks: int = 3
  upsampling: str = "transposed"
  norm: str = "batch"
  block_nonlin: str = "relu"
  last_nonlin: str = "tanh"
  skip: bool = False
  convs_per_block: int = 1
  width: int = 32
  fc_latent: bool = True
  latent_dim: int = 64
  max_channels: int = 256
  # How the code is written, not labelled (real GMs differ in it; the parser must not key on
  # one convention): the factor a skip sum is scaled by, and the norms' epsilon.
  skip_scale: float = 1.0
  norm_eps: float = 1e-5

  def __post_init__(self):
    for field, value, choices in (("upsampling", self.upsampling, UPSAMPLING),
                                  ("norm", self.norm, NORMS),
                                  ("block_nonlin", self.block_nonlin, BLOCK_NONLINS),
                                  ("last_nonlin", self.last_nonlin, LAST_NONLINS)):
      if value not in choices:
        raise ValueError(f"GeneratorSpec.{field}={value!r}; choose one of {choices}")
    if not 1 <= self.num_blocks or self.image_size % 2**self.num_blocks \
        or self.image_size // 2**self.num_blocks < 2:
      raise ValueError(f"GeneratorSpec: image_size {self.image_size} must be divisible by "
                       f"2^num_blocks = {2**self.num_blocks} with a start resolution >= 2")
    if self.convs_per_block < 1 or self.width < 1:
      raise ValueError("GeneratorSpec: convs_per_block and width must be >= 1")

  @property
  def start_size(self) -> int:
    return self.image_size // 2**self.num_blocks

  @property
  def channels(self) -> tuple[int, ...]:
    """Channels after the projection and after each block."""
    return tuple(min(self.width * 2**(self.num_blocks - b), self.max_channels)
                 for b in range(self.num_blocks + 1))

  @property
  def noise_channels(self) -> int:
    """Channels of the noise map a conv projection reads (latent_dim spread over s0 x s0)."""
    return max(1, self.latent_dim // self.start_size**2)

  @property
  def latent_size(self) -> int:
    """Length of the latent vector the generator takes."""
    return self.latent_dim if self.fc_latent else self.start_size**2 * self.noise_channels


# _PHASE_TAPS[p, a, k] = 1 when tap k of a 4-tap, stride-2, padding-1 transposed conv feeds
# output phase p from window position a of a 2-tap conv over the input padded by 1:
# out[2m] = x[m-1] w[3] + x[m] w[1], out[2m+1] = x[m] w[2] + x[m+1] w[0].
_PHASE_TAPS = np.zeros((2, 2, 4), np.float32)
for _p, _a, _k in ((0, 0, 3), (0, 1, 1), (1, 0, 2), (1, 1, 0)):
  _PHASE_TAPS[_p, _a, _k] = 1.0


def depth_to_space(x: jax.Array, block: int = 2) -> jax.Array:
  """[B, H, W, b*b*C] with channels ordered (row phase, column phase, C) -> [B, bH, bW, C]."""
  b, h, w, c = x.shape
  c //= block * block
  x = x.reshape(b, h, w, block, block, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * block, w * block, c)


def subpixel_conv_transpose(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """The transposed conv of PyTorch `ConvTranspose2d(k=4, s=2, p=1)` in sub-pixel form.

  x [B, H, W, Cin], kernel [4, 4, Cin, Cout] (scatter convention: input pixel i adds
  x[i] * kernel[k] to output 2i - 1 + k) -> [B, 2H, 2W, Cout]. Each of the 4 output phases is
  a 2x2 conv of the input padded by 1 (its taps scattered from the 4x4 kernel): one stride-1
  conv to 4 * Cout phase channels, a one-pixel shift per phase, then depth-to-space. The same
  operator and cost as the transposed conv, but its gradient is a plain conv (XLA:CPU runs the
  gradient of a transposed conv much slower, benchmarks/RESULTS.md).
  """
  b, h, w, cin = x.shape
  cout = kernel.shape[-1]
  taps = jnp.asarray(_PHASE_TAPS)
  k2 = jnp.einsum("iak,jbl,klcd->abcijd", taps, taps, kernel)  # [2, 2, Cin, 2, 2, Cout]
  k2 = k2.reshape(2, 2, cin, 4 * cout).astype(x.dtype)
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  y = jax.lax.conv_general_dilated(xp, k2, (1, 1), "VALID",
                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  y = y.reshape(b, h + 1, w + 1, 2, 2, cout)  # window t of phase p is output 2(t - p) + p
  phases = [[y[:, i:i + h, j:j + w, i, j] for j in range(2)] for i in range(2)]
  y = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=3)  # [B, H, W, 2, 2, Cout]
  return depth_to_space(y.reshape(b, h, w, 4 * cout))  # [B, 2H, 2W, Cout]


class TransposedConv(nn.Module):
  """4x4 stride-2 transposed conv (a learned x2 up-sampling), sub-pixel implementation."""
  features: int

  @nn.compact
  def __call__(self, x):  # [B, H, W, Cin] -> [B, 2H, 2W, features]
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (4, 4, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros, (self.features,))
    return subpixel_conv_transpose(x, kernel) + bias


class DepthToSpace(nn.Module):
  """Pixel shuffle: a parameter-free layer (so the label counter sees it)."""

  @nn.compact
  def __call__(self, x):
    return depth_to_space(x)


class Interpolate(nn.Module):
  """x2 nearest or bilinear (half-pixel centres) up-sampling; a parameter-free layer."""
  method: str

  @nn.compact
  def __call__(self, x):  # [B, H, W, C] -> [B, 2H, 2W, C]
    if self.method == "nearest":
      return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    b, h, w, c = x.shape
    return jax.image.resize(x, (b, 2 * h, 2 * w, c), "bilinear")


def _norm(kind: str, train: bool, momentum: float, eps: float):
  if kind == "batch":
    return nn.BatchNorm(use_running_average=not train, momentum=momentum, epsilon=eps)
  if kind == "instance":
    return nn.InstanceNorm(epsilon=eps)
  if kind == "layer":
    return nn.LayerNorm(reduction_axes=(-3, -2, -1), epsilon=eps)
  return None


class UpBlock(nn.Module):
  """x2 up-sampling layer, then convs_per_block - 1 3x3 convs; norm + activation after each."""
  spec: GeneratorSpec
  features: int
  bn_momentum: float

  @nn.compact
  def __call__(self, x, train: bool):  # [B, H, W, Cin] -> [B, 2H, 2W, features]
    s, act = self.spec, _ACTIVATIONS[self.spec.block_nonlin]

    def norm_act(h):
      norm = _norm(s.norm, train, self.bn_momentum, s.norm_eps)
      return act(norm(h) if norm is not None else h)

    if s.upsampling == "transposed":
      h = TransposedConv(self.features)(x)
    elif s.upsampling == "pixel_shuffle":
      h = DepthToSpace()(nn.Conv(4 * self.features, (3, 3))(x))
    else:
      h = nn.Conv(self.features, (3, 3))(Interpolate(s.upsampling)(x))
    h = norm_act(h)
    for _ in range(s.convs_per_block - 1):
      h = norm_act(nn.Conv(self.features, (3, 3))(h))
    if s.skip:
      h = (h + nn.Conv(self.features, (1, 1))(Interpolate("nearest")(x))) * s.skip_scale
    return h


class Generator(nn.Module):
  """Latent [B, spec.latent_size] -> image [B, S, S, 3] in the range of the last non-linearity.

  The pre-activation output is sown as intermediates/pre_output (output calibration).
  """
  spec: GeneratorSpec
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, z, train: bool = False):
    s, ch = self.spec, self.spec.channels
    s0 = s.start_size
    if s.fc_latent:
      h = nn.Dense(s0 * s0 * ch[0])(z).reshape(-1, s0, s0, ch[0])
    else:
      h = nn.Conv(ch[0], (3, 3))(z.reshape(-1, s0, s0, s.noise_channels))
    norm = _norm(s.norm, train, self.bn_momentum, s.norm_eps)
    h = _ACTIVATIONS[s.block_nonlin](norm(h) if norm is not None else h)  # [B, s0, s0, C0]
    for b in range(s.num_blocks):
      h = UpBlock(s, ch[b + 1], self.bn_momentum)(h, train)
    h = nn.Conv(3, (3, 3), name="to_rgb")(h)  # [B, S, S, 3]
    self.sow("intermediates", "pre_output", h)
    return _LAST[s.last_nonlin](h)


def last_layer(x: jax.Array, last_nonlin: str) -> jax.Array:
  """The last-layer non-linearity `last_nonlin` (LAST_NONLINS) applied to x."""
  return _LAST[last_nonlin](x)


def to_unit(x: jax.Array, last_nonlin: str) -> jax.Array:
  """Generator output -> [0, 1] image, as the GM's code would save it.

  tanh / clip outputs map (x + 1) / 2, sigmoid outputs are used as they are, and an unbounded
  ("none") output is min-max stretched per image (torchvision `save_image(normalize=True)`).
  """
  if last_nonlin == "sigmoid":
    u = x
  elif last_nonlin == "none":
    lo = x.min(axis=(1, 2, 3), keepdims=True)
    hi = x.max(axis=(1, 2, 3), keepdims=True)
    u = (x - lo) / jnp.maximum(hi - lo, 1e-6)
  else:
    u = (x + 1.0) / 2.0
  return jnp.clip(u, 0.0, 1.0)


def to_signed(x: jax.Array, last_nonlin: str) -> jax.Array:
  """Generator output -> the [-1, 1] range the training losses compare with real images."""
  return 2.0 * x - 1.0 if last_nonlin == "sigmoid" else x


def to_uint8(x: jax.Array, last_nonlin: str) -> jax.Array:
  return jnp.round(to_unit(x, last_nonlin) * 255.0).astype(jnp.uint8)


def variable_shapes(module: nn.Module, *example_inputs, **kwargs) -> dict:
  """Variable shapes of `module` from `jax.eval_shape` (traces, never compiles)."""
  return jax.eval_shape(lambda: module.init(jax.random.key(0), *example_inputs, **kwargs))


def init_variables(shapes: dict, rng: np.random.Generator, gain: float = 2.0**0.5) -> dict:
  """Fills eval_shape'd variables with NumPy initialisers (no per-architecture compile).

  Kernels: He-normal N(0, gain^2 / fan_in), fan_in = prod(shape[:-1]) (a 4x4 stride-2
  transposed-conv kernel feeds each output from 2 x 2 taps, so its fan_in is 4 * Cin);
  biases, norm offsets and running means 0; norm scales and running variances 1.
  """
  def fill(path, leaf):
    name = path[-1].key
    shape = leaf.shape
    if name == "kernel":
      fan_in = int(np.prod(shape[:-1]))
      if len(shape) == 4 and shape[:2] == (4, 4):
        fan_in //= 4
      return (rng.standard_normal(shape) * gain / np.sqrt(fan_in)).astype(np.float32)
    if name in ("scale", "var"):
      return np.ones(shape, np.float32)
    return np.zeros(shape, np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)


_CONV_TYPES = (nn.Conv, TransposedConv)
_NORM_TYPES = (nn.BatchNorm, nn.InstanceNorm, nn.LayerNorm)
_RESAMPLE_TYPES = (Interpolate, DepthToSpace)
_POOL_TYPES = ()  # the family has no pooling layer; listed so the count is read, not assumed


@functools.lru_cache(maxsize=None)
def architecture_counts(spec: GeneratorSpec) -> dict[str, int | float]:
  """Raw continuous label values of `spec`, read off the built model (`count_layers`).

  Cached per spec: do not modify the returned dict.
  """
  return count_layers(Generator(spec), jnp.zeros((1, spec.latent_size)))


def count_layers(model: nn.Module, example: jax.Array, pool_types: tuple = _POOL_TYPES
                 ) -> dict[str, int | float]:
  """The 9 continuous label values of `model` (a module built of this file's layers).

  Traces `model.init` under `jax.eval_shape` while recording every module call
  (`nn.intercept_methods`), then counts layers by module type (`pool_types` are the model's
  pooling layers) and parameters / filters from the parameter shapes; blocks are the `UpBlock`s.
  """
  calls = []  # (module type, scope path)

  def record(next_fun, args, kwargs, context):
    if context.method_name == "__call__":
      calls.append((type(context.module), context.module.scope.path))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    shapes = variable_shapes(model, example, train=False)

  def is_layer(t):
    return issubclass(t, _CONV_TYPES + (nn.Dense,) + _NORM_TYPES + pool_types + _RESAMPLE_TYPES)

  def count(types):
    return sum(issubclass(t, types) for t, _ in calls) if types else 0

  blocks = [path for t, path in calls if t is UpBlock]
  in_blocks = sum(is_layer(t) and any(path[:len(b)] == b for b in blocks)
                  for t, path in calls if path not in blocks)
  kernels = [leaf.shape for path, leaf in jax.tree_util.tree_leaves_with_path(shapes["params"])
             if path[-1].key == "kernel"]
  conv_kernels = [k for k in kernels if len(k) == 4]
  if len(conv_kernels) != count(_CONV_TYPES):
    raise AssertionError(f"{model}: {len(conv_kernels)} conv kernels for "
                         f"{count(_CONV_TYPES)} conv layers")
  return {
      "num_layers": sum(is_layer(t) for t, _ in calls),
      "num_conv_layers": count(_CONV_TYPES),
      "num_fc_layers": count(nn.Dense),
      "num_pool_layers": count(pool_types),
      "num_norm_layers": count(_NORM_TYPES),
      "num_filters": sum(k[-1] for k in conv_kernels),
      "num_blocks": len(blocks),
      "num_layers_per_block": in_blocks / len(blocks),
      "num_params": sum(int(np.prod(leaf.shape))
                        for leaf in jax.tree_util.tree_leaves(shapes["params"])),
  }


def discrete_labels(spec: GeneratorSpec) -> tuple[int, ...]:
  """Class indices of columns 9-14 (see the table in the module docstring)."""
  return (NORMS.index(spec.norm), LAST_NONLINS.index(spec.last_nonlin),
          BLOCK_NONLINS.index(spec.block_nonlin),
          int(spec.upsampling not in LEARNED_UPSAMPLING), int(spec.skip), int(spec.fc_latent))
