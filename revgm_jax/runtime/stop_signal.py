"""SIGTERM and SIGINT stop a training run cleanly: the step finishes, is saved, the run exits.

A scheduler (Slurm, Kubernetes, a cloud's preemption) sends SIGTERM some seconds before it
kills a job; Ctrl-C sends SIGINT. Within `catch()` either one sets a flag instead of ending the
process; the training loop asks `make_check(mesh)` after each step, saves the step when told to
and returns {"preempted_at": step, ...}, and train.py exits with EXIT_STOPPED. A second signal
of the same kind ends the process at once, as without `catch()`.

In a multi-process job the signal may reach one process only, or each at another step, yet
all of them must save the same step (they write one checkpoint together). There the check is a
one-element all-reduce of the flags over the mesh, dispatched after each step and read after
the next one (as the loop reads metrics: it never waits on the device), so every process gets
the same answer at the same step: stop at the step after one at which any process had a signal.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from revgm_jax import sharding

EXIT_STOPPED = 3  # train.py's exit status after a signal, the step saved
SIGNALS = (signal.SIGTERM, signal.SIGINT)
_DEFAULT = {signal.SIGTERM: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}
_received: list[str] = []
_previous: dict = {}


def _handler(signum, frame) -> None:  # pylint: disable=unused-argument
  name = signal.Signals(signum).name
  _received.append(name)
  signal.signal(signum, _DEFAULT[signum])  # a second one acts at once
  logging.warning("%s received: finishing the current step, saving it, then stopping", name)


def received() -> str | None:
  """The name of the first signal caught inside `catch()` ("SIGTERM", "SIGINT"), else None."""
  return _received[0] if _received else None


def release() -> None:
  """From here on the signals act at once again (the previous handlers)."""
  while _previous:
    signum, handler = _previous.popitem()
    signal.signal(signum, _DEFAULT[signum] if handler is None else handler)


@contextlib.contextmanager
def catch():
  """SIGTERM/SIGINT set `received()` instead of ending the process (main thread only: Python
  delivers signals there)."""
  _received.clear()
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  for signum in SIGNALS:
    _previous[signum] = signal.signal(signum, _handler)
  try:
    yield
  finally:
    release()


def make_check(mesh: jax.sharding.Mesh) -> Callable[[], bool]:
  """() -> whether to stop after the step just dispatched, the same on every process.

  Call it once per step on every process. In a single process: whether a signal was received.
  In a multi-process job: whether any process had received one when the previous step's check
  was made (False at the first step).
  """
  if jax.process_count() == 1:
    return lambda: received() is not None
  flag_sharding = sharding.batch_sharded(mesh)  # one flag per device
  any_ = jax.jit(jnp.max, out_shardings=sharding.replicated(mesh))
  local_devices = len(mesh.local_devices)
  last = []

  def check() -> bool:
    flags = np.full(local_devices, received() is not None, np.int32)
    last.append(any_(jax.make_array_from_process_local_data(flag_sharding, flags)))
    return len(last) > 1 and bool(sharding.to_host(last.pop(0)))

  return check
