r"""Runs a command as one multi-process JAX job on this machine, each process with CPU devices.

  python -m revgm_jax.runtime.launch_local --processes 2 --devices_per_process 2 -- \
      train.py --config configs/default.py:tiny --config.data.zoo_dir=/tmp/zoo --workdir /tmp/w

Tries multi-host code paths (process-split data, cross-process collectives) without a cluster.
Process i gets $REVGM_COORDINATOR_ADDRESS (127.0.0.1 and a free port), $REVGM_NUM_PROCESSES
and $REVGM_PROCESS_ID, which `revgm_jax.runtime.distributed.initialize` reads, and JAX_PLATFORMS=cpu
with XLA_FLAGS for D host devices. A command starting with a .py script, -m or -c runs with
this Python. Output lines are prefixed [p<i>]. When a process fails, the others get --grace_s
seconds to end (a peer blocked in a collective never would) before they are terminated; the
exit status is then the failed process's. The first SIGTERM or Ctrl-C (SIGINT) to the launcher
goes on to every process as SIGTERM, which a training takes as a stop (each saves the same step
and exits with status 3: revgm_jax/runtime/stop_signal.py), and the launcher waits for them; a
second one terminates them at once.
"""

from __future__ import annotations

import math
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

from absl import app, flags

from revgm_jax.runtime import distributed

_PROCESSES = flags.DEFINE_integer("processes", 2, "Processes in the job.", lower_bound=1)
_DEVICES = flags.DEFINE_integer("devices_per_process", 1, "CPU devices of each process.",
                                lower_bound=1)
_GRACE = flags.DEFINE_float("grace_s", 10.0, "Seconds the other processes get to end after one "
                            "failed, before they are terminated.", lower_bound=0.0)

_DEVICE_FLAG = "--xla_force_host_platform_device_count"
_KILL_AFTER_S = 5.0  # after SIGTERM, when the job is terminated
_print_lock = threading.RLock()  # also taken by the signal handler, in the main thread


def _command(argv: list[str]) -> list[str]:
  if argv[0].endswith(".py") or argv[0] in ("-m", "-c"):
    return [sys.executable, *argv]
  return argv


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _process_env(index: int, count: int, devices: int, address: str) -> dict[str, str]:
  """The environment of process `index`: ours, plus its place in the job and its devices."""
  env = dict(os.environ)
  xla = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(_DEVICE_FLAG)]
  env["XLA_FLAGS"] = " ".join([*xla, f"{_DEVICE_FLAG}={devices}"])
  env["JAX_PLATFORMS"] = "cpu"
  env["PYTHONUNBUFFERED"] = "1"
  env.update({distributed.ENV["coordinator_address"]: address,
              distributed.ENV["num_processes"]: str(count),
              distributed.ENV["process_id"]: str(index)})
  return env


def _say(message: str):
  with _print_lock:
    sys.stderr.write(f"launch_local: {message}\n")
    sys.stderr.flush()


def _pump(stream, prefix: bytes, out):
  """Copies lines of a child's pipe to `out`, each prefixed, whole lines at a time."""
  for line in iter(stream.readline, b""):
    with _print_lock:
      out.buffer.write(prefix + line + (b"" if line.endswith(b"\n") else b"\n"))
      out.flush()
  stream.close()


def _stop(procs: list[subprocess.Popen], why: str):
  """SIGTERM to the processes still running, SIGKILL to those that outlive _KILL_AFTER_S."""
  running = [(i, p) for i, p in enumerate(procs) if p.poll() is None]
  if running:
    _say(f"terminating {', '.join(f'p{i}' for i, _ in running)} ({why})")
  for _, p in running:
    p.terminate()
  deadline = time.monotonic() + _KILL_AFTER_S
  for _, p in running:
    try:
      p.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      p.kill()
      p.wait()


def _status(returncode: int) -> int:
  """A child's exit status as a shell reports it (128 + N when killed by signal N)."""
  return returncode if returncode >= 0 else 128 - returncode


def _pass_on_first_stop(procs: list[subprocess.Popen], stopping: list[str]):
  """The first SIGTERM or SIGINT reaches every process as SIGTERM; the next one raises
  KeyboardInterrupt (the job is terminated)."""
  def handler(signum, frame):  # pylint: disable=unused-argument
    stopping.append(signal.Signals(signum).name)
    for s in (signal.SIGTERM, signal.SIGINT):
      signal.signal(s, signal.default_int_handler)
    _say(f"{stopping[0]}: passed on to every process as SIGTERM (once more to terminate them)")
    for p in procs:
      if p.poll() is None:
        p.terminate()

  for s in (signal.SIGTERM, signal.SIGINT):
    signal.signal(s, handler)


def launch(command: list[str], processes: int, devices: int, grace_s: float) -> int:
  """Runs `command` as a `processes`-process job; returns the exit status for the launcher."""
  address = f"127.0.0.1:{_free_port()}"
  procs, pumps = [], []
  for i in range(processes):
    try:
      p = subprocess.Popen(command, env=_process_env(i, processes, devices, address),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError:
      _stop(procs, "a process could not be started")
      raise
    procs.append(p)
    for stream, out in ((p.stdout, sys.stdout), (p.stderr, sys.stderr)):
      pumps.append(threading.Thread(target=_pump, args=(stream, f"[p{i}] ".encode(), out),
                                    daemon=True))
      pumps[-1].start()
  stopping = []  # the signal passed on to the processes
  _pass_on_first_stop(procs, stopping)
  exits = queue.Queue()  # (index, returncode) in the order the processes end
  for i, p in enumerate(procs):
    threading.Thread(target=lambda i=i, p=p: exits.put((i, p.wait())), daemon=True).start()
  failed, deadline, ended = None, math.inf, 0
  try:
    while ended < processes:
      try:
        i, returncode = exits.get(timeout=0.2)
      except queue.Empty:
        if time.monotonic() > deadline:
          _stop(procs, f"p{failed[0]} failed {grace_s:g} s ago")
          deadline = math.inf
        continue
      ended += 1
      if returncode and failed is None:
        failed = (i, returncode)
        if ended < processes:
          _say(f"p{i} {'ended' if stopping else 'failed'} with exit status "
               f"{_status(returncode)}; the others get {grace_s:g} s to end")
          deadline = time.monotonic() + grace_s
  except KeyboardInterrupt:
    _stop(procs, "interrupted")
    return 130
  for t in pumps:
    t.join(timeout=5.0)
  if failed is None:
    return 0
  _say(f"p{failed[0]} {'ended' if stopping else 'failed'} with exit status "
       f"{_status(failed[1])}")
  return _status(failed[1])


def main(argv: list[str]):
  if len(argv) < 2:
    raise app.UsageError("give the command after --, e.g. python -m revgm_jax.runtime.launch_local "
                         "--processes 2 -- train.py --config configs/default.py:tiny")
  signal.signal(signal.SIGTERM, signal.default_int_handler)  # until the processes run
  try:
    status = launch(_command(argv[1:]), _PROCESSES.value, _DEVICES.value, _GRACE.value)
  except OSError as e:
    _say(f"cannot run {argv[1]!r}: {e.strerror or e}")
    status = 127
  sys.exit(status)


if __name__ == "__main__":
  flags.FLAGS.set_gnu_getopt(False)  # the command's own flags are not ours, even without --
  app.run(main)
