"""Joint training of the FEN and the parsing network (DESIGN.md 2, 5, 6.3, 7.1).

The step is per-device code inside `jax.jit(jax.shard_map(...))` over a 1-D ("data",) mesh:
parameters replicated, the global batch split along "data". Every cross-device quantity is an
explicit collective: BatchNorm moments (`axis_name="data"`), the batch-global spectrum max and
the weighted cross-entropy sums (inside the losses), and the loss itself (`lax.pmean`). Under
shard_map's replication typing (check_vma) the gradient of that replicated loss with respect to
the replicated parameters is already the all-reduced global gradient (JAX transposes the
implicit broadcast of the parameters into a psum), so 1 device and N devices take the same
step on the same global batch. The FFT then runs on local examples only: no all-gather of the
batch (XLA's global view would gather it, JAX_NOTES 3a).
"""

from __future__ import annotations

import functools
import json
import os
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from clu import metric_writers
from flax import struct
from jax import lax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P
from tqdm import tqdm

from revgm_jax import checkpointing, compile_options, labels, input_pipeline
from revgm_jax.evaluation import metrics as metrics_lib
from revgm_jax.evaluation import report as eval_report
from revgm_jax.evaluation import run as eval_run
from revgm_jax.losses import constraints, parsing
from revgm_jax.models import model as model_lib

AXIS = "data"
RESULTS_FILE = "results.json"


class TrainState(struct.PyTreeNode):
  """Everything a step changes; the optimiser transform itself lives in the step's closure."""
  step: jax.Array  # [] int32, number of updates applied so far
  params: Any
  batch_stats: Any
  opt_state: Any


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """1-D data-parallel mesh over `devices` (default: every device of every host)."""
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), (AXIS,), axis_types=(jax.sharding.AxisType.Explicit,),
                       devices=devices)


def make_optimizer(optim: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with PyTorch-style L2 weight decay (added to the gradient before Adam, not AdamW)."""
  adam = optax.adam(optim.lr, b1=optim.b1, b2=optim.b2, eps=optim.eps)
  if optim.weight_decay:
    return optax.chain(optax.add_decayed_weights(optim.weight_decay), adam)
  return adam


def num_train_steps(config: ml_collections.ConfigDict, num_train_images: int) -> int:
  """`num_train_steps` if > 0, else `num_epochs` passes over the training images."""
  if config.num_train_steps > 0:
    return config.num_train_steps
  steps = config.num_epochs * num_train_images // config.batch_size
  if steps < 1:
    raise ValueError(f"num_epochs={config.num_epochs} x {num_train_images} training images / "
                     f"batch_size={config.batch_size} gives no step; set config.num_train_steps")
  return steps


def _init_state(rng, model, tx, image_shape) -> TrainState:
  # train=False: initialisation must not reach the BatchNorm collectives outside shard_map.
  variables = model.init(rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables["batch_stats"], opt_state=tx.init(params))


def create_train_state(rng, model, tx, image_shape, mesh) -> TrainState:
  """A fresh state, created directly replicated over the mesh."""
  init = functools.partial(_init_state, model=model, tx=tx, image_shape=image_shape)
  return jax.jit(init, out_shardings=NamedSharding(mesh, P()))(rng)


def abstract_train_state(rng, model, tx, image_shape, mesh) -> TrainState:
  """Shapes of `create_train_state` with concrete replicated shardings: the restore target."""
  init = functools.partial(_init_state, model=model, tx=tx, image_shape=image_shape)
  return checkpointing.replicated_target(jax.eval_shape(init, rng), mesh)


def _losses(fingerprint, outputs, batch, *, config, space, class_weights, axis_name):
  """Total loss and every term (DESIGN.md 6.3): FEN constraints + weighted parsing losses.

  Examples with mask False (evaluation padding) are left out of every term.
  """
  c_terms = constraints.constraint_terms(fingerprint, constraints.low_freq_radius(config),
                                         config.loss.rep_clip, axis_name=axis_name,
                                         mask=batch["mask"])
  fen = constraints.fen_loss(c_terms, config.loss)
  parse, p_terms = parsing.parsing_loss(outputs, batch, class_weights, config.loss, space,
                                        config.model.head_activation, axis_name=axis_name)
  terms = {"fen": fen, "parsing": parse,
           **{f"fen/{k}": v for k, v in c_terms.items()},
           **{f"parsing/{k}": v for k, v in p_terms.items() if k != "parsing"}}
  return fen + parse, terms


def make_train_step(config, model, tx, space: labels.Space, class_weights, mesh) -> Callable:
  """jit(shard_map(...)) step: (state, global batch, rng) -> (state, replicated metrics).

  The state is donated. Dropout keys differ per step and per device but do not depend on the
  device count's effect on anything else: fold_in(fold_in(rng, step), device index).
  """
  loss_kw = dict(config=config, space=space, class_weights=class_weights, axis_name=AXIS)

  def step_fn(state: TrainState, batch, rng):  # per device: batch is the local shard
    rng = jax.random.fold_in(jax.random.fold_in(rng, state.step), lax.axis_index(AXIS))

    def loss_fn(params):
      (fingerprint, outputs), updates = model.apply(
          {"params": params, "batch_stats": state.batch_stats}, batch["image"], train=True,
          rngs={"dropout": rng}, mutable=["batch_stats"])
      loss, terms = _losses(fingerprint, outputs, batch, **loss_kw)
      # Replicated loss: terms computed from local data become global means here, global
      # ones (psum/pmax inside the losses) pass through unchanged.
      return lax.pmean(loss, AXIS), (terms, updates["batch_stats"])

    (loss, (terms, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, **terms, "grad_norm": optax.tree.norm(grads),
               "param_norm": optax.tree.norm(params)}
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state)
    return new_state, lax.pmean(metrics, AXIS)

  sharded = jax.shard_map(step_fn, mesh=mesh, in_specs=(P(), P(AXIS), P()),
                          out_specs=(P(), P()))
  return compile_options.jit(sharded, donate_argnums=0)


def make_eval_step(config, model, space: labels.Space, class_weights, mesh) -> Callable:
  """jit(shard_map(...)) eval step: (variables, padded batch) -> (per-example outputs, sums).

  Per-example outputs (sharded like the batch): predictions, labels, gm_row and mask. Sums
  (replicated): every loss term of the batch's real examples times their number, so that a
  pass over a split gives example-weighted means of the per-batch terms.
  """
  loss_kw = dict(config=config, space=space, class_weights=class_weights, axis_name=AXIS)

  def step_fn(variables, batch):
    fingerprint, outputs = model.apply(variables, batch["image"], train=False)
    loss, terms = _losses(fingerprint, outputs, batch, **loss_kw)
    n = lax.psum(jnp.sum(batch["mask"].astype(jnp.float32)), AXIS)
    sums = {k: n * v for k, v in {"loss": loss, **terms}.items()}
    sums["count"] = n
    per_example = {"pred": parsing.predictions(outputs, space, config.model.head_activation),
                   **{k: batch[k] for k in ("net", "loss", "loss_group", "gm_row", "mask")}}
    return per_example, sums

  sharded = jax.shard_map(step_fn, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(AXIS), P()))
  return compile_options.jit(sharded)


def train_batches(data: input_pipeline.Datasets, start_step: int) -> Iterator[dict]:
  """Global training batches from batch `start_step` on.

  Exact resumption: the input order is a function of the seed alone, so a resumed run skips
  the batches the interrupted run consumed (on the host, before the device transfer; they are
  still read and decoded once more) and then sees the same stream.
  """
  for batch in data.train_dataset().skip(start_step).as_numpy_iterator():
    yield input_pipeline.to_global(batch, data.mesh)


def to_host(tree):
  """Replicated device arrays -> NumPy, on any host (multi-host arrays are not addressable)."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def selection_score(m: dict) -> float:
  """The 116 eval script's checkpoint rule, F1_net + F1_loss - 5 L1, here on validation GMs."""
  return m["net_f1"] + m["loss_f1"] - 5.0 * m["cont_l1"]


def evaluate(eval_step, variables, batches: Iterator, space: labels.Space) -> dict:
  """Loss terms and parsing metrics over one pass of `batches` (padded, with `mask`)."""
  sums, outs = {}, []
  for batch in batches:
    per_example, s = eval_step(variables, batch)
    for k, v in to_host(s).items():
      sums[k] = sums.get(k, 0.0) + float(v)
    per_example = multihost_utils.process_allgather(per_example, tiled=True)
    keep = np.asarray(per_example["mask"], bool)
    outs.append(jax.tree.map(lambda a: np.asarray(a)[keep], per_example))
  count = sums.pop("count", 0.0)
  if not count:
    raise ValueError("evaluation split has no example")
  out = {k: v / count for k, v in sums.items()}
  allx = jax.tree.map(lambda *a: np.concatenate(a, 0), *outs)
  out.update(metrics_lib.parsing_metrics(allx["pred"], allx, space))
  out["score"] = selection_score(out)
  return out


def _check_finite(step: int, metrics: dict, workdir: str, last_saved: int | None) -> None:
  bad = sorted(k for k, v in metrics.items() if not np.isfinite(v))
  if bad:
    where = (f"the last good checkpoint is step {last_saved} in "
             f"{os.path.join(workdir, checkpointing.CHECKPOINTS)}" if last_saved is not None
             else "no checkpoint was written")
    raise FloatingPointError(
        f"non-finite training metrics at step {step}: "
        + ", ".join(f"{k}={metrics[k]}" for k in bad)
        + f"; this state was not saved ({where})")


class _Throughput:
  """Steps/s and images/s between calls, excluding compilation and paused time."""

  def __init__(self, batch_size: int):
    self.batch_size = batch_size
    self.start = self.first = None
    self.paused = 0.0  # seconds of evaluation and checkpointing since the last call

  def rates(self, step: int) -> dict:
    """Call after `step` finished; rates since the previous call (none at the first call, whose
    step of a (re)started run included the compilation)."""
    now = time.perf_counter()
    out = {}
    if self.start is not None and step > self.first:
      sps = (step - self.first) / max(now - self.start - self.paused, 1e-9)
      out = {"steps_per_second": sps, "images_per_second": sps * self.batch_size}
    self.start, self.first, self.paused = now, step, 0.0
    return out


def _log_summary(prefix: str, m: dict) -> str:
  keys = ("loss", "fen", "parsing", "score", "cont_l1", "net_f1", "loss_f1")
  return prefix + " ".join(f"{k}={m[k]:.4g}" for k in keys if m.get(k) is not None)


def _scalars(prefix: str, m: dict) -> dict:
  return {f"{prefix}/{k}": v for k, v in m.items() if isinstance(v, (int, float, np.floating))}


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains, selects on the validation GMs, evaluates on the test GMs; returns the results.

  Resumes from the latest checkpoint in `workdir/checkpoints` if there is one.
  """
  if config.multihost:
    jax.distributed.initialize()  # coordinator and process ids from the cluster environment
  workdir = os.path.abspath(workdir)
  main = jax.process_index() == 0
  mesh = make_mesh()
  logging.info("workdir %s; mesh %s over %d devices on %d hosts", workdir, dict(mesh.shape),
               jax.device_count(), jax.process_count())

  for name in ("log_every_steps", "eval_every_steps"):
    if config[name] < 1:
      raise ValueError(f"config.{name}={config[name]} must be >= 1")
  if config.data.num_val_gms < 1:
    raise ValueError(f"config.data.num_val_gms={config.data.num_val_gms}: model selection needs "
                     "at least one validation GM (held out from the training GMs)")
  ckpt = checkpointing.Checkpoints(workdir, config.checkpoint_every_steps, config.keep_checkpoints)
  if ckpt.latest.latest_step() is not None:
    checkpointing.check_same_model(workdir, config)
  data = input_pipeline.get_datasets(config, mesh)
  space = data.gt.space
  model = model_lib.create_model(config, space, axis_name=AXIS)
  tx = make_optimizer(config.optim)
  total_steps = num_train_steps(config, data.num_train_images)
  image_shape = (config.image_size, config.image_size, 3)
  init_rng, dropout_rng = jax.random.split(jax.random.key(config.seed))
  dropout_rng = jax.device_put(dropout_rng, NamedSharding(mesh, P()))

  if main:
    checkpointing.write_run_info(workdir, config, data.gt, data.split, data.class_weights)
  restored = ckpt.restore_latest(abstract_train_state(init_rng, model, tx, image_shape, mesh))
  if restored is None:
    state, progress = create_train_state(init_rng, model, tx, image_shape, mesh), {}
  else:
    state, progress = restored
    logging.info("resumed from step %d of %s", progress["step"], workdir)
  start_step = int(progress.get("step", 0))
  # Validation summaries of the best step so far and of the latest evaluation.
  best = progress.get("best", {"step": None, "score": None, "val": None})
  last_val = progress.get("last_val")
  ckpt.drop_best_after(start_step)  # left by a run killed between its best and latest saves
  last_saved = start_step if restored is not None else None

  train_step = make_train_step(config, model, tx, space, data.class_weights, mesh)
  eval_step = make_eval_step(config, model, space, data.class_weights, mesh)
  writer = metric_writers.create_default_writer(workdir, just_logging=not main)
  if start_step == 0:
    writer.write_hparams(_flat(config))

  train_iter = train_batches(data, start_step)
  meter = _Throughput(config.batch_size)
  window: list[dict] = []
  pbar = tqdm(total=total_steps, initial=start_step, desc="train", disable=not main,
              dynamic_ncols=True)

  def handle(step: int, device_metrics) -> None:
    m = {k: float(v) for k, v in to_host(device_metrics).items()}
    _check_finite(step, m, workdir, last_saved)
    window.append(m)
    pbar.update(step - pbar.n)
    if meter.start is None:
      meter.rates(step)  # starts the clock after the first (compiling) step
    if step % config.log_every_steps == 0 or step == total_steps:
      mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
      window.clear()
      writer.write_scalars(step, {**_scalars("train", mean), **meter.rates(step),
                                  "learning_rate": config.optim.lr})
      pbar.set_postfix(loss=f"{mean['loss']:.4g}")

  pending = None
  try:
    for step in range(start_step + 1, total_steps + 1):
      state, device_metrics = train_step(state, next(train_iter), dropout_rng)
      if pending is not None:
        handle(*pending)  # the previous step: reading it now never stalls the device queue
      pending = (step, device_metrics)
      do_eval = step % config.eval_every_steps == 0 or step == total_steps
      do_save = ckpt.should_save(step) or step == total_steps
      if not (do_eval or do_save):
        continue
      handle(*pending)  # this step's metrics must be finite before its state is saved
      pending = None
      t0 = time.perf_counter()
      if do_eval:
        val = evaluate(eval_step, {"params": state.params, "batch_stats": state.batch_stats},
                       data.eval_iter("val"), space)
        writer.write_scalars(step, _scalars("val", val))
        logging.info(_log_summary(f"step {step} val: ", val))
        last_val = {"step": step, **_json_metrics(val)}
        if best["score"] is None or val["score"] > best["score"]:
          best = {"step": step, "score": val["score"], "val": last_val}
          ckpt.save_best(state, {"step": step, "val": last_val})
          do_save = True  # keeps the resume checkpoint's `best` in step with the best manager
      if do_save:
        ckpt.save(state, {"step": step, "best": best, "last_val": last_val})
        last_saved = step
      meter.paused += time.perf_counter() - t0
      if ckpt.reached_preemption(step):
        logging.warning("preemption notice: saved step %d, stopping", step)
        return {"preempted_at": step, "workdir": workdir}
  finally:  # also on an error: the saves already started hold verified, finite states
    pbar.close()
    writer.flush()
    ckpt.wait()
    ckpt.close()

  # Test GMs: the last step here (loss terms and metrics), the selected checkpoint
  # (config.eval.which) with baselines and k-image curves in the evaluation report.
  test_last = evaluate(eval_step, {"params": state.params, "batch_stats": state.batch_stats},
                       data.eval_iter("test"), space)
  report = eval_run.evaluate_workdir(config, workdir, data)
  last_step = int(to_host(state.step))
  results = {"workdir": workdir, "last_step": last_step, "selected_step": best["step"],
             "val_last": last_val, "val_selected": best["val"],
             "test_last": _json_metrics(test_last), "report": report}
  writer.write_scalars(last_step, {**_scalars("test_last", test_last),
                                     **_scalars("test_report", report["methods"]["model"])})
  writer.flush()
  if main:
    with open(os.path.join(workdir, RESULTS_FILE), "w") as f:
      json.dump(results, f, indent=1)
  return results


def results_table(results: dict) -> str:
  """Markdown summary: validation and test metrics of the last and the selected step, then the
  evaluation report's table of the model against the baselines."""
  cols = (("L1 cont. ↓", "cont_l1"), ("F1 net ↑", "net_f1"), ("F1 loss ↑", "loss_f1"),
          ("AUC loss ↑", "loss_auc"), ("score ↑", "score"), ("loss", "loss"))
  report = results["report"]
  rows = [("val", f"last ({results['last_step']})", results["val_last"]),
          ("val", f"selected ({results['selected_step']})", results["val_selected"]),
          ("test", f"last ({results['last_step']})", results["test_last"]),
          ("test", f"{report['checkpoint']} ({report['step']})", report["methods"]["model"])]
  lines = ["| GMs | step | " + " | ".join(c for c, _ in cols) + " |",
           "|---" * (len(cols) + 2) + "|"]
  for split, step, m in rows:
    m = dict(m or {})
    if "score" not in m and m.get("net_f1") is not None and m.get("loss_f1") is not None:
      m["score"] = selection_score(m)
    lines.append(f"| {split} | {step} | "
                 + " | ".join(eval_report.fmt(m.get(k)) for _, k in cols) + " |")
  lines += ["", f"{report['name']} ({report['num_images']} images of {len(report['gms'])} GMs):",
            "", *eval_report.headline_table(report["methods"])]
  return "\n".join(lines)


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
