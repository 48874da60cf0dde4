"""Checkpoints and run metadata of a training workdir (orbax; no pickle anywhere).

  workdir/config.json          the run's full ConfigDict
  workdir/labels.json          space, train/val/test GM names, class weights of the run
  workdir/labels/              ground truth of the run's GMs (`labels.write_ground_truth` format)
  workdir/checkpoints/<step>/  the latest `keep` train states, for resuming:
                                 variables {params, batch_stats}, train {step, opt_state}, progress
  workdir/best/<step>/         the step that scored best on the validation GMs: variables, progress

Restores go into concrete abstract targets (`ShapeDtypeStruct`s carrying a NamedSharding over the
*current* mesh), so a checkpoint written on 8 devices loads onto 2 or 1 (JAX_NOTES 3e: targets
with an AbstractMesh fail). Model variables are an item of their own so that inference restores
them without building an optimiser.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization
from jax.sharding import NamedSharding, PartitionSpec as P

from revgm_jax import labels

CHECKPOINTS = "checkpoints"
BEST = "best"
CONFIG_FILE = "config.json"
LABELS_FILE = "labels.json"
LABELS_DIR = "labels"


def replicated_target(tree, mesh: jax.sharding.Mesh):
  """Abstract restore target: every leaf's shape and dtype, replicated over `mesh`."""
  sharding = NamedSharding(mesh, P())
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


def write_run_info(workdir: str, config: ml_collections.ConfigDict, gt: labels.GroundTruth,
                   split: dict, class_weights: dict) -> None:
  """Everything besides the weights that inference needs to rebuild and read the model."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
    f.write(config.to_json(indent=2))
  info = {"space": gt.space.name, "split": {k: list(v) for k, v in split.items()},
          "class_weights": {k: [np.asarray(w).tolist() for w in ws]
                            for k, ws in class_weights.items()}}
  with open(os.path.join(workdir, LABELS_FILE), "w") as f:
    json.dump(info, f, indent=2)
  labels.write_ground_truth(os.path.join(workdir, LABELS_DIR), gt)


# Fields that fix the shapes of the saved state; a workdir cannot resume under other values.
_STATE_FIELDS = ("image_size", "data.space", "model.fen_depth", "model.fen_width",
                 "model.parser_widths", "model.fc_width", "model.branch_widths",
                 "model.share_branch", "optim.weight_decay")


def _get(config: dict, dotted: str):
  for key in dotted.split("."):
    config = config.get(key, {}) if isinstance(config, dict) else None
  return config


def check_same_model(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises if `workdir` already holds a run whose state shapes another config would not fit."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    old = json.load(f)
  new = json.loads(config.to_json())
  diff = [f"{k}: {_get(old, k)} -> {_get(new, k)}" for k in _STATE_FIELDS
          if _get(old, k) != _get(new, k)]
  if diff:
    raise ValueError(f"workdir {workdir} holds a run of another model ({'; '.join(diff)}); "
                     "resume it with its own config.json or train in a new --workdir")


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (lists where the original had tuples)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: {workdir} is not a training workdir")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_run_info(workdir: str) -> tuple[dict, labels.GroundTruth]:
  """(labels.json contents, ground truth of the run's GMs) of a training workdir."""
  path = os.path.join(workdir, LABELS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: {workdir} is not a training workdir")
  with open(path) as f:
    info = json.load(f)
  return info, labels.load_ground_truth(os.path.join(workdir, LABELS_DIR), info["space"])


class Checkpoints:
  """The resume manager (latest `keep` states every `every_steps`) and the best-on-val manager."""

  def __init__(self, workdir: str, every_steps: int, keep: int):
    if every_steps < 1 or keep < 1:
      raise ValueError(f"checkpoint_every_steps ({every_steps}) and keep_checkpoints ({keep}) "
                       "must be >= 1")
    # Every `every_steps` steps and on preemption; not orbax's default extra save of the first
    # step of a run.
    policy = ocp.checkpoint_managers.AnySavePolicy([
        ocp.checkpoint_managers.FixedIntervalPolicy(every_steps),
        ocp.checkpoint_managers.PreemptionCheckpointingPolicy()])
    self.latest = ocp.CheckpointManager(
        os.path.join(workdir, CHECKPOINTS),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, save_decision_policy=policy))
    self.best = ocp.CheckpointManager(
        os.path.join(workdir, BEST), options=ocp.CheckpointManagerOptions(max_to_keep=1))

  def should_save(self, step: int) -> bool:
    """True every `every_steps` steps and when a preemption notice has arrived."""
    return self.latest.should_save(step)

  def reached_preemption(self, step: int) -> bool:
    return self.latest.reached_preemption(step)

  def save(self, state, progress: dict) -> None:
    """Saves `state` (a finite one: the caller checks) under its step, asynchronously."""
    step = int(progress["step"])
    self.latest.save(step, force=True, args=ocp.args.Composite(
        variables=ocp.args.StandardSave({"params": state.params,
                                         "batch_stats": state.batch_stats}),
        train=ocp.args.StandardSave({"step": state.step,
                                     "opt_state": serialization.to_state_dict(state.opt_state)}),
        progress=ocp.args.JsonSave(progress)))

  def save_best(self, state, progress: dict) -> None:
    self.best.save(int(progress["step"]), force=True, args=ocp.args.Composite(
        variables=ocp.args.StandardSave({"params": state.params,
                                         "batch_stats": state.batch_stats}),
        progress=ocp.args.JsonSave(progress)))

  def drop_best_after(self, step: int) -> None:
    """Deletes best-manager steps after `step` (the resumed run will reach them again)."""
    for s in self.best.all_steps():
      if s > step:
        self.best.delete(s)

  def restore_latest(self, abstract_state) -> tuple[Any, dict] | None:
    """(state, progress) of the latest checkpoint restored onto `abstract_state`'s shardings,
    or None when there is none. `abstract_state` holds ShapeDtypeStructs (`replicated_target`)."""
    step = self.latest.latest_step()
    if step is None:
      return None
    abstract_opt = serialization.to_state_dict(abstract_state.opt_state)
    r = self.latest.restore(step, args=ocp.args.Composite(
        variables=ocp.args.StandardRestore({"params": abstract_state.params,
                                            "batch_stats": abstract_state.batch_stats}),
        train=ocp.args.StandardRestore({"step": abstract_state.step, "opt_state": abstract_opt}),
        progress=ocp.args.JsonRestore()))
    state = abstract_state.replace(
        step=r["train"]["step"], params=r["variables"]["params"],
        batch_stats=r["variables"]["batch_stats"],
        opt_state=serialization.from_state_dict(abstract_state.opt_state, r["train"]["opt_state"]))
    return state, r["progress"]

  def wait(self) -> None:
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def restore_variables(workdir: str, abstract_variables, which: str = "best",
                      step: int | None = None) -> tuple[dict, dict]:
  """({"params", "batch_stats"}, progress) of a workdir's checkpoint, for inference.

  which: "best" (the validation-selected step) or "latest" (the resume checkpoints); step:
  a specific step of that manager (default: its newest). `abstract_variables` is a
  `replicated_target` of the model's variables (e.g. from `jax.eval_shape(model.init, ...)`).
  """
  if which not in (BEST, "latest"):
    raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
  path = os.path.join(workdir, BEST if which == BEST else CHECKPOINTS)
  mngr = ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(create=False))
  step = mngr.latest_step() if step is None else step
  if step is None or step not in mngr.all_steps():
    raise FileNotFoundError(f"no checkpoint{'' if step is None else f' of step {step}'} in "
                            f"{path} (steps there: {list(mngr.all_steps())})")
  r = mngr.restore(step, args=ocp.args.Composite(
      variables=ocp.args.StandardRestore(abstract_variables), progress=ocp.args.JsonRestore()))
  mngr.close()
  return r["variables"], r["progress"]
