"""Sampling a GM's images with one compile per GM.

Compiling dominates the cost of small random-init generators on CPU, so calibration and
generation are one program, images come in fixed-size chunks (one compile for all of them)
and the latents are drawn in NumPy.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from revgm_jax.zoo.generators import Generator, GeneratorSpec, to_uint8

def calibrate(spec: GeneratorSpec, variables: dict, z: jax.Array, output_std: jax.Array) -> dict:
  """Data-dependent init of a random generator (LSUV-like) on the latent batch z.

  Batch norm running statistics become the statistics of this batch (momentum 0), then the
  to_rgb conv is rescaled so the pre-activation output has mean 0 and std output_std: without
  it, depth and skip connections would decide whether an untrained GM's images are flat grey
  or saturated (the zoo draws output_std per GM, as real GMs differ in their output range).
  """
  if spec.norm == "batch":
    _, upd = Generator(spec, bn_momentum=0.0).apply(variables, z, train=True,
                                                    mutable=["batch_stats"])
    variables = {**variables, "batch_stats": upd["batch_stats"]}
  _, inter = Generator(spec).apply(variables, z, train=False, mutable=["intermediates"])
  pre = inter["intermediates"]["pre_output"][0]  # [B, S, S, 3]
  scale = output_std / jnp.maximum(pre.std(), 1e-6)
  rgb = variables["params"]["to_rgb"]
  rgb = {"kernel": rgb["kernel"] * scale, "bias": (rgb["bias"] - pre.mean()) * scale}
  return {**variables, "params": {**variables["params"], "to_rgb": rgb}}


@functools.partial(jax.jit, static_argnames=("spec",))
def _images(spec: GeneratorSpec, variables: dict, z_calib: jax.Array, z: jax.Array,
            calibrate_first: jax.Array, output_std: jax.Array) -> tuple[jax.Array, dict]:
  """(uint8 images [B, S, S, 3] at latents z, the variables used).

  With calibrate_first (a traced flag, so a trained GM's initial calibration and its final
  sampling share one compile) the variables are first calibrated on z_calib; calibration is
  cheap and deterministic, so it is simply redone per chunk.
  """
  variables = jax.lax.cond(calibrate_first, lambda v: calibrate(spec, v, z_calib, output_std),
                           lambda v: v, variables)
  images = to_uint8(Generator(spec).apply(variables, z, train=False), spec.last_nonlin)
  return images, variables


def chunk_size(image_size: int) -> int:
  """Images per sampling call: 512 at 32 x 32, fewer for larger images (bounded memory)."""
  return max(16, 512 * 32 * 32 // (image_size * image_size))


def _chunk(spec: GeneratorSpec, n: int) -> int:
  return min(chunk_size(spec.image_size), n)


def calibrated(spec: GeneratorSpec, variables: dict, z_calib: np.ndarray, num_images: int,
               output_std: float) -> dict:
  """The variables calibrated on z_calib [C, L] (the initial state of a trained GM), through
  the compile that `sample_images` of num_images images will use."""
  z = np.zeros((_chunk(spec, num_images), spec.latent_size), np.float32)
  return _images(spec, variables, z_calib, z, True, np.float32(output_std))[1]


def sample_images(spec: GeneratorSpec, variables: dict, z: np.ndarray, z_calib: np.ndarray,
                  calibrate_first: bool, output_std: float) -> np.ndarray:
  """uint8 images [N, S, S, 3] of the generator at latents z [N, L].

  calibrate_first: calibrate the (random-init) variables on z_calib [C, L] to output_std
  first; a trained GM passes False and the z_calib of its `calibrated` call, so both share one
  compile.
  Chunks are looped over in Python (the last one padded, so one compile serves all).
  """
  n = len(z)
  c = _chunk(spec, n)
  zp = np.concatenate([z, np.zeros((-n % c, z.shape[1]), z.dtype)])
  out = [np.asarray(_images(spec, variables, z_calib, zp[i:i + c], calibrate_first,
                            np.float32(output_std))[0])
         for i in range(0, len(zp), c)]
  return np.concatenate(out)[:n]
