"""Multi-process JAX jobs on this machine (revgm_jax.launch_local, 2 processes x 2 CPU devices).

The tests that start jobs are marked `multihost` (`pytest -m multihost`) and are part of the
default suite. Every job has a timeout: a hung job fails its test instead of the suite.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from revgm_jax import distributed
from revgm_jax.zoo import build, presets
import tiny_run

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JOB = os.path.join(REPO, "tests", "multihost_job.py")
# 4 random-init GMs: two per process (trained GMs only add training time to the same path).
ZOO = {"num_random_gms": 4, "num_trained_gms": 0, "images_per_gm": 4, "real_images": 4}
_TIMING = {"seconds", "gm_seconds", "last_run_wall_seconds"}


def launch(*job_args: str, grace_s: float = 10.0, timeout: float = 180.0):
  """Runs tests/multihost_job.py as a 2-process job: (exit status, stdout, stderr, seconds)."""
  cmd = [sys.executable, "-m", "revgm_jax.launch_local", "--processes=2",
         "--devices_per_process=2", f"--grace_s={grace_s}", "--", JOB, *job_args]
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")])}
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
  cfg = tiny_run.default.get_config().distributed
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
