"""SIGTERM and SIGINT stop a training run cleanly: the step finishes, is saved, the run exits.

A scheduler (Slurm, Kubernetes, a cloud's preemption) sends SIGTERM some seconds before it
kills a job; Ctrl-C sends SIGINT. Within `catch()` either one sets a flag that the training loop
reads after each step (`received()`); the loop then saves that step and returns
{"preempted_at": step, ...}, and train.py exits with EXIT_STOPPED. A second signal while the
save runs ends the process at once, as without `catch()`.

In a multi-process job JAX's preemption service catches SIGTERM on every process and the
processes agree on the step to save (orbax's PreemptionCheckpointingPolicy, read through the
same loop test); a flag set on one process alone would make the processes part ways, so there
`catch()` leaves both signals alone (SIGINT: Ctrl-C on `launch_local` stops the job unsaved).
Outside the loop (start-up, the final evaluation) the signals keep their default action:
everything up to the last step is already saved, and rerunning repeats only the evaluation.
"""

from __future__ import annotations

import contextlib
import signal
import threading

from absl import logging

EXIT_STOPPED = 3  # train.py's exit status after a signal or preemption notice, step saved
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
    signal.signal(signum, handler)


@contextlib.contextmanager
def catch(multiprocess: bool = False):
  """SIGTERM/SIGINT set `received()` instead of stopping the process (single process, main
  thread only: Python delivers signals there)."""
  _received.clear()
  if multiprocess or threading.current_thread() is not threading.main_thread():
    yield
    return
  for signum in SIGNALS:
    _previous[signum] = signal.signal(signum, _handler)
  try:
    yield
  finally:
    release()
