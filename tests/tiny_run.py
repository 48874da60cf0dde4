"""A tiny trained workdir for the evaluation and parse tests, trained once per test session.

8 GMs of random images with RED116 labels (5 train, 1 validation, the 2 of test set 1 present),
16 x 16 pixels, the `:tiny` model, a few steps of `train_lib.train_and_evaluate`.
"""

import importlib.util
import os

import gm_folders

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GMS = ("AAE", "ACGAN", "CONT_ENC", "DCGAN", "BEGAN", "WGAN", "BIGGAN_128", "STARGAN")
TEST_GMS = ("BIGGAN_128", "STARGAN")  # the ones of leave-out test set 1 among GMS
IMAGES_PER_GM = 10

_spec = importlib.util.spec_from_file_location("default_config",
                                               os.path.join(REPO, "configs", "default.py"))
default = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(default)


def config(root, red116_dir, **overrides):
  c = default.get_config("tiny")
  c.data.source = "folder"
  c.data.image_dir = os.path.join(root, "images")
  c.data.labels_dir = str(red116_dir)
  c.data.tfds_dir = os.path.join(root, "tfds")
  c.data.space = "red116"
  c.data.shards_per_gm = 1
  c.data.num_val_gms = 1
  c.data.shuffle_buffer = 32
  c.image_size = 16
  c.num_train_steps = 4
  c.eval_every_steps = 4  # one validation pass: the run's evaluations dominate its time
  c.checkpoint_every_steps = 2
  c.log_every_steps = 2
  c.eval.k_images = (1, 2, 5)
  c.eval.retrieval_images_per_gm = 4
  for key, value in overrides.items():
    node = c
    *parents, leaf = key.split(".")
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


_RUNS = {}


def trained(tmp_path_factory, red116_dir, **overrides) -> tuple[str, object]:
  """(workdir, config) of a finished tiny run; the same call in a session returns the same run."""
  from revgm_jax import train_lib  # pylint: disable=g-import-not-at-top
  base = tmp_path_factory.getbasetemp()
  key = (str(base), str(red116_dir), tuple(sorted(overrides.items())))
  if key not in _RUNS:
    root = str(base / "tiny_run_data")
    if not os.path.isdir(os.path.join(root, "images")):
      gm_folders.write_layout(os.path.join(root, "images"), GMS, IMAGES_PER_GM)
    c = config(root, red116_dir, **overrides)
    workdir = str(tmp_path_factory.mktemp("tiny_run"))
    train_lib.train_and_evaluate(c, workdir)
    _RUNS[key] = workdir, c
  return _RUNS[key]
