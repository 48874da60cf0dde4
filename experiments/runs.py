"""Training runs of an experiment: train a config into a workdir, or reuse the finished run.

A finished run (its results.json exists) of the same config is reused, so a killed experiment
continues where it stopped when started again; a run in progress resumes from its latest
checkpoint (`train_lib.train_and_evaluate`); a finished run of another config is an error.
"""

import json
import os

import ml_collections
from absl import flags, logging

from revgm_jax import workdir as workdir_lib
from revgm_jax.cli import cli_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def define_config_flag(help_string: str) -> flags.FlagHolder:
  """--config of an experiment: a config file (default configs/default.py), with overrides."""
  return cli_flags.define_config_file(
      "config", os.path.join(REPO, "configs", "default.py"), help_string, lock_config=True)


class ConfigChanged(ValueError):
  """A workdir holds a finished run of another config."""


def train_or_reuse(config: ml_collections.ConfigDict, workdir: str, title: str) -> dict:
  """The results of `config` trained in `workdir` (`title` names the run on the console)."""
  results_file = workdir_lib.results_path(workdir)
  if os.path.exists(results_file):
    if json.loads(config.to_json()) != workdir_lib.load_config(workdir).to_dict():
      raise ConfigChanged(f"{workdir} holds a finished run of another config (code or --config "
                          "changed since); use a new --out_dir")
    logging.info("%s: reusing %s", title, results_file)
    with open(results_file) as f:
      return json.load(f)
  print(f"=== {title} -> {workdir}", flush=True)
  from revgm_jax import train_lib  # pylint: disable=g-import-not-at-top  (TensorFlow, JAX)
  return train_lib.train_and_evaluate(config, workdir)
