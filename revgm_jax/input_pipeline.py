"""From prepared TFRecord shards to global, device-sharded batches.

Host side (tf.data, no jnp): shard-file slices dealt round-robin to the input shards (file-level
sharding), shuffled with a seed, interleaved deterministically, decoded, preprocessed
(`Preprocess`: the official bilinear resize, or a random crop) and batched per host.
Device side: each per-host batch becomes one global jax.Array per key, split along the mesh's
data axis (`revgm_jax.sharding.host_batch_to_global`). `Datasets` owns iteration: the training
stream from any step on, and one pass over a split for evaluation. The tf.data builders take
plain values; the per-host batch size is computed once, in `Datasets`.

A batch is a dict: image float32 [B, S, S, 3], net float32 [B, 15], loss int32 [B, L],
loss_group int32 [B, G], gm_row int32 [B] (row in `Datasets.gt`; -1 for padding, -2 for real
images), id int32 [B] (image index in the build), mask bool [B] (False for evaluation padding);
for detection and attribution also label int32 [B] (the class, -1 for padding and unknown GMs;
docs/tasks.md#data).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator, Sequence

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from revgm_jax import labels, sharding
from revgm_jax.data import builder

_MAX_OPEN_FILES = 128


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


@dataclasses.dataclass(frozen=True)
class Preprocess:
  """How an image becomes a model input (training, evaluation and inference alike)."""
  image_size: int
  random_crop: bool
  mean: float
  std: float

  @classmethod
  def from_config(cls, config: ml_collections.ConfigDict) -> "Preprocess":
    return cls(config.image_size, config.data.random_crop, config.data.mean, config.data.std)

  def __call__(self, image: tf.Tensor, crop_seed: tf.Tensor | None = None) -> tf.Tensor:
    return preprocess(image, self.image_size, self.random_crop, self.mean, self.std, crop_seed)


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


def _decoder(data: builder.PreparedData, prep: Preprocess, label_rows: np.ndarray | None,
             class_table: np.ndarray | None = None):
  """serialized example (+ crop seed) -> dict of the batch keys for one example; with
  `class_table` ([gm_row - REAL_ROW] -> class) also the example's "label"."""
  features = data.builder.info.features
  gt = data.gt
  tables = None
  if label_rows is not None:  # labels looked up through a permutation of the GM rows
    tables = {k: tf.constant(getattr(gt, k)[label_rows]) for k in labels.LABEL_KEYS}

  def decode(serialized, crop_seed=None):
    ex = features.deserialize_example(serialized)
    out = {"image": prep(ex["image"], crop_seed), "gm_row": ex["gm_row"], "id": ex["id"],
           "mask": tf.constant(True)}
    for k in labels.LABEL_KEYS:
      out[k] = ex[k] if tables is None else tf.gather(tables[k], ex["gm_row"])
    if class_table is not None:
      out["label"] = tf.gather(tf.constant(class_table, tf.int32),
                               ex["gm_row"] - builder.REAL_ROW)
    return out

  return decode


def _options() -> tf.data.Options:
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_optimization.inject_prefetch = False
  return options


def _stream(slices: list[builder.FileSlice], decode, *, batch_size: int, seed: int,
            shuffle_buffer: int, shard: int) -> tf.data.Dataset:
  """The infinite, seeded, shuffled batches of one input shard (its own files)."""
  ds = _slice_dataset(slices).shuffle(len(slices), seed=seed,
                                      reshuffle_each_iteration=True).repeat()
  ds = _read(ds, min(len(slices), _MAX_OPEN_FILES))
  ds = ds.shuffle(shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
  crop_seed = tf.constant(seed * 4099 + shard, tf.int64)  # crops differ across shards
  ds = ds.enumerate().map(lambda i, x: decode(x, tf.stack([crop_seed, i])),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(batch_size, drop_remainder=True)


def train_dataset(data: builder.PreparedData, gm_names: list[str], *, batch_size: int,
                  prep: Preprocess, seed: int, shuffle_buffer: int, max_images_per_gm: int,
                  shards: Sequence[int], num_shards: int,
                  label_rows: np.ndarray | None = None, part: tuple[float, float] = (0.0, 1.0),
                  class_table: np.ndarray | None = None) -> tf.data.Dataset:
  """Infinite, seeded, shuffled batches of `batch_size` rows (this host's share) of `gm_names`
  (the fraction `part` of each one's images).

  The shard files are dealt round-robin to `num_shards` input shards, each an independent
  stream; this host reads `shards` and each of its batches is their batches concatenated, so
  the global batch depends on the number of input shards only, not on how many processes read
  them (docs/jax_notes.md#multi-host).
  """
  if prep.random_crop:
    data.check_min_size(gm_names, prep.image_size)
  slices = data.file_slices(gm_names, max_images_per_gm, part)
  decode = _decoder(data, prep, label_rows, class_table)
  streams = []
  for shard in shards:
    mine = host_slices(slices, shard, num_shards)
    if not mine:
      raise ValueError(f"{len(slices)} shard files cannot feed {num_shards} input shards (one "
                       "per process unless config.data.input_shards is set); set "
                       "config.data.shards_per_gm to at least "
                       f"{math.ceil(num_shards / max(1, len(gm_names)))}")
    streams.append(_stream(mine, decode, batch_size=batch_size // len(shards), seed=seed,
                           shuffle_buffer=shuffle_buffer, shard=shard))
  ds = streams[0] if len(streams) == 1 else tf.data.Dataset.zip(tuple(streams)).map(
      lambda *parts: {k: tf.concat([p[k] for p in parts], 0) for k in parts[0]})
  return ds.prefetch(tf.data.AUTOTUNE).with_options(_options())


def eval_dataset(data: builder.PreparedData, gm_names: list[str], *, batch_size: int,
                 prep: Preprocess, max_per_gm: int, process_index: int, process_count: int,
                 label_rows: np.ndarray | None = None, part: tuple[float, float] = (0.0, 1.0),
                 class_table: np.ndarray | None = None) -> tuple[tf.data.Dataset, int]:
  """One pass over the first `max_per_gm` (0: all) images of each GM of `gm_names`, in
  batches of `batch_size` (this host's share) padded so every process yields the same number
  of full batches; returns (host batches, number of batches)."""
  if prep.random_crop:
    data.check_min_size(gm_names, prep.image_size)
  slices = data.file_slices(gm_names, max_per_gm, part)
  counts = [sum(s.take for s in host_slices(slices, p, process_count))
            for p in range(process_count)]
  num_batches = math.ceil(max(counts) / batch_size)
  mine = host_slices(slices, process_index, process_count)
  decode = _decoder(data, prep, label_rows, class_table)
  ds = _read(_slice_dataset(mine), min(len(mine), _MAX_OPEN_FILES)).map(
      decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  space = data.gt.space
  s = prep.image_size
  padding = {
      "image": tf.zeros([s, s, 3], tf.float32), "gm_row": tf.constant(-1, tf.int32),
      "id": tf.constant(-1, tf.int32), "mask": tf.constant(False),
      "net": tf.zeros([labels.NUM_NET], tf.float32),
      "loss": tf.zeros([space.num_loss_types], tf.int32),
      "loss_group": tf.zeros([space.num_groups], tf.int32)}
  if class_table is not None:
    padding["label"] = tf.constant(-1, tf.int32)
  pad = tf.data.Dataset.from_tensors(padding).repeat()
  ds = ds.concatenate(pad).take(num_batches * batch_size).batch(batch_size, drop_remainder=True)
  return ds.prefetch(tf.data.AUTOTUNE).with_options(_options()), num_batches


@dataclasses.dataclass
class Datasets:
  """The data of one experiment: labels, GM split, class weights, and its batches.

  Batch sizes are global (config.batch_size, config.eval_batch_size); each process reads its
  share of the shard files and contributes global_batch / process_count rows of each batch.
  """
  data: builder.PreparedData
  split: dict[str, list[str]]  # {"train", "val", "test"} -> GM names
  class_weights: dict[str, list[np.ndarray]]
  mesh: jax.sharding.Mesh
  label_rows: np.ndarray | None  # shuffled training labels (config.data.shuffle_labels)
  prep: Preprocess
  batch_size: int  # global
  eval_batch_size: int  # global
  seed: int
  shuffle_buffer: int
  input_shards: int  # 0 = one per process; config.data.input_shards
  max_images_per_gm: int  # 0 = all; config.data.max_images_per_gm
  max_test_images_per_gm: int  # 0 = as max_images_per_gm; config.eval.max_images_per_gm
  # Detection and attribution (docs/tasks.md#data): split name -> the fraction of each class's
  # images it reads (absent: all), and the class of each gm_row (`_decoder`).
  parts: dict[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
  class_table: np.ndarray | None = None

  @property
  def gt(self) -> labels.GroundTruth:
    return self.data.gt

  def _max_per_gm(self, split_name: str) -> int:
    if split_name in ("test", "unknown") and self.max_test_images_per_gm > 0:
      return self.max_test_images_per_gm
    return self.max_images_per_gm

  def _gms(self, split_name: str) -> list[str]:
    if split_name not in self.split:
      raise ValueError(f"unknown split {split_name!r}; known: {sorted(self.split)}")
    return self.split[split_name]

  def num_images(self, split_name: str) -> int:
    return self.data.num_images(self._gms(split_name), self._max_per_gm(split_name),
                                self._part(split_name))

  def _part(self, split_name: str) -> tuple[float, float]:
    return tuple(self.parts.get(split_name, (0.0, 1.0)))

  @property
  def num_train_images(self) -> int:
    return self.num_images("train")

  def train_dataset(self, process_index: int | None = None,
                    process_count: int | None = None) -> tf.data.Dataset:
    """This host's training batches (default: this process of the running cluster)."""
    index, count = _process(process_index, process_count)
    shards = self.input_shards or count
    return train_dataset(
        self.data, self.split["train"], batch_size=self.batch_size // count, prep=self.prep,
        seed=self.seed, shuffle_buffer=self.shuffle_buffer,
        max_images_per_gm=self.max_images_per_gm,
        shards=range(index * shards // count, (index + 1) * shards // count), num_shards=shards,
        label_rows=self.label_rows, part=self._part("train"), class_table=self.class_table)

  def eval_dataset(self, split_name: str, process_index: int | None = None,
                   process_count: int | None = None, max_per_gm: int | None = None
                   ) -> tuple[tf.data.Dataset, int]:
    """This host's padded evaluation batches of a split and their number.

    max_per_gm: the first images of each GM (None: the split's own cap, 0: all).
    """
    index, count = _process(process_index, process_count)
    return eval_dataset(
        self.data, self._gms(split_name), batch_size=self.eval_batch_size // count,
        prep=self.prep,
        max_per_gm=self._max_per_gm(split_name) if max_per_gm is None else max_per_gm,
        process_index=index, process_count=count,
        label_rows=self.label_rows if split_name == "train" else None,
        part=self._part(split_name), class_table=self.class_table)

  def train_iter(self, start_step: int = 0) -> Iterator[dict[str, jax.Array]]:
    """Infinite global training batches from batch `start_step` on; `mask` is all True.

    Exact resumption: the input order is a function of the seed alone, so a resumed run skips
    the batches the interrupted run consumed (on the host, before the device transfer; they are
    still read and decoded once more) and then sees the same stream.
    """
    for batch in self.train_dataset().skip(start_step).as_numpy_iterator():
      yield sharding.host_batch_to_global(batch, self.mesh)

  def eval_iter(self, split_name: str, max_per_gm: int | None = None
                ) -> Iterator[dict[str, jax.Array]]:
    """Every image of a split (or the first `max_per_gm` of each GM) exactly once, in global
    batches padded with mask=False."""
    ds, _ = self.eval_dataset(split_name, max_per_gm=max_per_gm)
    for batch in ds.as_numpy_iterator():
      yield sharding.host_batch_to_global(batch, self.mesh)


def _process(index: int | None, count: int | None) -> tuple[int, int]:
  return (jax.process_index() if index is None else index,
          jax.process_count() if count is None else count)


def get_datasets(config: ml_collections.ConfigDict, data: builder.PreparedData, split: dict,
                 mesh: jax.sharding.Mesh) -> Datasets:
  """The datasets of `config` over prepared data (`data.prepare`) and a drawn split
  (`data.splits.draw`: split, class_weights, label_rows, parts, class_table)."""
  return Datasets(data=data, mesh=mesh, prep=Preprocess.from_config(config),
                  batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
                  seed=config.seed, shuffle_buffer=config.data.shuffle_buffer,
                  input_shards=config.data.input_shards,
                  max_images_per_gm=config.data.max_images_per_gm,
                  max_test_images_per_gm=config.eval.max_images_per_gm, **split)
