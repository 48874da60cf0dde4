"""The data-parallel train step and the training loop (tiny models, 16 x 16 images).

Step tests use synthetic batches; loop tests run `train_and_evaluate` on the tiny published-
layout set of `tiny_run` (random images, RED116 labels) through the real input pipeline.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from support import tiny_run
from revgm_jax import checkpointing, config_utils, input_pipeline, labels, sharding, steps, tasks
from revgm_jax import train_lib
from revgm_jax import workdir as workdir_lib
from revgm_jax.evaluation import report
from revgm_jax.models import model as model_lib

pytestmark = pytest.mark.e2e  # every test trains or starts processes

SIZE, BATCH = 16, 8


@pytest.fixture(scope="module")
def setup(red116_dir):
  """Tiny model without dropout (its masks depend on the device layout), synthetic batches."""
  config = config_utils.load_config(tiny_run.TINY, {
      "image_size": SIZE, "data.space": "red116", "model.dropout": 0.0, "optim.lr": 1e-3})
  gt = labels.load_ground_truth(str(red116_dir), "red116")
  rng = np.random.default_rng(0)
  rows = rng.choice(rng.permutation(len(gt))[:4], (4, BATCH))  # 4 GMs: quick to learn
  yy, xx = np.mgrid[:SIZE, :SIZE]
  batches = []
  for r in rows:  # an image pattern per GM row, so that labels can be learnt from images
    freq = (r % 7 + 1)[:, None, None, None]
    image = np.sin(2 * np.pi * freq * (xx + yy)[None, ..., None] / SIZE) + rng.normal(
        0, 0.3, (BATCH, SIZE, SIZE, 3))
    batches.append({"image": image.astype(np.float32), "net": gt.net[r], "loss": gt.loss[r],
                    "loss_group": gt.loss_group[r], "gm_row": r.astype(np.int32),
                    "mask": np.ones(BATCH, bool)})
  model = model_lib.create_model(config, gt.space, axis_name=sharding.AXIS)
  mesh1 = sharding.make_mesh(jax.devices()[:1])
  tx = optax.sgd(0.01)  # the state's optimiser for the parity tests: params move by the gradient
  state = steps.create_train_state(jax.random.key(0), model, tx, (SIZE, SIZE, 3), mesh1)
  return dict(config=config, space=gt.space, weights=labels.class_weights(gt), model=model,
              batches=batches, tx=tx, host_state=jax.device_get(state))


def _run(setup, mesh, num_steps, tx=None):
  """`num_steps` steps on `mesh` from the same initial state, the step compiled once.

  Returns (state, host metrics of every step, compiled HLO text)."""
  tx = tx or setup["tx"]
  task = tasks.get(setup["config"], setup["space"], setup["weights"])
  step_fn = steps.make_train_step(task, setup["model"], tx, mesh)
  replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
  state = jax.device_put(setup["host_state"], replicated)
  if tx is not setup["tx"]:
    state = state.replace(opt_state=jax.device_put(tx.init(setup["host_state"].params),
                                                   replicated))
  rng = jax.device_put(jax.random.key(1), replicated)
  batches = [jax.device_put(b, sharded) for b in setup["batches"]]
  compiled = step_fn.lower(state, batches[0], rng).compile()
  history = []
  for i in range(num_steps):
    state, metrics = compiled(state, batches[i % len(batches)], rng)
    history.append(metrics)
  return state, jax.device_get(history), compiled.as_text()


@pytest.fixture(scope="module")
def parity(setup):
  """One step on the same global batch on 1 and on 8 devices."""
  return (_run(setup, sharding.make_mesh(jax.devices()[:1]), 1),
          _run(setup, sharding.make_mesh(), 1))


def test_eight_devices_take_the_one_device_step(parity):
  """BatchNorm statistics, the spectrum max and the class-weighted means are batch-global,
  so 8 devices give the 1-device metrics, gradients and statistics."""
  (s1, (m1,), _), (s8, (m8,), _) = parity
  assert len(m1) > 30  # every loss term
  for k in m1:
    np.testing.assert_allclose(m8[k], m1[k], rtol=2e-5, atol=1e-6, err_msg=k)
  # SGD: a parameter difference is a gradient difference (times the learning rate).
  for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(s8.params), strict=True):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)
  for a, b in zip(jax.tree.leaves(s1.batch_stats), jax.tree.leaves(s8.batch_stats), strict=True):
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-6)
  assert int(s8.step) == 1
  assert len(s8.params["fen"]["conv_0"]["kernel"].sharding.device_set) == 8


def test_compiled_step_gathers_no_batch(parity):
  """The FFT runs on each device's own examples: no all-gather in the 8-device program, only
  all-reduces (BatchNorm moments, loss sums, spectrum max)."""
  hlo8 = parity[1][2]
  assert "fft(" in hlo8 and "all-reduce" in hlo8
  assert "all-gather" not in hlo8


def test_loss_goes_down(setup):
  config = setup["config"].copy_and_resolve_references()
  config.optim.lr = 3e-3
  _, history, _ = _run(setup, sharding.make_mesh(jax.devices()[:1]), 32,
                       tx=steps.make_optimizer(config.optim))
  assert all(np.isfinite(h["loss"]) for h in history)
  first = {k: np.mean([h[k] for h in history[:4]]) for k in ("loss", "fen", "parsing")}
  last = {k: np.mean([h[k] for h in history[-4:]]) for k in ("loss", "fen", "parsing")}
  for k in first:
    assert last[k] < 0.8 * first[k], (k, first[k], last[k])


# --- the loop: checkpoints, resumption, NaN guard, workdir ------------------------------------

def _latest_variables(workdir, config, mesh):
  model = model_lib.create_model(config, labels.get_space(config.data.space))
  tx = steps.make_optimizer(config.optim)
  target = steps.abstract_train_state(jax.random.key(0), model, tx,
                                      (config.image_size,) * 2 + (3,), mesh)
  return checkpointing.restore_variables(
      workdir, {"params": target.params, "batch_stats": target.batch_stats}, "latest")


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, red116_dir):
  """The tiny run, crashed by a NaN image at step 3 and then rerun in the same workdir."""
  uninterrupted, config = tiny_run.trained(tmp_path_factory, red116_dir)
  assert (config.num_train_steps, config.checkpoint_every_steps) == (4, 2)
  workdir = str(tmp_path_factory.mktemp("interrupted"))
  clean = input_pipeline.Datasets.train_iter

  def nan_at_step_3(data, start_step=0):
    for i, batch in enumerate(clean(data, start_step), start=start_step):
      if i == 2:  # the batch of step 3
        batch["image"] = jnp.full_like(batch["image"], jnp.nan)
      yield batch

  with pytest.MonkeyPatch.context() as mp:
    mp.setattr(input_pipeline.Datasets, "train_iter", nan_at_step_3)
    with pytest.raises(FloatingPointError) as crash:
      train_lib.train_and_evaluate(config, workdir)
  steps_after_crash = sorted(int(d) for d in os.listdir(os.path.join(workdir, "latest"))
                             if d.isdigit())
  results = train_lib.train_and_evaluate(config, workdir)
  return dict(uninterrupted=uninterrupted, workdir=workdir, config=config, results=results,
              crash=str(crash.value), steps_after_crash=steps_after_crash)


def test_nan_guard_names_step_and_terms_and_saves_nothing_bad(interrupted):
  message = interrupted["crash"]
  assert message.startswith("non-finite training metrics at step 3: ")
  for term in ("loss=nan", "fen=nan", "fen/mag=nan", "parsing=nan", "grad_norm=nan"):
    assert term in message
  assert "the last good checkpoint is step 2" in message
  assert interrupted["steps_after_crash"] == [2]  # step 4 (after the NaN) was never saved


def test_restart_ends_with_the_uninterrupted_parameters(interrupted):
  """Resumed from step 2 (state, step counter, rng, data position), on 1 device, the restart
  ends where the uninterrupted 8-device run ended."""
  mesh = sharding.make_mesh(jax.devices()[:1])
  config = interrupted["config"]
  a, progress_a = _latest_variables(interrupted["uninterrupted"], config, mesh)
  b, progress_b = _latest_variables(interrupted["workdir"], config, mesh)
  assert progress_a["step"] == progress_b["step"] == 4
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    assert x.sharding.mesh.size == 1
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-6, atol=0)


def test_workdir_holds_what_inference_needs(interrupted):
  workdir, results = interrupted["workdir"], interrupted["results"]
  for name in ("config.json", "labels.json", "labels", "results.json", "report", "best"):
    assert os.path.exists(os.path.join(workdir, name)), name
  assert any(f.startswith("events.out.tfevents") for f in os.listdir(workdir))
  assert results["last_step"] == 4 and results["selected_step"] in (2, 4)
  assert results["val_selected"]["step"] == results["selected_step"]
  assert results["report"]["split"] == "test"
  assert results["report"]["gms"] == list(tiny_run.TEST_GMS)
  table = report.results_table(results)
  assert f"| test | best ({results['selected_step']}) |" in table and "deep parser (ours)" in table
  config = workdir_lib.load_config(workdir)
  assert config.to_dict() == json.loads(interrupted["config"].to_json())


def test_train_py_reports_bad_flags():
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  for flag, message in (("--config.data.nonexistent=1", "the config has no field 'nonexistent'"),
                        ("--config.batch_size=abc", "--config.batch_size=abc: invalid literal"),
                        ("--config.model.parser_widths=abc", "--config.model.parser_widths=abc: "
                         "expected a tuple of int such as (32, 64, 128, 256, 512), got ('abc',)")):
    out = subprocess.run([sys.executable, "train.py", flag], capture_output=True, text=True,
                         cwd=repo, timeout=120)
    assert out.returncode == 1
    assert message in out.stderr and "Traceback" not in out.stderr
