"""The trainer: check -> prepare -> split -> datasets -> model -> loop -> evaluate.

The config is checked (`config_check`), the data prepared (`data.prepare`) and split
(`data.splits`), the batches are `input_pipeline.Datasets`', the jitted data-parallel programs
`revgm_jax.steps`'s over the mesh of `revgm_jax.sharding`, the folders of a workdir
`revgm_jax.workdir`'s; validation and the final evaluation go through the one evaluator
(`revgm_jax.evaluation`).
"""

from __future__ import annotations

import contextlib
import os

import jax
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers, periodic_actions
from tqdm import tqdm

from revgm_jax import checkpointing, config_check, input_pipeline, sharding, steps
from revgm_jax.runtime import distributed
from revgm_jax import tasks
from revgm_jax.runtime import stop_signal
from revgm_jax import workdir as workdir_lib
from revgm_jax.runtime import workdir_lock
from revgm_jax.data import prepare, splits
from revgm_jax.evaluation import evaluator, run as evaluation


def num_train_steps(config: ml_collections.ConfigDict, num_train_images: int) -> int:
  """`num_train_steps` if > 0, else `num_epochs` passes over the training images."""
  if config.num_train_steps > 0:
    return config.num_train_steps
  steps_ = config.num_epochs * num_train_images // config.batch_size
  if steps_ < 1:
    raise ValueError(f"num_epochs={config.num_epochs} x {num_train_images} training images / "
                     f"batch_size={config.batch_size} gives no step; set config.num_train_steps")
  return steps_


def _check_finite(step: int, metrics: dict, workdir: str, last_saved: int | None) -> None:
  bad = sorted(k for k, v in metrics.items() if not np.isfinite(v))
  if bad:
    where = (f"the last good checkpoint is step {last_saved} in "
             f"{workdir_lib.checkpoint_dir(workdir, workdir_lib.LATEST)}"
             if last_saved is not None else "no checkpoint was written")
    raise FloatingPointError(
        f"non-finite training metrics at step {step}: "
        + ", ".join(f"{k}={metrics[k]}" for k in bad)
        + f"; this state was not saved ({where})")


def _log_summary(prefix: str, m: dict, keys: tuple[str, ...]) -> str:
  return prefix + " ".join(f"{k}={m[k]:.4g}" for k in keys if m.get(k) is not None)


def _scalars(prefix: str, m: dict) -> dict:
  return {f"{prefix}/{k}": v for k, v in m.items() if isinstance(v, (int, float, np.floating))}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       overwrite: bool = False) -> dict:
  """Trains, selects on the validation GMs, evaluates on the test GMs; returns the results.

  Resumes from the latest checkpoint in `workdir` if there is one; a workdir of another data,
  label or model config is refused (workdir.WorkdirError) unless `overwrite` deletes its run.
  Holds the workdir's lock throughout. The results always hold "preempted_at": None, or the
  step that SIGTERM/SIGINT saved (with "signal", its name, and nothing evaluated;
  `stop_signal`).
  """
  distributed.initialize(config.distributed)  # a no-op for a single-process run
  workdir = os.path.abspath(workdir)
  with stop_signal.catch(), _claim(workdir, config, overwrite):
    return _train_and_evaluate(config, workdir, jax.process_index() == 0)


@contextlib.contextmanager
def _claim(workdir: str, config: ml_collections.ConfigDict, overwrite: bool):
  """Process 0 holds the workdir's lock, deletes its run on `overwrite` and checks that the run
  it holds has the same config; if not, every process raises process 0's error (the others
  would otherwise train on into a collective that never completes)."""
  with contextlib.ExitStack() as stack:
    caught = None
    if jax.process_index() == 0:
      try:
        stack.enter_context(workdir_lock.hold(workdir))
        if overwrite:
          workdir_lib.clear(workdir)
        workdir_lib.check_same_run(workdir, config)
      except (workdir_lib.WorkdirError, workdir_lib.WriteError) as e:
        caught = e
    error = distributed.from_process_0(
        caught and [isinstance(caught, workdir_lib.WriteError), str(caught)])
    if caught:
      raise caught
    if error:
      raise (workdir_lib.WriteError if error[0] else workdir_lib.WorkdirError)(error[1])
    yield


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, main: bool) -> dict:
  mesh = sharding.make_mesh()
  logging.info("workdir %s; mesh %s over %d devices on %d hosts", workdir, dict(mesh.shape),
               jax.device_count(), jax.process_count())
  config_check.check_config(config, sharding.num_devices(mesh), jax.process_count())
  ckpt = checkpointing.Checkpoints(workdir, config.checkpoint_every_steps, config.keep_checkpoints)
  prepared = prepare.prepare(config)
  split = splits.draw(config, prepared)
  data = input_pipeline.get_datasets(config, prepared, split, mesh)
  space = data.gt.space
  task = tasks.get(config, space, data.class_weights)
  model = tasks.create_model(config, space, data.split, axis_name=sharding.AXIS, gt=data.gt)
  tx = steps.make_optimizer(config.optim)
  total_steps = num_train_steps(config, data.num_train_images)
  image_shape = (config.image_size, config.image_size, 3)
  # Host values every process computes alike: the init key enters the init jit as raw data,
  # the dropout key is replicated over the mesh (docs/jax_notes.md#multi-host).
  init_rng, dropout_key = np.asarray(jax.random.key_data(jax.random.split(
      jax.random.key(config.seed))))
  dropout_rng = sharding.replicated_key(dropout_key, mesh)

  change = distributed.from_process_0(
      workdir_lib.split_change(workdir, data.split) if main else None)
  if change:
    raise workdir_lib.WorkdirError(change)
  if main:
    workdir_lib.write_run_info(workdir, config, data.gt, data.split, data.class_weights)
  restored = ckpt.restore_latest(steps.abstract_train_state(init_rng, model, tx, image_shape,
                                                            mesh))
  if restored is None:
    state, progress = steps.create_train_state(init_rng, model, tx, image_shape, mesh), {}
  else:
    state, progress = restored
    logging.info("resumed from step %d of %s", progress["step"], workdir)
  start_step = int(progress.get("step", 0))
  # Validation summaries of the best step so far and of the latest evaluation.
  best = progress.get("best", {"step": None, "score": None, "val": None})
  last_val = progress.get("last_val")
  ckpt.drop_best_after(start_step)  # left by a run killed between its best and latest saves
  last_saved = start_step if restored is not None else None

  train_step = steps.make_train_step(task, model, tx, mesh)
  predict_fn = steps.make_predict_fn(task, model, mesh)
  metrics_fn = evaluation.model_metrics(task)
  writer = metric_writers.create_default_writer(workdir, just_logging=not main)
  if start_step == 0:
    writer.write_hparams(_flat(config))

  train_iter = data.train_iter(start_step)
  report_progress = periodic_actions.ReportProgress(
      num_train_steps=total_steps, writer=writer, every_steps=config.log_every_steps,
      every_secs=None)
  window: list[dict] = []
  pbar = tqdm(total=total_steps, initial=start_step, desc="train", disable=not main,
              dynamic_ncols=True)

  def handle(step: int, device_metrics) -> None:
    m = {k: float(v) for k, v in sharding.to_host(device_metrics).items()}
    _check_finite(step, m, workdir, last_saved)
    window.append(m)
    pbar.update(step - pbar.n)
    report_progress(step)  # steps/s between log steps; its first call starts the clock
    if step % config.log_every_steps == 0 or step == total_steps:
      mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
      window.clear()
      writer.write_scalars(step, {**_scalars("train", mean), "learning_rate": config.optim.lr})
      pbar.set_postfix(loss=f"{mean['loss']:.4g}")

  pending = None
  should_stop = stop_signal.make_check(mesh)
  try:
    for step in range(start_step + 1, total_steps + 1):
      state, device_metrics = train_step(state, next(train_iter), dropout_rng)
      if pending is not None:
        handle(*pending)  # the previous step: reading it now never stalls the device queue
      pending = (step, device_metrics)
      do_eval = step % config.eval_every_steps == 0 or step == total_steps
      stop = should_stop()
      do_save = ckpt.should_save(step) or step == total_steps or stop
      if not (do_eval or do_save):
        continue
      handle(*pending)  # this step's metrics must be finite before its state is saved
      pending = None
      if do_eval:
        with report_progress.timed("eval"):
          val = evaluator.evaluate(predict_fn, state.variables, data.eval_iter("val"),
                                   metrics_fn)
        writer.write_scalars(step, _scalars("val", val))
        summary = _log_summary(f"step {step} val: ", val, task.summary_keys)
        logging.info(summary)
        if main:
          pbar.write(summary)  # the console's one line per evaluation
        last_val = {"step": step, **_json_metrics(val)}
        if best["score"] is None or val["score"] > best["score"]:
          best = {"step": step, "score": val["score"], "val": last_val}
          ckpt.save_best(state, {"step": step, "val": last_val})
          do_save = True  # keeps the resume checkpoint's `best` in step with the best manager
      if do_save:
        with report_progress.timed("checkpoint"):
          ckpt.save(state, {"step": step, "best": best, "last_val": last_val})
        last_saved = step
      if stop:
        why = stop_signal.received() or "a signal to another process"
        logging.warning("%s: saved step %d, stopping", why, step)
        return {"preempted_at": step, "signal": why, "workdir": workdir}
  finally:  # also on an error: the saves already started hold verified, finite states
    pbar.close()
    writer.flush()
    ckpt.close()  # waits for the saves
  stop_signal.release()  # the last step is saved: a signal during the evaluation stops it at once

  # Test GMs, evaluated once: the step config.eval.which selects, with baselines and k-image
  # curves, in the evaluation report.
  last_step = int(sharding.to_host(state.step))
  which = config.eval.which
  selected = last_step if which == workdir_lib.LATEST else best["step"]
  variables = state.variables
  if selected != last_step:
    target = sharding.replicated_target(jax.eval_shape(lambda: state.variables), mesh)
    variables, _ = checkpointing.restore_variables(workdir, target, which, selected)
  report = evaluation.evaluate(task, model, workdir, data, variables, step=selected, which=which)
  results = {"preempted_at": None, "workdir": workdir, "last_step": last_step,
             "selected_step": best["step"],
             "val_last": last_val, "val_selected": best["val"], "report": report}
  writer.write_scalars(last_step, _scalars("test_report", report["methods"]["model"]))
  writer.flush()
  if main:
    workdir_lib.write_results(workdir, results)
  return results


def _json_metrics(m: dict) -> dict:
  return {k: (None if v is None else float(v)) for k, v in m.items()}


def _flat(config: ml_collections.ConfigDict, prefix: str = "") -> dict:
  """Config as flat scalars for the hyperparameter summary (tuples as strings)."""
  out = {}
  for k, v in config.items():
    if isinstance(v, ml_collections.ConfigDict):
      out.update(_flat(v, f"{prefix}{k}."))
    else:
      out[prefix + k] = v if isinstance(v, (bool, int, float, str)) else str(v)
  return out
