"""A trained parser from a workdir, and batched prediction with it.

A checkpoint path is a training workdir, one of its managers or one step of them
(`revgm_jax.workdir.resolve_checkpoint`). Everything besides the weights — config, label space,
raw ranges of the continuous columns — comes from the files the trainer writes beside them.

Image files are preprocessed as the evaluation split of training: decoded to 8-bit RGB
(`data.images.read_image`), then what `input_pipeline.preprocess` does (the whole image resized
bilinearly, antialiased, to config.image_size square, aspect ratio not kept, or a central crop of
that size when the run trained on random crops; normalised with config.data.mean/std). Here the
resize is NumPy with JAX's antialiased weights (tested equal to TensorFlow's to 1e-5), so that
`revgm parse` starts without importing TensorFlow.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from revgm_jax import checkpointing, labels, sharding, steps, tasks
from revgm_jax import workdir as workdir_lib
from revgm_jax.data import images as images_lib


@dataclasses.dataclass
class Loaded:
  """A restored model with what is needed to read its outputs."""
  workdir: str
  which: str  # "best" or "latest"
  step: int
  config: ml_collections.ConfigDict
  gt: labels.GroundTruth  # the run's labels: space, class names, raw ranges
  split: dict  # {"train", "val", "test"} GM names of the run
  task: object  # the run's task, without class weights (`tasks.get`): predictions, no loss
  model: object  # the task's Flax module (`tasks.create_model`)
  variables: dict  # {"params", "batch_stats"}, replicated over `mesh`
  mesh: jax.sharding.Mesh
  skipped: tuple[str, ...] = ()  # newer steps that failed to restore: "DIR/STEP: problem"

  @property
  def space(self) -> labels.Space:
    return self.gt.space


def abstract_variables(model, image_size: int, mesh):
  """Restore target of the model's variables, replicated over `mesh`."""
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(
      (1, image_size, image_size, 3), jnp.float32), train=False))
  return sharding.replicated_target(dict(shapes), mesh)


class WrongTaskError(ValueError):
  """The checkpoint was trained for another task (`task`) than the command that loads it."""

  def __init__(self, message: str, task: str):
    super().__init__(message)
    self.task = task


def load(path: str, config: ml_collections.ConfigDict | None = None,
         mesh: jax.sharding.Mesh | None = None, task: str | None = None) -> Loaded:
  """Restores the model of a checkpoint path (see the module docstring).

  config: the run's config (default: the workdir's config.json); mesh: where the variables go
  (default: the first device); task: raise WrongTaskError unless the run trained this task.
  Raises FileNotFoundError, workdir.WorkdirError (a config of another run) or
  checkpointing.CheckpointError (no step restores).
  """
  workdir, which, step = workdir_lib.resolve_checkpoint(path)
  if config is not None:
    workdir_lib.check_same_run(workdir, config)
  config = workdir_lib.load_config(workdir) if config is None else config
  if task is not None and tasks.name(config) != task:
    raise WrongTaskError(f"{workdir} holds a model of task {tasks.name(config)}, not {task} "
                         f"(config.task in {workdir_lib.CONFIG_FILE})", tasks.name(config))
  info, gt = workdir_lib.load_run_info(workdir)
  mesh = mesh or sharding.make_mesh(jax.devices()[:1])
  model = tasks.create_model(config, gt.space, info["split"], axis_name=sharding.AXIS)
  variables, progress = checkpointing.restore_variables(
      workdir, abstract_variables(model, config.image_size, mesh), which, step)
  return Loaded(workdir=workdir, which=which, step=int(progress["step"]), config=config, gt=gt,
                split=info["split"], task=tasks.get(config, gt.space), model=model,
                variables=variables, mesh=mesh,
                skipped=tuple(progress.get("skipped", ())))


def make_predict_fn(loaded: Loaded, fingerprints: bool = True) -> Callable:
  """`steps.make_predict_fn` of the loaded model, by default with fingerprints and spectra."""
  return steps.make_predict_fn(loaded.task, loaded.model, loaded.mesh, fingerprints=fingerprints)


def make_parse_fingerprint_fn(loaded: Loaded) -> Callable:
  return steps.make_parse_fingerprint_fn(loaded.task, loaded.model)


def predict(loaded: Loaded, images: np.ndarray, batch_size: int = 64,
            predict_fn: Callable | None = None) -> dict:
  """Host images [N, S, S, 3] (preprocessed) -> NumPy per-example outputs of
  `make_predict_fn`, [N, ...]."""
  predict_fn = predict_fn or make_predict_fn(loaded)
  n_dev = sharding.num_devices(loaded.mesh)
  batch_size = max(n_dev, batch_size // n_dev * n_dev)
  outs = []
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size].astype(np.float32)
    # Padded to a power of two (at most batch_size) that the devices divide: few shapes, so
    # few compilations.
    rows = min(batch_size, 1 << (len(chunk) - 1).bit_length())
    pad = -(-rows // n_dev) * n_dev - len(chunk)
    mask = np.arange(len(chunk) + pad) < len(chunk)
    x = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)]) if pad else chunk
    out, _ = predict_fn(loaded.variables,
                        sharding.host_batch_to_global({"image": x, "mask": mask}, loaded.mesh))
    outs.append(jax.tree.map(lambda a: np.asarray(a)[:len(chunk)], out))
  return jax.tree.map(lambda *a: np.concatenate(a, 0), *outs)


@functools.lru_cache(maxsize=64)
def _resize_weights(n: int, size: int) -> np.ndarray:
  """[size, n]: the antialiased bilinear resize of a length-n axis as a matrix."""
  return np.asarray(jax.image.resize(jnp.eye(n, dtype=jnp.float32), (size, n), "linear",
                                     antialias=True))


def preprocess(image: np.ndarray, config: ml_collections.ConfigDict) -> np.ndarray:
  """uint8 [H, W, 3] -> float32 [S, S, 3], as `input_pipeline.preprocess` on the eval split."""
  size = config.image_size
  if config.data.random_crop:
    top, left = (image.shape[0] - size) // 2, (image.shape[1] - size) // 2
    out = image[top:top + size, left:left + size].astype(np.float32)
  else:
    rows = np.tensordot(_resize_weights(image.shape[0], size), image.astype(np.float32), 1)
    out = np.einsum("jw,iwc->ijc", _resize_weights(image.shape[1], size), rows)
  return ((out / 255.0 - config.data.mean) / config.data.std).astype(np.float32)


def load_images(paths: Iterable[str], config: ml_collections.ConfigDict
                ) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
  """Reads and preprocesses image files as training does (module docstring).

  Returns (images [N, S, S, 3] float32, the N paths used, [(path, reason)] of skipped files).
  """
  size = config.image_size
  out, used, skipped = [], [], []
  for path in paths:
    try:
      image, _ = images_lib.read_image(
          path, config.data.get("max_image_pixels", images_lib.MAX_PIXELS))
    except images_lib.ImageError as e:
      skipped.append((path, str(e)))
      continue
    if config.data.random_crop and min(image.shape[:2]) < size:
      skipped.append((path, f"image {path} is {image.shape[1]} x {image.shape[0]}, smaller than "
                            f"the {size} x {size} crop this model was trained on"))
      continue
    out.append(preprocess(image, config))
    used.append(path)
  images = np.stack(out) if out else np.zeros((0, size, size, 3), np.float32)
  return images, used, skipped
