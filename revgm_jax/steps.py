"""The model's jitted, data-parallel programs: the training step and the predict function.

Both are per-device code inside `jax.jit(jax.shard_map(...))` over the 1-D mesh of
`revgm_jax.sharding`: parameters replicated, the global batch split along the axis. Every
cross-device quantity is an explicit collective: BatchNorm moments, the batch-global spectrum
max and the weighted cross-entropy sums (inside the losses), and the loss itself (`lax.pmean`).
Under shard_map's replication typing the gradient of that replicated loss with respect to the
replicated parameters is already the all-reduced global gradient, so 1 device and N devices take
the same step on the same global batch (docs/jax_notes.md#per-device-step-with-shard_map); the
FFT runs on local examples only, with no all-gather of the batch
(docs/jax_notes.md#fft-without-an-all-gather).

One predict function serves validation during training, the evaluation report and
`revgm parse` (`revgm_jax.evaluation.evaluator` feeds it batches). What differs between parsing,
detection and attribution (loss, predictions) comes from the task object the caller holds
(`revgm_jax.tasks`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct
from jax import lax
from jax.sharding import PartitionSpec as P

from revgm_jax import sharding
from revgm_jax.runtime import compile_options
from revgm_jax.losses import constraints

AXIS = sharding.AXIS


class TrainState(struct.PyTreeNode):
  """Everything a step changes; the optimiser transform itself lives in the step's closure."""
  step: jax.Array  # [] int32, number of updates applied so far
  params: Any
  batch_stats: Any
  opt_state: Any

  @property
  def variables(self) -> dict:
    return {"params": self.params, "batch_stats": self.batch_stats}


def make_optimizer(optim: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """Adam with PyTorch-style L2 weight decay (added to the gradient before Adam, not AdamW)."""
  adam = optax.adam(optim.lr, b1=optim.b1, b2=optim.b2, eps=optim.eps)
  if optim.weight_decay:
    return optax.chain(optax.add_decayed_weights(optim.weight_decay), adam)
  return adam


def _init_state(rng, model, tx, image_shape) -> TrainState:
  if not jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.wrap_key_data(rng)
  # train=False: initialisation must not reach the BatchNorm collectives outside shard_map.
  variables = model.init(rng, jnp.zeros((1, *image_shape), jnp.float32), train=False)
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables["batch_stats"], opt_state=tx.init(params))


def create_train_state(rng, model, tx, image_shape, mesh) -> TrainState:
  """A fresh state, created directly replicated over the mesh.

  rng: a host key, or its raw data (`jax.random.key_data`) as NumPy, which is what a
  multi-process job passes (a host value every process holds alike). Not a key committed to
  the mesh: drawing from one gives other initial values.
  """
  init = functools.partial(_init_state, model=model, tx=tx, image_shape=image_shape)
  return jax.jit(init, out_shardings=sharding.replicated(mesh))(rng)


def abstract_train_state(rng, model, tx, image_shape, mesh) -> TrainState:
  """Shapes of `create_train_state` with concrete replicated shardings: the restore target."""
  init = functools.partial(_init_state, model=model, tx=tx, image_shape=image_shape)
  return sharding.replicated_target(jax.eval_shape(init, rng), mesh)


def make_train_step(task, model, tx, mesh) -> Callable:
  """jit(shard_map(...)) step: (state, global batch, rng) -> (state, replicated metrics).

  task: the run's (`tasks.get`, with its class weights). The state is donated. Dropout keys
  differ per step and per device: fold_in(fold_in(rng, step), device index).
  """

  def step_fn(state: TrainState, batch, rng):  # per device: batch is the local shard
    rng = jax.random.fold_in(jax.random.fold_in(rng, state.step), lax.axis_index(AXIS))

    def loss_fn(params):
      (fingerprint, outputs), updates = model.apply(
          {"params": params, "batch_stats": state.batch_stats}, batch["image"], train=True,
          rngs={"dropout": rng}, mutable=["batch_stats"])
      loss, terms = task.loss(fingerprint, outputs, batch, AXIS)
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


def make_predict_fn(task, model, mesh, *, fingerprints: bool = False) -> Callable:
  """jit(shard_map(...)): (variables, global batch) -> (per-example outputs, sums).

  Per-example outputs (sharded like the batch): "pred" (the task's predictions), and
  with `fingerprints` the "fingerprint" [B, S, S, 3] and "spectrum" [B, S, S] (|FFT| of its
  luma, DC centred). Sums (replicated): "count", the number of real examples (mask True; a
  batch without "mask" counts every row), and for a task with class weights (the batch then
  carries the labels) every loss term times that count, so that a pass over a split gives
  example-weighted means of the per-batch terms.
  """

  def fn(variables, batch):
    fingerprint, outputs = model.apply(variables, batch["image"], train=False)
    mask = batch.get("mask", jnp.ones(batch["image"].shape[:1], bool))
    n = lax.psum(jnp.sum(mask.astype(jnp.float32)), AXIS)
    sums = {"count": n}
    if task.class_weights is not None:
      loss, terms = task.loss(fingerprint, outputs, {**batch, "mask": mask}, AXIS)
      sums.update({k: n * v for k, v in {"loss": loss, **terms}.items()})
    out = {"pred": task.predictions(outputs)}
    if fingerprints:
      out["fingerprint"] = fingerprint
      out["spectrum"] = constraints.spectrum(constraints.luma(fingerprint))
    return out, sums

  sharded = jax.shard_map(fn, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(AXIS), P()))
  return compile_options.jit(sharded)


def make_parse_fingerprint_fn(task, model) -> Callable:
  """jit (variables, fingerprints [B, S, S, 3]) -> predictions of the parser heads alone (a
  parsing task's): the 'mean of fingerprints' aggregation feeds averaged fingerprints through
  it."""
  def fn(variables, fingerprints):
    outputs = model.apply(variables, fingerprints, False, method=lambda m, f, t: m.parser(f, t))
    return task.predictions(outputs)

  return compile_options.jit(fn)
