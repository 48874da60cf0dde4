r"""Data preparation, the first step of a run: the zoo or an image folder -> cached TFRecords.

  revgm prepare --config configs/default.py:tiny
  python -m revgm_jax.data.prepare --config configs/red116.py \
      --config.data.image_dir=/data/RED116 --config.data.labels_dir=/data/red116_labels

`train.py` and `eval.py` run the same step first (`prepare`); run alone, it fills the caches
(the zoo, $REVGM_CACHE/tfds) ahead of a job. A second run finds the build and returns at once.
"""

from __future__ import annotations

import os
import sys

from absl import flags
import jax
from jax.experimental import multihost_utils
import ml_collections

from revgm_jax import config_check
from revgm_jax.cli import cli_flags
from revgm_jax.data import builder
from revgm_jax.runtime import distributed
from revgm_jax.zoo import build as zoo_build

PROG = "python -m revgm_jax.data.prepare"


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


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
  """`revgm prepare --config FILE[:ARG] [--config.<field>=<value> ...]`; prints the build."""
  argv = sys.argv[1:] if argv is None else argv
  fv = flags.FlagValues()
  config = cli_flags.define_config_file(
      "config", None, "Config file, optionally with `:arg` (e.g. configs/default.py:tiny).",
      flag_values=fv, lock_config=True, sys_argv=[prog, *argv])
  rest = cli_flags.parse_command(fv, [prog, *argv], f"usage: {prog} --config FILE[:ARG]\n\n"
                                 f"{__doc__}")
  if rest:
    cli_flags.fail(f"unexpected arguments: {' '.join(rest)}")
  if config.value is None:
    cli_flags.fail("--config is required (e.g. --config configs/default.py:tiny)")
  try:
    config_check.check_config(config.value)
    distributed.initialize(config.value.distributed)
    data = prepare(config.value)
  except ValueError as e:  # a ConfigError, a DataError (folders, labels), the zoo's refusals
    sys.stderr.write(f"{prog}: {e}\n")
    return 1
  print(f"{data.builder.data_dir}: {len(data.gm_info)} image folders of {data.image_dir}, "
        f"{sum(i['num_images'] for i in data.gm_info.values())} images", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
