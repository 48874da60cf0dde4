"""Evaluation, dispatched on the task: one entry for the metrics, the evaluation and the tables.

Parsing is `parsing.py`'s, detection and attribution `classification.py`'s. `evaluate_checkpoint`
is what `eval.py` runs: the run's data prepared and split as training did, a checkpoint
restored, then `evaluate`.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import ml_collections

from revgm_jax import config_check, inference, input_pipeline, sharding, tasks
from revgm_jax import workdir as workdir_lib
from revgm_jax.data import prepare, splits
from revgm_jax.evaluation import classification, parsing

_BY_TASK = {"parsing": parsing, "detection": classification, "attribution": classification}


def model_metrics(task) -> Callable[[dict, dict], dict]:
  """(per-example outputs, sums) -> validation metrics with the selection "score"."""
  return functools.partial(_BY_TASK[task.name].model_metrics, task)


def evaluate(task, model, workdir: str, data: input_pipeline.Datasets, variables, *, step: int,
             which: str, split: str = "test", out_dir: str = "") -> dict:
  """Evaluates `variables` of `model` (step `step` of `workdir`'s `which` manager) on `split`,
  writes the report (default WORKDIR/report) and returns the results (as metrics.json holds).
  task: the run's (`tasks.get`, with its class weights)."""
  return _BY_TASK[task.name].evaluate(task, model, workdir, data, variables, step=step,
                                      which=which, split=split, out_dir=out_dir)


def results_table(task_name: str, results: dict) -> str:
  """What train.py prints of `train_lib.train_and_evaluate`'s results."""
  return _BY_TASK[task_name].results_table(results)


def report_table(task_name: str, results: dict) -> str:
  """What eval.py prints of `evaluate`'s results."""
  return _BY_TASK[task_name].report_table(results)


def evaluate_checkpoint(config: ml_collections.ConfigDict, checkpoint: str, split: str = "test",
                        out_dir: str = "") -> dict:
  """Restores a checkpoint path (a workdir: its config.eval.which manager) and evaluates it.

  config: the run's config (it must give the same data split as the run's).
  """
  if workdir_lib.is_workdir(checkpoint):
    checkpoint = workdir_lib.checkpoint_dir(checkpoint, config.eval.which)
  mesh = sharding.make_mesh()
  config_check.check_config(config, sharding.num_devices(mesh), jax.process_count())
  prepared = prepare.prepare(config)
  data = input_pipeline.get_datasets(config, prepared, splits.draw(config, prepared), mesh)
  loaded = inference.load(checkpoint, config, data.mesh)
  if list(loaded.split[split]) != list(data.split[split]):
    raise ValueError(f"{checkpoint} was trained with {split} GMs {loaded.split[split]}, but the "
                     f"config's data gives {data.split[split]}")
  for part in sorted(set(loaded.split) & set(data.split) - {split}):  # baselines, calibration
    if sorted(loaded.split[part]) != sorted(data.split[part]):
      differ = len(set(loaded.split[part]) ^ set(data.split[part]))
      raise workdir_lib.WorkdirError(
          f"{checkpoint} was trained with other {part} GMs than this code draws for its config "
          f"({len(loaded.split[part])} GMs, {differ} differ); the split rule changed since "
          "(docs/protocol.md#gm-splits): evaluate it with the code it was trained with, or "
          "train it again")
  task = tasks.get(config, data.gt.space, data.class_weights)
  return evaluate(task, loaded.model, loaded.workdir, data, loaded.variables, step=loaded.step,
                  which=loaded.which, split=split, out_dir=out_dir)
