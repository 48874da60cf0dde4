"""Real process kills of train.py (SIGTERM, SIGKILL) and a second writer, on the tiny run.

Each interrupted workdir is continued by rerunning the same command; the end result must be
bit-identical to the uninterrupted in-process run of `tiny_run.trained` (same 8 CPU devices:
conftest's XLA_FLAGS reach the subprocesses through the environment).
"""

import json
import os
import signal

import jax
import numpy as np
import pytest

from support import tiny_run
from revgm_jax import checkpointing, labels, sharding, steps
from revgm_jax.runtime import stop_signal, workdir_lock
from revgm_jax import workdir as workdir_lib
from revgm_jax.models import model as model_lib

pytestmark = pytest.mark.e2e  # every test trains or starts processes


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, red116_dir):
  return tiny_run.trained(tmp_path_factory, red116_dir)


def _train(config, workdir, kill_at: str | None = None, sig=signal.SIGKILL):
  """Runs train.py; sends `sig` once its output shows `kill_at`. Returns (exit status, output)."""
  return tiny_run.run(tiny_run.train_py(config, workdir), sig=sig,
                      until=kill_at and (lambda out: kill_at in out))


def _latest(workdir, config, step):
  mesh = sharding.make_mesh()
  model = model_lib.create_model(config, labels.get_space(config.data.space))
  target = steps.abstract_train_state(jax.random.key(0), model,
                                      steps.make_optimizer(config.optim),
                                      (config.image_size,) * 2 + (3,), mesh)
  variables, progress = checkpointing.restore_variables(
      workdir, {"params": target.params, "batch_stats": target.batch_stats}, "latest", step)
  return jax.tree.map(np.asarray, variables), progress


def test_sigterm_saves_sigkill_loses_nothing_and_reruns_end_bit_identical(tiny, tmp_path):
  """SIGTERM as training starts: the step finishes, is saved, exit 3. The same command again,
  SIGKILLed as the last validation is printed (its best and latest checkpoint writes and the
  test evaluation follow). A third run finishes: parameters and report as uninterrupted."""
  uninterrupted, config = tiny
  workdir = str(tmp_path / "w")

  status, out = _train(config, workdir, kill_at="train:", sig=signal.SIGTERM)
  assert status == stop_signal.EXIT_STOPPED, out
  assert "SIGTERM received: finishing the current step, saving it, then stopping" in out
  saved = int(out.split("stopped by SIGTERM: saved step ")[1].split()[0])
  assert 1 <= saved < config.num_train_steps
  assert "Traceback" not in out and "rerun the same command to continue" in out
  assert saved in [int(d) for d in os.listdir(os.path.join(workdir, "latest")) if d.isdigit()]

  status, out = _train(config, workdir, kill_at="step 4 val:")
  assert status == -signal.SIGKILL, out
  assert f"resumed from step {saved}" in open(os.path.join(workdir, "train.INFO")).read()
  assert not os.path.exists(workdir_lib.results_path(workdir))

  status, out = _train(config, workdir)
  assert status == 0, out
  with open(workdir_lib.results_path(uninterrupted)) as f, \
       open(workdir_lib.results_path(workdir)) as g:
    a, b = json.load(f), json.load(g)
  assert b["report"]["methods"] == a["report"]["methods"]
  assert (b["selected_step"], b["val_last"]) == (a["selected_step"], a["val_last"])
  (va, pa), (vb, pb) = _latest(uninterrupted, config, 4), _latest(workdir, config, 4)
  assert pa["step"] == pb["step"] == 4
  for x, y in zip(jax.tree.leaves(va), jax.tree.leaves(vb), strict=True):
    np.testing.assert_array_equal(y, x)


def test_a_second_writer_is_refused_with_the_holders_pid(tiny, tmp_path):
  _, config = tiny
  workdir = str(tmp_path / "busy")
  with workdir_lock.hold(workdir):
    status, out = _train(config, workdir)
  assert status == 2, out
  assert f"is in use by another run: pid {os.getpid()} on host " in out
  assert "Traceback" not in out and not os.path.exists(os.path.join(workdir, "latest"))
