"""Data preparation, the first step of a run: the zoo or an image folder -> cached TFRecords.

`train.py` and `eval.py` run this step first (`prepare`); `revgm prepare` (`cli/prepare.py`)
runs it alone to fill the caches (the zoo, $REVGM_CACHE/tfds) ahead of a job. A second run
finds the build and returns at once.
"""

from __future__ import annotations

import os

import jax
from jax.experimental import multihost_utils
import ml_collections

from revgm_jax.data import builder
from revgm_jax.zoo import build as zoo_build



def keep_tf_off_accelerators() -> None:
  """TensorFlow only reads data here: it must not take accelerator memory from JAX
  (docs/jax_notes.md#tensorflow-off-the-gpu). Call before TensorFlow's first use."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top (start-up: TF only when used)
  tf.config.set_visible_devices([], "GPU")


def image_folders(data: ml_collections.ConfigDict) -> tuple[str, str, str]:
  """(image dir, label dir, real-image dir) of `config.data`; the zoo source builds or finds the
  zoo first. The real-image dir is the zoo's real/ or IMAGE_DIR/real/ (it may not exist).

  Every process of a job must call it together: the zoo build splits its GMs over them.
  """
  if data.source == "zoo":
    out_dir = zoo_build.build_zoo(data.zoo, data.zoo_dir or zoo_build.default_zoo_dir(data.zoo))
    return os.path.join(out_dir, "gms"), out_dir, os.path.join(out_dir, builder.REAL)
  return data.image_dir, data.labels_dir, os.path.join(data.image_dir, builder.REAL)


def prepare(config: ml_collections.ConfigDict) -> builder.PreparedData:
  """The TFRecords of `config.data` (and of its real images for detection and attribution),
  built once per input and cached.

  Every process of a job calls it together: process 0 converts first; the others then find
  its shards (a shared tfds_dir) or convert their own.
  """
  keep_tf_off_accelerators()
  image_dir, labels_dir, real_dir = image_folders(config.data)
  d = config.data
  with_real = config.get("task", "parsing") != "parsing"

  def build():
    return builder.prepare(image_dir, labels_dir, d.space, d.tfds_dir, d.shards_per_gm,
                           real_dir if with_real else None)

  if jax.process_index() == 0:
    data = build()
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices("revgm_jax: data prepared")
  if jax.process_index() != 0:
    data = build()
  return data
