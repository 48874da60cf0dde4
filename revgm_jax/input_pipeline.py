"""From prepared TFRecord shards to global, device-sharded batches.

Host side (tf.data, no jnp): the shard-file slices of a split are dealt round-robin to the
processes (file-level sharding), shuffled with a seed, interleaved deterministically, decoded,
preprocessed as the official code (bilinear resize of the whole image to image_size x
image_size, aspect not kept, then (x / 255 - mean) / std; or a random crop) and batched per host.
Device side: each per-host batch becomes one global jax.Array per key, sharded P("data") over
the mesh, via `jax.make_array_from_process_local_data`.

A batch is a dict: image float32 [B, S, S, 3], net float32 [B, 15], loss int32 [B, L],
loss_group int32 [B, G], gm_row int32 [B] (row in `Datasets.gt`; -1 for padding), id int32 [B]
(image index in the build), mask bool [B] (False for evaluation padding).
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterator

from absl import logging
import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P
import ml_collections
import numpy as np
import tensorflow as tf

from revgm_jax import labels
from revgm_jax.data import builder

_LABEL_KEYS = ("net", "loss", "loss_group")
_MAX_OPEN_FILES = 128


def prepare_data(config: ml_collections.ConfigDict) -> builder.PreparedData:
  """Builds or finds the shards of `config.data.source` ("zoo" or "folder")."""
  data = config.data
  if data.source == "zoo":
    from revgm_jax.zoo import build as zoo_build  # pylint: disable=g-import-not-at-top
    out_dir = zoo_build.build_zoo(data.zoo, data.zoo_dir or zoo_build.default_zoo_dir(data.zoo))
    image_dir, labels_dir = os.path.join(out_dir, "gms"), out_dir
  elif data.source == "folder":
    if not data.image_dir:
      raise ValueError("config.data.source='folder' needs --config.data.image_dir=IMAGE_DIR "
                       "(IMAGE_DIR/<GM_NAME>/*.png|jpg|jpeg|bmp)")
    image_dir, labels_dir = data.image_dir, data.labels_dir
  else:
    raise ValueError(f"config.data.source={data.source!r}; use 'zoo' or 'folder'")
  return builder.prepare(image_dir, labels_dir, data.space, data.tfds_dir, data.shards_per_gm)


def host_slices(slices: list[builder.FileSlice], process_index: int,
                process_count: int) -> list[builder.FileSlice]:
  """The file slices process `process_index` reads: every process_count-th, disjoint."""
  return slices[process_index::process_count]


def _slice_dataset(slices: list[builder.FileSlice]) -> tf.data.Dataset:
  return tf.data.Dataset.from_tensor_slices({
      "filename": tf.constant([s.filename for s in slices], tf.string),
      "skip": tf.constant([s.skip for s in slices], tf.int64),
      "take": tf.constant([s.take for s in slices], tf.int64)})


def _read(slices: tf.data.Dataset, cycle_length: int) -> tf.data.Dataset:
  """Serialized examples of a dataset of slices, interleaved one record at a time."""
  return slices.interleave(
      lambda s: tf.data.TFRecordDataset(s["filename"]).skip(s["skip"]).take(s["take"]),
      cycle_length=max(1, cycle_length), block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
      deterministic=True)


def preprocess(image: tf.Tensor, size: int, random_crop: bool, mean: float, std: float,
               crop_seed: tf.Tensor | None = None) -> tf.Tensor:
  """uint8 [H, W, 3] -> float32 [size, size, 3], normalised.

  random_crop: a size x size crop (random with `crop_seed`, central without); otherwise a
  bilinear, antialiased resize of the whole image, as PIL's Resize((size, size)).
  """
  if random_crop:
    if crop_seed is not None:
      image = tf.image.stateless_random_crop(image, [size, size, 3], seed=crop_seed)
    else:
      h, w = tf.shape(image)[0], tf.shape(image)[1]
      image = tf.image.crop_to_bounding_box(image, (h - size) // 2, (w - size) // 2, size, size)
    image = tf.cast(image, tf.float32)
  else:
    image = tf.image.resize(image, [size, size], method="bilinear", antialias=True)
  return (image / 255.0 - mean) / std


def _decoder(data: builder.PreparedData, config: ml_collections.ConfigDict,
             label_rows: np.ndarray | None):
  """serialized example (+ crop seed) -> dict of the batch keys for one example."""
  features = data.builder.info.features
  gt = data.gt
  tables = None
  if label_rows is not None:  # labels looked up through a permutation of the GM rows
    tables = {k: tf.constant(getattr(gt, k)[label_rows]) for k in _LABEL_KEYS}

  def decode(serialized, crop_seed=None):
    ex = features.deserialize_example(serialized)
    out = {"image": preprocess(ex["image"], config.image_size, config.data.random_crop,
                               config.data.mean, config.data.std, crop_seed),
           "gm_row": ex["gm_row"], "id": ex["id"], "mask": tf.constant(True)}
    for k in _LABEL_KEYS:
      out[k] = ex[k] if tables is None else tf.gather(tables[k], ex["gm_row"])
    return out

  return decode


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.inject_prefetch = False
  return options


def _per_host_batch(global_batch: int, process_count: int, name: str) -> int:
  if global_batch % process_count:
    raise ValueError(f"config.{name}={global_batch} is not divisible by the {process_count} "
                     "processes")
  return global_batch // process_count


def train_dataset(data: builder.PreparedData, gm_names: list[str],
                  config: ml_collections.ConfigDict, *, process_index: int,
                  process_count: int, label_rows: np.ndarray | None = None) -> tf.data.Dataset:
  """Infinite, seeded, shuffled per-host batches of the images of `gm_names`."""
  batch = _per_host_batch(config.batch_size, process_count, "batch_size")
  if config.data.random_crop:
    data.check_min_size(gm_names, config.image_size)
  slices = data.file_slices(gm_names, config.data.max_images_per_gm)
  mine = host_slices(slices, process_index, process_count)
  if not mine:
    raise ValueError(f"{len(slices)} shard files cannot feed {process_count} processes; set "
                     "config.data.shards_per_gm to at least "
                     f"{math.ceil(process_count / max(1, len(gm_names)))}")
  seed = config.seed
  ds = _slice_dataset(mine).shuffle(len(mine), seed=seed, reshuffle_each_iteration=True).repeat()
  ds = _read(ds, min(len(mine), _MAX_OPEN_FILES))
  ds = ds.shuffle(config.data.shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
  decode = _decoder(data, config, label_rows)
  host_seed = tf.constant(seed * 4099 + process_index, tf.int64)  # crops differ across hosts
  ds = ds.enumerate().map(lambda i, x: decode(x, tf.stack([host_seed, i])),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE).with_options(_options())


def eval_dataset(data: builder.PreparedData, gm_names: list[str],
                 config: ml_collections.ConfigDict, *, max_per_gm: int, process_index: int,
                 process_count: int, label_rows: np.ndarray | None = None
                 ) -> tuple[tf.data.Dataset, int]:
  """One pass over every image of `gm_names`, padded so every process yields the same number
  of full batches; returns (per-host batches, number of batches)."""
  batch = _per_host_batch(config.eval_batch_size, process_count, "eval_batch_size")
  if config.data.random_crop:
    data.check_min_size(gm_names, config.image_size)
  slices = data.file_slices(gm_names, max_per_gm)
  counts = [sum(s.take for s in host_slices(slices, p, process_count))
            for p in range(process_count)]
  num_batches = math.ceil(max(counts) / batch)
  mine = host_slices(slices, process_index, process_count)
  decode = _decoder(data, config, label_rows)
  ds = _read(_slice_dataset(mine), min(len(mine), _MAX_OPEN_FILES)).map(
      decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  space = data.gt.space
  s = config.image_size
  pad = tf.data.Dataset.from_tensors({
      "image": tf.zeros([s, s, 3], tf.float32), "gm_row": tf.constant(-1, tf.int32),
      "id": tf.constant(-1, tf.int32), "mask": tf.constant(False),
      "net": tf.zeros([labels.NUM_NET], tf.float32),
      "loss": tf.zeros([space.num_loss_types], tf.int32),
      "loss_group": tf.zeros([space.num_groups], tf.int32)}).repeat()
  ds = ds.concatenate(pad).take(num_batches * batch).batch(batch, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE).with_options(_options()), num_batches


def shuffled_label_rows(gt: labels.GroundTruth, train_gms: list[str], seed: int) -> np.ndarray:
  """[N] label row of each GM row: a seeded permutation among the training GMs (the
  random-ground-truth baseline), identity elsewhere."""
  rows = np.arange(len(gt))
  train = gt.rows(train_gms)
  rows[train] = train[np.random.default_rng([seed, 1]).permutation(len(train))]
  return rows


def to_global(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Per-host numpy batch -> global jax.Arrays sharded over the mesh's "data" axis."""
  sharding = NamedSharding(mesh, P("data"))
  return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


@dataclasses.dataclass
class Datasets:
  """The data of one experiment: labels, GM split, class weights and batch iterators."""
  config: ml_collections.ConfigDict
  data: builder.PreparedData
  split: dict[str, list[str]]  # {"train", "val", "test"} -> GM names
  class_weights: dict[str, list[np.ndarray]]
  mesh: jax.sharding.Mesh
  label_rows: np.ndarray | None  # shuffled training labels (config.data.shuffle_labels)

  @property
  def gt(self) -> labels.GroundTruth:
    return self.data.gt

  def max_images_per_gm(self, split_name: str) -> int:
    """config.data.max_images_per_gm, or config.eval.max_images_per_gm for the test split."""
    if split_name == "test" and self.config.eval.max_images_per_gm > 0:
      return self.config.eval.max_images_per_gm
    return self.config.data.max_images_per_gm

  def num_images(self, split_name: str) -> int:
    return self.data.num_images(self.split[split_name], self.max_images_per_gm(split_name))

  @property
  def num_train_images(self) -> int:
    return self.num_images("train")

  def _labels(self, split_name: str) -> np.ndarray | None:
    return self.label_rows if split_name == "train" else None

  def train_dataset(self, process_index: int | None = None,
                    process_count: int | None = None) -> tf.data.Dataset:
    """Host-level training batches (per-host batch = config.batch_size / process_count)."""
    return train_dataset(
        self.data, self.split["train"], self.config,
        process_index=jax.process_index() if process_index is None else process_index,
        process_count=jax.process_count() if process_count is None else process_count,
        label_rows=self.label_rows)

  def eval_dataset(self, split_name: str, process_index: int | None = None,
                   process_count: int | None = None) -> tuple[tf.data.Dataset, int]:
    """Host-level padded evaluation batches of a split and their number."""
    if split_name not in self.split:
      raise ValueError(f"unknown split {split_name!r}; known: {sorted(self.split)}")
    return eval_dataset(
        self.data, self.split[split_name], self.config,
        max_per_gm=self.max_images_per_gm(split_name),
        process_index=jax.process_index() if process_index is None else process_index,
        process_count=jax.process_count() if process_count is None else process_count,
        label_rows=self._labels(split_name))

  def train_iter(self) -> Iterator[dict[str, jax.Array]]:
    """Infinite global training batches; `mask` is all True."""
    for batch in self.train_dataset().as_numpy_iterator():
      yield to_global(batch, self.mesh)

  def eval_iter(self, split_name: str) -> Iterator[dict[str, jax.Array]]:
    """Every image of a split exactly once, in global batches padded with mask=False."""
    ds, _ = self.eval_dataset(split_name)
    for batch in ds.as_numpy_iterator():
      yield to_global(batch, self.mesh)


def _check_divisible(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
  devices = mesh.shape["data"]
  for name in ("batch_size", "eval_batch_size"):
    if config[name] % devices:
      raise ValueError(f"config.{name}={config[name]} is not divisible by the {devices} devices "
                       "of the data mesh")


def get_datasets(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh | None = None
                 ) -> Datasets:
  """Prepares the data of `config` and splits it by GM (DESIGN.md 8.1).

  mesh: a 1-D ("data",) mesh; None -> all devices. The split is drawn from the GMs that have
  images (a GM of the index without a folder is left out with a warning).
  """
  tf.config.set_visible_devices([], "GPU")  # TF must not grab accelerator memory (JAX_NOTES 3g)
  if mesh is None:
    mesh = jax.make_mesh((jax.device_count(),), ("data",),
                         axis_types=(jax.sharding.AxisType.Auto,))
  _check_divisible(config, mesh)
  # Process 0 builds first; the others then find its shards (shared data_dir) or build their own.
  if jax.process_index() == 0:
    data = prepare_data(config)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("revgm_jax: data prepared")
  if jax.process_index() != 0:
    data = prepare_data(config)
  gt = data.gt
  present = [n for n in gt.names if n in data.gm_info]
  if len(present) < len(gt):
    absent = [n for n in gt.names if n not in data.gm_info]
    logging.warning("%d GM(s) of the index have no folder in %s and are left out: %s",
                    len(absent), data.image_dir,
                    ", ".join(absent[:10]) + (", ..." if len(absent) > 10 else ""))
  test_gms = [n.strip() for n in config.data.test_gms.split(",") if n.strip()]
  split = labels.split_gms(gt.subset(present), config.data.test_set, test_gms,
                            config.data.num_val_gms, config.seed)
  data.check_gms(split["test"], "test")
  rows = None if config.loss.class_weights_from == "all" else gt.rows(split["train"])
  if config.loss.class_weights_from not in ("all", "train"):
    raise ValueError(f"config.loss.class_weights_from={config.loss.class_weights_from!r}; "
                     "use 'train' or 'all'")
  label_rows = (shuffled_label_rows(gt, split["train"], config.seed)
                if config.data.shuffle_labels else None)
  return Datasets(config=config, data=data, split=split,
                  class_weights=labels.class_weights(gt, rows), mesh=mesh, label_rows=label_rows)
