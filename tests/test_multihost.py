"""Multi-process JAX jobs on this machine (revgm_jax.runtime.launch_local, 2 processes x 2 CPU devices).

The tests that start jobs are marked `multihost` (`pytest -m multihost`) and are part of the
default suite. Every job has a timeout: a hung job fails its test instead of the suite.
"""

import glob
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from support import gm_folders
from support import tiny_run
from revgm_jax import config_utils, sharding
from revgm_jax.runtime import distributed, stop_signal, workdir_lock
from revgm_jax.zoo import build, presets

pytestmark = pytest.mark.e2e  # every test trains or starts processes

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = os.path.join(REPO, "tests", "support", "multihost_job.py")
# 4 random-init GMs: two per process (trained GMs only add training time to the same path).
ZOO = {"num_random_gms": 4, "num_trained_gms": 0, "images_per_gm": 4, "real_images": 4}
_TIMING = {"seconds", "gm_seconds", "last_run_wall_seconds"}


def launch_cmd(*command: str, processes: int = 2, devices: int = 2, grace_s: float = 10.0):
  """`command` (a .py script and its arguments) as a job of `processes` x `devices`."""
  return [sys.executable, "-m", "revgm_jax.runtime.launch_local", f"--processes={processes}",
          f"--devices_per_process={devices}", f"--grace_s={grace_s}", "--", *command]


def launch(*job_args: str, grace_s: float = 10.0, timeout: float = 180.0, processes: int = 2,
           devices: int = 2):
  """Runs tests/multihost_job.py as a job of `processes` x `devices`: (exit status, stdout,
  stderr, seconds)."""
  cmd = launch_cmd(JOB, *job_args, processes=processes, devices=devices, grace_s=grace_s)
  env = {**os.environ, "PYTHONPATH": os.pathsep.join(  # the job imports `support`
      [REPO, os.path.join(REPO, "tests"), os.environ.get("PYTHONPATH", "")])}
  start = time.monotonic()
  with subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True, start_new_session=True) as p:
    try:
      out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
      os.killpg(p.pid, signal.SIGKILL)  # the launcher and the processes it started
      out, err = p.communicate()
      pytest.fail(f"the job ran over {timeout} s:\n{out}\n{err}")
  return p.returncode, out, err, time.monotonic() - start


def test_half_given_distributed_settings_name_the_missing_fields(monkeypatch):
  for var in distributed.ENV.values():
    monkeypatch.delenv(var, raising=False)
  cfg = config_utils.load_config(tiny_run.DEFAULT).distributed
  assert not distributed.initialize(cfg)  # the defaults: a single-process run
  cfg.coordinator_address = "10.0.0.1:1234"
  with pytest.raises(ValueError, match=r"coordinator_address set but not num_processes, "
                     "process_id"):
    distributed.initialize(cfg)
  monkeypatch.setenv(distributed.ENV["process_id"], "1")
  with pytest.raises(ValueError, match=r"REVGM_PROCESS_ID.*process_id set but not "
                     "coordinator_address, num_processes"):
    distributed.initialize()


@pytest.mark.multihost
def test_two_processes_form_one_job_with_cross_process_collectives():
  status, out, err, _ = launch("collectives", timeout=120)
  assert status == 0, err
  assert "[p0] collectives ok" in out and "[p1] collectives ok" in out


@pytest.mark.multihost
@pytest.mark.parametrize("how, status", [("exit3", 3), ("raise", 1)])
def test_a_failed_process_fails_the_job_and_stops_the_others(how, status):
  code, _, err, seconds = launch("fail", how, grace_s=1.0, timeout=120)
  assert code == status, err
  assert f"launch_local: p1 failed with exit status {status}" in err
  assert seconds < 90  # not JAX's 300 s shutdown barrier, nor p0's endless sleep
  if how == "raise":
    assert "[p1] RuntimeError: process 1 fails" in err


def _zoo_files(out_dir: str) -> dict[str, object]:
  """Relative path -> bytes (JSON records: the data without build times) of a built zoo."""
  files = {}
  for root, _, names in os.walk(out_dir):
    for name in names:
      if name.startswith(".lock-"):
        continue
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        data = f.read()
      if name.endswith(".json"):
        data = {k: v for k, v in json.loads(data).items() if k not in _TIMING}
      files[os.path.relpath(path, out_dir)] = data
  return files


@pytest.mark.multihost
def test_processes_build_a_zoo_together_equal_to_one_process_build(tmp_path):
  cfg = presets.get_preset("tiny")
  cfg.update(ZOO)
  reference = _zoo_files(build.build_zoo(cfg, str(tmp_path / "one_process")))
  status, out, err, _ = launch("zoo", str(tmp_path), json.dumps(ZOO), timeout=240)
  assert status == 0, err
  shared = tmp_path / "shared"
  assert _zoo_files(str(shared)) == reference
  finished = [line[:4] for line in out.splitlines() if f") at {shared}:" in line]
  assert finished == ["[p0]"]  # only process 0 wrote the shared files
  assert f"[p0] zoo tiny at {shared} is complete (same config): nothing to do" in out
  for i in range(2):  # on a disk of its own, each process also made the other's GMs
    assert _zoo_files(str(tmp_path / f"disk_{i}")) == reference


# --- training across processes ----------------------------------------------------------------
# Two input shards in every run: the global batches, and so the runs, do not depend on how many
# processes read them. Runs: 1 process x 4 devices (the reference); 2 x 2 killed before step 4
# (p1 SIGKILLed); that workdir continued by train.py on 2 x 2, whose launcher gets a SIGTERM (a
# scheduler's stop) once both processes have resumed; that workdir finished by 1 x 4; the
# reference evaluated by 2 x 2.

# Adam's first steps are sign-like (m / sqrt(v) = +-1): round-off in a near-zero gradient would
# flip a whole step. A large eps makes them proportional to the gradient, so the comparison
# measures the layouts' round-off instead of amplifying it.
TRAIN = {"eval.figures": False, "optim.eps": 1.0, "optim.lr": 0.01}
OVERRIDES = {"data.input_shards": 2, "data.shards_per_gm": 2, **TRAIN}


def _job(tmp_path, red116_dir, name, processes, **spec):
  root = tmp_path / "data"
  if not (root / "images").is_dir():
    gm_folders.write_layout(root / "images", tiny_run.GMS, tiny_run.IMAGES_PER_GM)
  spec = {"root": str(root), "labels": str(red116_dir), "workdir": str(tmp_path / name),
          "overrides": OVERRIDES, **spec}
  return launch("train", json.dumps(spec), processes=processes, devices=4 // processes,
                timeout=300)


def _train_py(tmp_path, red116_dir, workdir, **run):
  """train.py of the jobs' config on 2 x 2: (exit status, output) of `tiny_run.run`."""
  config = tiny_run.config(str(tmp_path / "data"), red116_dir)
  return tiny_run.run(launch_cmd("train.py", *tiny_run.train_py_args(config, **OVERRIDES),
                                 f"--workdir={workdir}"), timeout=300, **run)


def _resumed_everywhere(workdir, processes=2):
  """True once every process of a train.py job has logged that it resumed (its signal handler
  is set by then)."""
  logs = glob.glob(os.path.join(workdir, "train.*.log.INFO.*"))
  return sum("resumed from step" in pathlib.Path(p).read_text() for p in logs) == processes


@pytest.fixture(scope="module")
def runs(tmp_path_factory, red116_dir):
  tmp = tmp_path_factory.mktemp("multihost_train")
  out = {"reference": _job(tmp, red116_dir, "reference", 1),
         "killed": _job(tmp, red116_dir, "killed", 2, kill_at=4)}
  out["stopped"] = _train_py(tmp, red116_dir, tmp / "killed", sig=signal.SIGTERM,
                             until=lambda _: _resumed_everywhere(tmp / "killed"))
  out["resumed"] = _job(tmp, red116_dir, "killed", 1)
  cmd = launch_cmd("eval.py", f"--workdir={tmp / 'reference'}", f"--out_dir={tmp / 'eval_2x2'}")
  start = time.monotonic()
  e = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
  out["eval"] = (e.returncode, e.stdout, e.stderr, time.monotonic() - start)
  return tmp, out


def _variables(workdir, step):
  import jax  # pylint: disable=g-import-not-at-top
  from revgm_jax import inference  # pylint: disable=g-import-not-at-top
  loaded = inference.load(os.path.join(workdir, "latest", str(step)),
                          mesh=sharding.make_mesh(jax.devices()[:1]))
  return jax.tree.map(np.asarray, loaded.variables)


def _assert_close(a, b):
  """Equal to float32 round-off: an all-reduce across processes sums in another order."""
  import jax  # pylint: disable=g-import-not-at-top
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.multihost
def test_killed_process_stops_the_job_and_its_checkpoint_resumes_in_one_process(runs):
  tmp, out = runs
  for name in ("reference", "resumed"):
    status, stdout, stderr, _ = out[name]
    assert status == 0 and "[p0] train ok" in stdout, stderr
  status, _, stderr, seconds = out["killed"]
  assert status == 128 + signal.SIGKILL  # as a shell reports a process killed by SIGKILL
  assert f"launch_local: p1 failed with exit status {128 + signal.SIGKILL}" in stderr
  assert seconds < 200  # p0, blocked in a collective, was stopped instead of hanging
  # 2 processes x 2 devices took the same 2 steps as 1 process x 4 devices ...
  _assert_close(_variables(tmp / "killed", 2), _variables(tmp / "reference", 2))
  # ... and resumed from there (by train.py on 2 x 2 to its SIGTERM, then by 1 process), the
  # run ends where the reference ended.
  _assert_close(_variables(tmp / "killed", 4), _variables(tmp / "reference", 4))
  a = json.loads((tmp / "reference" / "results.json").read_text())
  b = json.loads((tmp / "killed" / "results.json").read_text())
  for key in ("cont_l1", "net_f1", "loss_f1", "loss"):
    assert b["val_last"][key] == pytest.approx(a["val_last"][key], rel=1e-4), key


@pytest.mark.multihost
def test_sigterm_to_the_launcher_stops_every_process_at_the_same_saved_step(runs):
  tmp, out = runs
  status, output = out["stopped"]
  assert status == stop_signal.EXIT_STOPPED, output
  assert "launch_local: SIGTERM: passed on to every process as SIGTERM" in output
  saved = dict(re.findall(r"\[(p\d)\] .*SIGTERM: saved step (\d+), stopping", output))
  assert sorted(saved) == ["p0", "p1"] and len(set(saved.values())) == 1, output
  step = int(saved["p0"])
  assert 2 < step <= 4 and (tmp / "killed" / "latest" / str(step)).is_dir()  # resumed from 2
  assert (f"[p0] stopped by SIGTERM: saved step {step} in {tmp / 'killed'}; rerun the same "
          "command to continue") in output
  assert "Traceback" not in output
  assert "[p0] train ok" in out["resumed"][1]  # and the run ends as the reference (above)


@pytest.mark.multihost
def test_a_refused_workdir_stops_every_process_with_the_same_line(tmp_path, red116_dir):
  """Process 0 holds the lock and decides; the others raise its error instead of training on
  into a collective (they hung for 30 s, then failed with a traceback)."""
  workdir = tmp_path / "busy"
  with workdir_lock.hold(str(workdir)):
    status, output = _train_py(tmp_path, red116_dir, workdir)
  assert status == 2, output
  for p in ("p0", "p1"):
    assert (f"[{p}] train.py: workdir {workdir} is in use by another run: pid {os.getpid()} on "
            "host ") in output
  assert "Traceback" not in output


@pytest.mark.multihost
def test_two_processes_evaluate_a_one_process_checkpoint_to_the_same_metrics(runs):
  tmp, out = runs
  status, stdout, stderr, _ = out["eval"]
  assert status == 0, stderr
  a = json.loads((tmp / "reference" / "report" / "metrics.json").read_text())
  b = json.loads((tmp / "eval_2x2" / "metrics.json").read_text())
  assert b["num_images"] == a["num_images"] and b["step"] == a["step"]
  for method, m in a["methods"].items():
    for key in ("cont_l1", "net_f1", "loss_f1", "loss_auc"):
      assert b["methods"][method][key] == pytest.approx(m[key], rel=1e-4, abs=1e-6), (method, key)
  assert b["k_images"]["model"]["2"]["net_f1"] == pytest.approx(
      a["k_images"]["model"]["2"]["net_f1"], rel=1e-4)
