"""Orbax checkpoints of a training workdir: the resume manager and the best-on-validation one.

Folder names and the run metadata beside the weights are `revgm_jax.workdir`'s. Restores go
into concrete abstract targets (`ShapeDtypeStruct`s carrying a NamedSharding over the *current*
mesh), so a checkpoint written on 8 devices loads onto 2 or 1 (docs/jax_notes.md#restore-targets).
Model variables are an item of their own so that inference restores them without building an
optimiser. No pickle anywhere.

A step that fails to restore (truncated or bit-flipped files, a half-written step) is named in
a warning and the previous step of the manager is used; training moves the failed steps aside
to WORKDIR/corrupt/ so that the resumed run can write those steps again.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from absl import logging
from flax import serialization
from jax.experimental import multihost_utils

from revgm_jax import workdir as workdir_lib
from revgm_jax.runtime import distributed


class CheckpointError(ValueError):
  """No step of a checkpoint folder restores; the message names each step and its problem."""


def _problem(e: Exception) -> str:
  text = str(e).strip()
  return f"{type(e).__name__}: {text.splitlines()[0][:200] if text else ''}"


def restore_newest(mngr: ocp.CheckpointManager, restore: Callable[[int], Any],
                   step: int | None = None) -> tuple[int, Any, list[str]]:
  """(step, restore(step), ["DIR/STEP: problem"] of the newer steps that failed) for the newest
  step of `mngr` that restores; only `step` when one is given. Raises CheckpointError.

  In a multi-process job every process ends on the same step: a step that fails on one process
  is given up by all. Each round every process restores the newest step up to the lowest one
  restored in the previous round (orbax's restore ends in a barrier: all processes must restore
  alike) and one all-gather compares the steps.
  """
  path = str(mngr.directory)
  candidates = [step] if step is not None else sorted(mngr.all_steps(), reverse=True)
  failed, bound = [], math.inf
  while True:
    found = None
    for s in (c for c in candidates if c <= bound):
      try:
        found = s, restore(s)
        break
      except Exception as e:  # pylint: disable=broad-except  # orbax/tensorstore: many types
        failed.append(f"{path}/{s}: {_problem(e)}")
        logging.warning("checkpoint %s cannot be restored; trying the previous step", failed[-1])
    steps = distributed.process_values(-1 if found is None else found[0])
    if min(steps) < 0:
      raise CheckpointError(f"no step of {path} restores" + (
          ": " + "; ".join(failed) if found is None else
          f" on every process (process {steps.index(-1)} restores none)"))
    if len(set(steps)) == 1:
      return found[0], found[1], failed
    bound = min(steps)


class Checkpoints:
  """The resume manager (latest `keep` states every `every_steps`) and the best-on-val manager."""

  def __init__(self, workdir: str, every_steps: int, keep: int):
    if every_steps < 1 or keep < 1:
      raise ValueError(f"checkpoint_every_steps ({every_steps}) and keep_checkpoints ({keep}) "
                       "must be >= 1")
    # Every `every_steps` steps; not orbax's default extra save of the first step of a run.
    policy = ocp.checkpoint_managers.FixedIntervalPolicy(every_steps)
    self.latest = ocp.CheckpointManager(
        workdir_lib.checkpoint_dir(workdir, workdir_lib.LATEST),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, save_decision_policy=policy))
    self.best = ocp.CheckpointManager(workdir_lib.checkpoint_dir(workdir, workdir_lib.BEST),
                                      options=ocp.CheckpointManagerOptions(max_to_keep=1))
    self._saving: dict[ocp.CheckpointManager, int] = {}  # the step each manager is writing

  def should_save(self, step: int) -> bool:
    """True every `every_steps` steps."""
    return self.latest.should_save(step)

  def save(self, state, progress: dict) -> None:
    """Saves `state` (a finite one: the caller checks) under its step, asynchronously."""
    self._save(self.latest, progress, variables=ocp.args.StandardSave(
        {"params": state.params, "batch_stats": state.batch_stats}),
        train=ocp.args.StandardSave({"step": state.step, "opt_state": serialization.to_state_dict(
            state.opt_state)}))

  def save_best(self, state, progress: dict) -> None:
    self._save(self.best, progress, variables=ocp.args.StandardSave(
        {"params": state.params, "batch_stats": state.batch_stats}))

  def _save(self, mngr: ocp.CheckpointManager, progress: dict, **items) -> None:
    self._finish(mngr)  # orbax waits for the previous save anyway; its error is named here
    step = int(progress["step"])
    self._saving[mngr] = step
    with workdir_lib.writing(f"{mngr.directory}/{step}"):
      mngr.save(step, force=True, args=ocp.args.Composite(
          **items, progress=ocp.args.JsonSave(progress)))

  def _finish(self, mngr: ocp.CheckpointManager) -> None:
    """Waits for `mngr`'s background save. Orbax writes from a thread and re-raises its error
    (disk full, read-only) here, at the next save or at the end: a WriteError naming the step."""
    step = self._saving.pop(mngr, None)
    try:
      mngr.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except  # orbax/tensorstore: many types
      problem = e.strerror if isinstance(e, OSError) and e.strerror else _problem(e)
      raise workdir_lib.WriteError(
          f"cannot write the checkpoint {mngr.directory}/{step}: {problem}") from e

  def drop_best_after(self, step: int) -> None:
    """Deletes best-manager steps after `step` (the resumed run will reach them again)."""
    for s in self.best.all_steps():
      if s > step:
        self.best.delete(s)

  def restore_latest(self, abstract_state) -> tuple[Any, dict] | None:
    """(state, progress) of the newest intact checkpoint restored onto `abstract_state`'s
    shardings, or None when there is none. `abstract_state` holds ShapeDtypeStructs
    (`sharding.replicated_target`). Newer steps that fail to restore are moved to
    WORKDIR/corrupt/."""
    if self.latest.latest_step() is None:
      return None
    abstract_opt = serialization.to_state_dict(abstract_state.opt_state)
    step, r, failed = restore_newest(self.latest, lambda s: self.latest.restore(
        s, args=ocp.args.Composite(
            variables=ocp.args.StandardRestore({"params": abstract_state.params,
                                                "batch_stats": abstract_state.batch_stats}),
            train=ocp.args.StandardRestore({"step": abstract_state.step,
                                            "opt_state": abstract_opt}),
            progress=ocp.args.JsonRestore())))
    later = [s for s in self.latest.all_steps() if s > step]
    if later:  # failed here or on another process: the same list on every process
      self._move_aside(later)
    state = abstract_state.replace(
        step=r["train"]["step"], params=r["variables"]["params"],
        batch_stats=r["variables"]["batch_stats"],
        opt_state=serialization.from_state_dict(abstract_state.opt_state, r["train"]["opt_state"]))
    return state, r["progress"]

  def _move_aside(self, bad_steps: list[int]) -> None:
    latest = str(self.latest.directory)
    corrupt = os.path.join(os.path.dirname(latest), workdir_lib.CORRUPT_DIR)
    if jax.process_index() == 0:
      os.makedirs(corrupt, exist_ok=True)
      for s in bad_steps:
        to = os.path.join(corrupt, f"{workdir_lib.LATEST}-{s}")
        while os.path.exists(to):
          to += "+"
        os.rename(os.path.join(latest, str(s)), to)
        logging.warning("moved the checkpoint %s/%d that fails to restore to %s", latest, s, to)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("corrupt checkpoint steps moved aside")
    self.latest.reload()

  def wait(self) -> None:
    self._finish(self.latest)
    self._finish(self.best)

  def close(self) -> None:
    """Waits for both managers' saves and closes them; raises the first failed save's
    WriteError after both are closed."""
    errors = []
    for mngr in (self.latest, self.best):
      try:
        self._finish(mngr)
      except workdir_lib.WriteError as e:
        errors.append(e)
      mngr.close()
    if errors:
      raise errors[0]


def restore_variables(workdir: str, abstract_variables, which: str = "best",
                      step: int | None = None) -> tuple[dict, dict]:
  """({"params", "batch_stats"}, progress) of a workdir's checkpoint, for inference.

  which: "best" (the validation-selected step) or "latest" (the resume checkpoints); step:
  a specific step of that manager (default: its newest intact one; progress["skipped"], only
  when there are some, lists the newer steps that failed to restore). `abstract_variables` is a
  `sharding.replicated_target` of the model's variables (e.g. from
  `jax.eval_shape(model.init, ...)`).
  """
  path = workdir_lib.checkpoint_dir(workdir, which)
  mngr = ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(create=False))
  if (mngr.latest_step() if step is None else step) not in mngr.all_steps():
    raise FileNotFoundError(f"no checkpoint{'' if step is None else f' of step {step}'} in "
                            f"{path} (steps there: {list(mngr.all_steps())})")
  try:
    _, r, failed = restore_newest(mngr, lambda s: mngr.restore(s, args=ocp.args.Composite(
        variables=ocp.args.StandardRestore(abstract_variables),
        progress=ocp.args.JsonRestore())), step)
  finally:
    mngr.close()
  return r["variables"], {**r["progress"], **({"skipped": failed} if failed else {})}
