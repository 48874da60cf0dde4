"""Tiny trained detection and attribution workdirs for the task tests, trained once per session.

The published layout of `tiny_run` (8 GMs of random images, RED116 labels; BIGGAN_128 and
STARGAN, leave-out set 1, are the unknown GMs) plus an IMAGE_DIR/real/ folder, 16 x 16 pixels,
the `:tiny` presets of configs/detection.py and configs/attribution.py, a few steps.
"""

import os

from support import gm_folders
from support import tiny_run
from revgm_jax import config_utils

CONFIGS = {t: os.path.join(tiny_run.REPO, "configs", f"{t}.py:tiny")
           for t in ("detection", "attribution")}
IMAGES_PER_CLASS = 10


def write_data(root) -> str:
  """root/images/<GM>/ for tiny_run's GMs and root/images/real/; returns the image dir."""
  image_dir = os.path.join(root, "images")
  if not os.path.isdir(image_dir):
    gm_folders.write_layout(image_dir, (*tiny_run.GMS, "real"), IMAGES_PER_CLASS)
  return image_dir


def config(task, root, red116_dir, **overrides):
  """The task's `:tiny` config on the folders under `root`."""
  return config_utils.load_config(CONFIGS[task], {
      "data.source": "folder",
      "data.image_dir": write_data(root),
      "data.labels_dir": str(red116_dir),
      "data.tfds_dir": os.path.join(root, "tfds"),
      "data.space": "red116",
      "data.shards_per_gm": 1,
      "data.shuffle_buffer": 32,
      "image_size": 16,
      "num_train_steps": 2,
      "eval_every_steps": 2,
      "checkpoint_every_steps": 2,
      "log_every_steps": 1,
      **overrides})


_RUNS = {}


def trained(task, tmp_path_factory, red116_dir) -> tuple[str, object]:
  """(workdir, config) of a finished tiny run of `task`, one per session."""
  from revgm_jax import train_lib  # pylint: disable=g-import-not-at-top
  base = tmp_path_factory.getbasetemp()
  key = (task, str(base))
  if key not in _RUNS:
    c = config(task, str(base / "tiny_tasks_data"), red116_dir)
    workdir = str(tmp_path_factory.mktemp(f"tiny_{task}"))
    train_lib.train_and_evaluate(c, workdir)
    _RUNS[key] = workdir, c
  return _RUNS[key]
