"""A trained parser from a workdir, and batched prediction with it.

A checkpoint path is a training workdir (its validation-selected `best` step, or the latest
resume checkpoint if no best step was saved), one of its managers (`WORKDIR/best`,
`WORKDIR/checkpoints`: that manager's newest step) or one step (`WORKDIR/checkpoints/1500`).
Everything besides the weights — config, label space, raw ranges of the continuous columns —
comes from the files the trainer writes beside them (`revgm_jax.checkpointing`).

Image files are preprocessed exactly as the evaluation split of training: decoded to 8-bit RGB
(`data.images.read_image`), the whole image resized bilinearly (antialiased) to
config.image_size x config.image_size, aspect ratio not kept (or a central crop of that size
when the run trained on random crops), then normalised with config.data.mean/std
(`input_pipeline.preprocess`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
import tensorflow as tf

from revgm_jax import checkpointing, compile_options, labels, input_pipeline
from revgm_jax.data import images as images_lib
from revgm_jax.losses import constraints, parsing
from revgm_jax.models import model as model_lib


@dataclasses.dataclass
class Loaded:
  """A restored model with what is needed to read its outputs."""
  workdir: str
  which: str  # "best" or "latest"
  step: int
  config: ml_collections.ConfigDict
  gt: labels.GroundTruth  # the run's labels: space, class names, raw ranges
  split: dict  # {"train", "val", "test"} GM names of the run
  model: model_lib.RevGM
  variables: dict  # {"params", "batch_stats"}, replicated over `mesh`
  mesh: jax.sharding.Mesh

  @property
  def space(self) -> labels.Space:
    return self.gt.space


def resolve_checkpoint(path: str) -> tuple[str, str, int | None]:
  """(workdir, "best" | "latest", step or None for the newest) of a checkpoint path."""
  path = os.path.abspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint path {path} does not exist")
  managers = {checkpointing.BEST: "best", checkpointing.CHECKPOINTS: "latest"}
  name = os.path.basename(path)
  parent = os.path.dirname(path)
  if name.isdigit() and os.path.basename(parent) in managers:
    return os.path.dirname(parent), managers[os.path.basename(parent)], int(name)
  if name in managers and os.path.exists(os.path.join(parent, checkpointing.CONFIG_FILE)):
    return parent, managers[name], None
  if not os.path.exists(os.path.join(path, checkpointing.CONFIG_FILE)):
    raise FileNotFoundError(
        f"{path} is neither a training workdir (no {checkpointing.CONFIG_FILE}) nor one of its "
        f"checkpoints (WORKDIR/{checkpointing.BEST}[/STEP], "
        f"WORKDIR/{checkpointing.CHECKPOINTS}[/STEP])")
  best = os.path.join(path, checkpointing.BEST)
  has_best = os.path.isdir(best) and any(d.isdigit() for d in os.listdir(best))
  return path, "best" if has_best else "latest", None


def abstract_variables(model, image_size: int, mesh):
  """Restore target of the model's variables, replicated over `mesh`."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(
      (1, image_size, image_size, 3), jnp.float32), train=False))
  return checkpointing.replicated_target(dict(shapes), mesh)


def load(path: str, config: ml_collections.ConfigDict | None = None,
         mesh: jax.sharding.Mesh | None = None) -> Loaded:
  """Restores the model of a checkpoint path (see the module docstring).

  config: the run's config (default: the workdir's config.json); mesh: where the variables go
  (default: the first device).
  """
  workdir, which, step = resolve_checkpoint(path)
  config = checkpointing.load_config(workdir) if config is None else config
  info, gt = checkpointing.load_run_info(workdir)
  mesh = mesh or jax.make_mesh((1,), ("data",), devices=jax.devices()[:1],
                               axis_types=(jax.sharding.AxisType.Auto,))
  model = model_lib.create_model(config, gt.space)
  variables, progress = checkpointing.restore_variables(
      workdir, abstract_variables(model, config.image_size, mesh), which, step)
  return Loaded(workdir=workdir, which=which, step=int(progress["step"]), config=config, gt=gt,
                split=info["split"], model=model, variables=variables, mesh=mesh)


def make_predict_fn(loaded: Loaded) -> Callable:
  """jit(shard_map) (variables, images [B, S, S, 3]) -> outputs, per example, sharded like B:
  {"fingerprint": [B, S, S, 3], "spectrum": [B, S, S] |FFT| of its luma (DC centred),
   "pred": losses.parsing.predictions}. B must be divisible by the mesh size."""
  model, space = loaded.model, loaded.space
  head_activation = loaded.config.model.head_activation

  def fn(variables, images):
    fingerprint, outputs = model.apply(variables, images, train=False)
    return {"fingerprint": fingerprint,
            "spectrum": constraints.spectrum(constraints.luma(fingerprint)),
            "pred": parsing.predictions(outputs, space, head_activation)}

  return compile_options.jit(jax.shard_map(fn, mesh=loaded.mesh, in_specs=(P(), P("data")),
                                           out_specs=P("data")))


def make_parse_fingerprint_fn(loaded: Loaded) -> Callable:
  """jit (variables, fingerprints [B, S, S, 3]) -> predictions of the parser heads alone: the
  'mean of fingerprints' aggregation feeds averaged fingerprints through it."""
  model, space = loaded.model, loaded.space
  head_activation = loaded.config.model.head_activation

  def fn(variables, fingerprints):
    outputs = model.apply(variables, fingerprints, False, method=lambda m, f, t: m.parser(f, t))
    return parsing.predictions(outputs, space, head_activation)

  return compile_options.jit(fn)


def predict(loaded: Loaded, images: np.ndarray, batch_size: int = 64,
            predict_fn: Callable | None = None) -> dict:
  """Host images [N, S, S, 3] (preprocessed) -> NumPy outputs of `make_predict_fn`, [N, ...]."""
  predict_fn = predict_fn or make_predict_fn(loaded)
  n_dev = loaded.mesh.shape["data"]
  batch_size = max(n_dev, batch_size // n_dev * n_dev)
  sharding = NamedSharding(loaded.mesh, P("data"))
  outs = []
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    pad = -len(chunk) % n_dev
    x = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)]) if pad else chunk
    out = predict_fn(loaded.variables, jax.device_put(x.astype(np.float32), sharding))
    outs.append(jax.tree.map(lambda a: np.asarray(a)[:len(chunk)], out))
  return jax.tree.map(lambda *a: np.concatenate(a, 0), *outs)


def load_images(paths: Iterable[str], config: ml_collections.ConfigDict
                ) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
  """Reads and preprocesses image files as training does (module docstring).

  Returns (images [N, S, S, 3] float32, the N paths used, [(path, reason)] of skipped files).
  """
  size = config.image_size
  out, used, skipped = [], [], []
  for path in paths:
    try:
      image, _ = images_lib.read_image(path)
    except images_lib.ImageError as e:
      skipped.append((path, str(e)))
      continue
    if config.data.random_crop and min(image.shape[:2]) < size:
      skipped.append((path, f"image {path} is {image.shape[1]} x {image.shape[0]}, smaller than "
                            f"the {size} x {size} crop this model was trained on"))
      continue
    x = input_pipeline.preprocess(tf.constant(image), size, config.data.random_crop,
                                  config.data.mean, config.data.std)
    out.append(x.numpy())
    used.append(path)
  images = np.stack(out) if out else np.zeros((0, size, size, 3), np.float32)
  return images, used, skipped
