"""A tiny trained workdir for the evaluation and parse tests, trained once per test session;
the train.py and experiments/ command lines of its config, and `run`, which runs one as the
kill tests need.

8 GMs of random images with RED116 labels (5 train, 1 validation, the 2 of test set 1 present),
16 x 16 pixels, the `:tiny` model, a few steps of `train_lib.train_and_evaluate`.
"""

import os
import select
import signal
import subprocess
import sys
import time

import pytest

from support import gm_folders
from revgm_jax import config_utils

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT = os.path.join(REPO, "configs", "default.py")
TINY = DEFAULT + ":tiny"
GMS = ("AAE", "ACGAN", "CONT_ENC", "DCGAN", "BEGAN", "WGAN", "BIGGAN_128", "STARGAN")
TEST_GMS = ("BIGGAN_128", "STARGAN")  # the ones of leave-out test set 1 among GMS
IMAGES_PER_GM = 10


def overrides(root, red116_dir) -> dict:
  """{"dotted.field": value} that make the `:tiny` config train on the GM folders under `root`."""
  return {
      "data.source": "folder",
      "data.image_dir": os.path.join(root, "images"),
      "data.labels_dir": str(red116_dir),
      "data.tfds_dir": os.path.join(root, "tfds"),
      "data.space": "red116",
      "data.shards_per_gm": 1,
      "data.num_val_gms": 1,
      "data.shuffle_buffer": 32,
      "image_size": 16,
      "num_train_steps": 4,
      "eval_every_steps": 4,  # one validation pass: the run's evaluations dominate its time
      "checkpoint_every_steps": 2,
      "log_every_steps": 2,
      "eval.k_images": (1, 2, 5),
      "eval.retrieval_images_per_gm": 4}


def config(root, red116_dir, **more):
  """The `:tiny` config on the GM folders under `root`; `more`: {"dotted.field": value}."""
  return config_utils.load_config(TINY, {**overrides(root, red116_dir), **more})


def _flags(overrides_: dict) -> list[str]:
  """--config=TINY and {"dotted.field": value} as --config.X=V flags."""
  return [f"--config={TINY}"] + [
      f"--config.{k}=" + (",".join(map(str, v)) if isinstance(v, tuple) else str(v))
      for k, v in overrides_.items()]


def train_py_args(c, **more) -> list[str]:
  """train.py's flags for the config `c` made by `config` (its overrides, and `more` given to
  `config`, as --config.X=V)."""
  root = os.path.dirname(c.data.image_dir)
  return _flags({**overrides(root, c.data.labels_dir), **more})


def train_py(c, workdir, *flags) -> list[str]:
  """The train.py command of the config `c` (made by `config`) on `workdir`."""
  return [sys.executable, "train.py", *train_py_args(c), f"--workdir={workdir}", *flags]


def run(cmd: list[str], until=None, sig=signal.SIGKILL, timeout: float = 600.0
        ) -> tuple[int, str]:
  """Runs `cmd` from the repository root, in a session of its own; sends it `sig` (a real
  signal to the real process) once `until(output so far)` is true, checked as output arrives
  and every 0.1 s. Returns (exit status, stdout and stderr together). A command still running
  after `timeout` s is killed with everything it started, and fails the test."""
  deadline = time.monotonic() + timeout
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          start_new_session=True)
  out, pending = b"", until
  while time.monotonic() < deadline:
    if select.select([proc.stdout], [], [], 0.1)[0]:
      chunk = os.read(proc.stdout.fileno(), 65536)
      if not chunk:
        return proc.wait(max(0.0, deadline - time.monotonic())), out.decode(errors="replace")
      out += chunk
    if pending and pending(out.decode(errors="replace")):
      proc.send_signal(sig)
      pending = None
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  pytest.fail(f"{cmd[:4]} ran over {timeout} s:\n{out.decode(errors='replace')[-5000:]}")


def experiment_cmd(script: str, tmp_path, red116_dir, *extra) -> list[str]:
  """The command line of an experiments/ script on the tiny GM folders, 2 steps per run."""
  root = tmp_path / "data"
  if not (root / "images").is_dir():
    gm_folders.write_layout(root / "images", GMS, IMAGES_PER_GM)
  more = {"num_train_steps": 2, "eval_every_steps": 2, "eval.figures": False}
  return [sys.executable, os.path.join(REPO, "experiments", script),
          *_flags({**overrides(str(root), red116_dir), **more}), *extra]


_RUNS = {}


def trained(tmp_path_factory, red116_dir, **more) -> tuple[str, object]:
  """(workdir, config) of a finished tiny run; the same call in a session returns the same run."""
  from revgm_jax import train_lib  # pylint: disable=g-import-not-at-top
  base = tmp_path_factory.getbasetemp()
  key = (str(base), str(red116_dir), tuple(sorted(more.items())))
  if key not in _RUNS:
    root = str(base / "tiny_run_data")
    if not os.path.isdir(os.path.join(root, "images")):
      gm_folders.write_layout(os.path.join(root, "images"), GMS, IMAGES_PER_GM)
    c = config(root, red116_dir, **more)
    workdir = str(tmp_path_factory.mktemp("tiny_run"))
    train_lib.train_and_evaluate(c, workdir)
    _RUNS[key] = workdir, c
  return _RUNS[key]
