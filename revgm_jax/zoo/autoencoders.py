"""Cheap GMs: image-to-image encoder-decoders with random weights run on real crops.

Family `random_i2i` (GM names `i2i_NNNN`): thousands of model instances for little compute, as
in model-synthesis attribution (5,760 random encoder-decoders run on real images). An
untrained latent generator's images are textures; these start from a photograph, so they look
like images from the start, and the decoder, which carries every labelled choice, leaves its
trace (up-sampling above all) on them.

    real crop [B, S, S, 3] in [-1, 1]
      -> encoder (an unlabelled convention, GMPlan.encoder):
         "strided": num_blocks 3x3 stride-2 convs of Ce channels (LeakyReLU(0.2) between)
         "avgpool": one 2^num_blocks average pooling (Ce = 3)
         -> code [B, s0, s0, Ce] flattened to [B, s0 * s0 * Ce]    (s0 = S / 2^num_blocks)
      -> decoder = `generators.Generator(spec)` with spec.latent_dim = s0 * s0 * Ce: the same
         projection (dense bottleneck when fc_latent, else a 3x3 conv on the code map), UpBlocks,
         to_rgb and last-layer choice as the latent GMs, so every label means the same thing
      -> image = last_nonlin(crop + decoder pre-output), the pre-output calibrated to mean 0
         and std output_std (drawn per GM); for sigmoid the crop enters as 2 x crop, since
         sigmoid(2x) = (1 + tanh(x)) / 2. So the images are photographs carrying the decoder's
         trace rather than the textures of an untrained latent GM.

Weights are He-normal (`generators.init_variables`, gain drawn per GM); the calibration is
that of a random-init latent GM (`sampling.calibrate`: batch-norm statistics of the GM's
calibration crops, the to_rgb output normalised) done as an affine map of the pre-output.

The 15 label columns are read off the whole model (`architecture_counts`: encoder convs and
pooling count as layers, the blocks are the decoder's UpBlocks); the loss flags are all 0.

Compile once per architecture: `images` is one jitted function of (spec, encoder) taking the
weights, crops and output std as arguments, so the GMs of an architecture (a cohort: other
seeds, init gains and output stds) reuse its compile (`trace_count` counts the traces). On the
2-core CPU that is 2.6x faster than one vmapped call over them (`images_vmapped`; the numbers
from benchmarks/zoo_i2i_compile.py are in the README, GM zoo).
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from revgm_jax.zoo import generators as G
from revgm_jax.zoo import sampling

FAMILY = "random_i2i"
NAME_PREFIX = "i2i_"
ENCODERS = ("strided", "avgpool")
NUM_CALIB = 32  # crops a GM is calibrated on (batch-norm statistics, output std)
_trace_count = [0]


def trace_count() -> int:
  """How many times `images` has been traced (compiled) in this process."""
  return _trace_count[0]


def code_spec(spec: G.GeneratorSpec, encoder: str, code_channels: int) -> G.GeneratorSpec:
  """The decoder spec of an encoder with `code_channels` channels (3 for "avgpool")."""
  if encoder not in ENCODERS:
    raise ValueError(f"image-to-image encoder {encoder!r}; choose one of {ENCODERS}")
  ce = 3 if encoder == "avgpool" else code_channels
  return dataclasses.replace(spec, latent_dim=spec.start_size**2 * ce)


class AvgPool(nn.Module):
  """Fixed average pooling (a parameter-free layer, counted as a pooling layer)."""
  window: int

  @nn.compact
  def __call__(self, x):
    return nn.avg_pool(x, (self.window, self.window), (self.window, self.window))


class Encoder(nn.Module):
  """Real crop [B, S, S, 3] -> flattened code [B, spec.latent_size]."""
  spec: G.GeneratorSpec
  kind: str

  @nn.compact
  def __call__(self, x):
    s = self.spec
    if self.kind == "avgpool":
      h = AvgPool(2**s.num_blocks)(x)
    else:
      h = x
      for i in range(s.num_blocks):
        h = nn.Conv(s.noise_channels, (3, 3), strides=(2, 2))(h)
        h = nn.leaky_relu(h, 0.2) if i < s.num_blocks - 1 else h
    return h.reshape(h.shape[0], -1)  # [B, s0 * s0 * Ce]


class ImageToImage(nn.Module):
  """Encoder then the latent family's Generator as decoder: [B, S, S, 3] -> [B, S, S, 3]."""
  spec: G.GeneratorSpec
  encoder: str

  @nn.compact
  def __call__(self, x, train: bool = False):
    return G.Generator(self.spec, name="decoder")(
        Encoder(self.spec, self.encoder, name="encoder")(x), train)


def _example(spec: G.GeneratorSpec) -> jax.Array:
  return jnp.zeros((1, spec.image_size, spec.image_size, 3))


@functools.lru_cache(maxsize=None)
def variable_shapes(spec: G.GeneratorSpec, encoder: str) -> dict:
  """Variable shapes of one architecture (traced once per architecture and process)."""
  return G.variable_shapes(ImageToImage(spec, encoder), _example(spec), train=False)


@functools.lru_cache(maxsize=None)
def architecture_counts(spec: G.GeneratorSpec, encoder: str) -> dict[str, int | float]:
  """Raw continuous label values, read off the whole built model (do not modify the dict)."""
  return G.count_layers(ImageToImage(spec, encoder), _example(spec), pool_types=(AvgPool,))


def _parts(variables: dict) -> tuple[dict, dict]:
  """(encoder variables, decoder variables) of ImageToImage variables."""
  enc = {"params": variables["params"].get("encoder", {})}
  dec = {col: tree["decoder"] for col, tree in variables.items() if "decoder" in tree}
  return enc, dec


def _images_fn(spec, encoder, variables, x_calib, x, output_std):
  """uint8 images [B, S, S, 3] of crops x (float [-1, 1]), the decoder calibrated on x_calib.

  The calibration of `sampling.calibrate` (batch-norm statistics of the calibration batch, then
  to_rgb rescaled so the pre-output has mean 0 and std output_std) in fewer passes: to_rgb is
  linear, so rescaling it is an affine map of its output, and one decoder pass over the
  calibration and input crops together serves both (plus a statistics pass for batch norm).
  """
  _trace_count[0] += 1
  enc, dec = _parts(variables)
  code = Encoder(spec, encoder).apply(enc, jnp.concatenate([x_calib, x]))
  c = len(x_calib)
  if spec.norm == "batch":
    _, upd = G.Generator(spec, bn_momentum=0.0).apply(dec, code[:c], train=True,
                                                      mutable=["batch_stats"])
    dec = {**dec, "batch_stats": upd["batch_stats"]}
  _, inter = G.Generator(spec).apply(dec, code, train=False, mutable=["intermediates"])
  pre = inter["intermediates"]["pre_output"][0]  # [C + B, S, S, 3]
  pre = (pre[c:] - pre[:c].mean()) * (output_std / jnp.maximum(pre[:c].std(), 1e-6))
  # The crop plus the decoder's output of std output_std, through the last layer.
  gain = 2.0 if spec.last_nonlin == "sigmoid" else 1.0  # sigmoid(2x) = (1 + tanh(x)) / 2
  return G.to_uint8(G.last_layer(gain * x + pre, spec.last_nonlin), spec.last_nonlin)


_images = jax.jit(_images_fn, static_argnums=(0, 1))
# One call for several GMs of an architecture (their variables, crops, stds stacked on axis 0).
_images_vmap = jax.jit(jax.vmap(_images_fn, in_axes=(None, None, 0, 0, 0, 0)),
                       static_argnums=(0, 1))


def to_float(crops: np.ndarray) -> np.ndarray:
  return crops.astype(np.float32) / 127.5 - 1.0


def gm_inputs(pool: np.ndarray, rng: np.random.Generator, num_images: int, num_calib: int
              ) -> tuple[np.ndarray, np.ndarray]:
  """(calibration crops, input crops) of one GM: drawn from the shared uint8 pool."""
  idx = rng.choice(len(pool), num_calib + num_images, replace=num_calib + num_images > len(pool))
  x = to_float(pool[idx])
  return x[:num_calib], x[num_calib:]


def init(spec: G.GeneratorSpec, encoder: str, rng: np.random.Generator, gain: float) -> dict:
  return G.init_variables(variable_shapes(spec, encoder), rng, gain)


def images(spec: G.GeneratorSpec, encoder: str, variables: dict, x_calib: np.ndarray,
           x: np.ndarray, output_std: float) -> np.ndarray:
  """uint8 images [N, S, S, 3] of one GM; chunks of sampling.chunk_size (the last padded), so
  one compile serves every GM of the architecture with the same image count."""
  n = len(x)
  c = min(sampling.chunk_size(spec.image_size), n)
  xp = np.concatenate([x, np.zeros((-n % c, *x.shape[1:]), x.dtype)])
  out = [np.asarray(_images(spec, encoder, variables, x_calib, xp[i:i + c],
                            np.float32(output_std))) for i in range(0, len(xp), c)]
  return np.concatenate(out)[:n]


def images_vmapped(spec: G.GeneratorSpec, encoder: str, variables: list[dict],
                   x_calib: np.ndarray, x: np.ndarray, output_std: np.ndarray) -> np.ndarray:
  """uint8 images [K, N, S, S, 3] of K GMs of one architecture in one call (benchmark)."""
  stacked = jax.tree_util.tree_map(lambda *a: np.stack(a), *variables)
  return np.asarray(_images_vmap(spec, encoder, stacked, x_calib, x,
                                 np.asarray(output_std, np.float32)))
