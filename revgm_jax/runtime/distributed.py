"""Joining a multi-process JAX job: from a scheduler's environment or from explicit settings.

One job runs as many processes (a TPU pod, several GPU nodes, or `revgm_jax.runtime.launch_local` on
one machine) that see one global set of devices. Each must call `initialize` before its first
JAX computation. Sources of the coordinator address, process count and process id, by
precedence:
  1. config.distributed.{coordinator_address, num_processes, process_id}: all three or none;
  2. $REVGM_COORDINATOR_ADDRESS, $REVGM_NUM_PROCESSES, $REVGM_PROCESS_ID (launch_local sets
     them): all three or none;
  3. config.distributed.multihost=True with neither: JAX detects them from the scheduler
     (Cloud TPU, SLURM, Open MPI, Kubernetes).
Otherwise the job is a single process and `initialize` does nothing.

In a multi-process job an uncaught exception ends the process at once (status 1): Python's
normal exit would wait in JAX's shutdown barrier for the other processes (5 minutes), which
wait for this one in their next collective, so the job would hang instead of failing. A failed
process should therefore raise (or os._exit), not sys.exit(n), which still waits; a decision
that stops the run is made alike on every process (`from_process_0`, `process_values`).

JAX's preemption service is turned off: it installs a C SIGTERM handler whose agreed step never
comes for a notice received before the first step or in a run resumed past step 1.
`revgm_jax.runtime.stop_signal` catches SIGTERM itself, on every process, and agrees on the step.
"""

from __future__ import annotations

import json
import os
import sys

import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

FIELDS = ("coordinator_address", "num_processes", "process_id")
ENV = {"coordinator_address": "REVGM_COORDINATOR_ADDRESS",
       "num_processes": "REVGM_NUM_PROCESSES", "process_id": "REVGM_PROCESS_ID"}
_UNSET = {"coordinator_address": "", "num_processes": 0, "process_id": -1}  # configs/default.py


def _explicit(values: dict, source: str, hint: str) -> dict | None:
  """The three settings of one source: all set, none set (None), or a clear error."""
  unset = [k for k in FIELDS if values[k] == _UNSET[k]]
  if len(unset) == len(FIELDS):
    return None
  if unset:
    given = [k for k in FIELDS if k not in unset]
    raise ValueError(f"{source}: {', '.join(given)} set but not {', '.join(unset)}; {hint}")
  if not 0 <= values["process_id"] < values["num_processes"]:
    raise ValueError(f"{source}: process_id={values['process_id']} must be in "
                     f"0 .. num_processes - 1 = {values['num_processes'] - 1}")
  return values


def _from_env() -> dict:
  out = dict(_UNSET)
  for key, var in ENV.items():
    text = os.environ.get(var, "")
    if text:
      try:
        out[key] = type(_UNSET[key])(text)
      except ValueError:
        raise ValueError(f"${var}={text!r} is not a valid {key}") from None
  return out


def _exit_on_uncaught_exception():
  """Skips JAX's shutdown barrier after an uncaught exception (see the module docstring)."""
  previous = sys.excepthook

  def hook(*exc_info):
    previous(*exc_info)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(1)  # pylint: disable=protected-access

  sys.excepthook = hook


def initialize(cfg: ml_collections.ConfigDict | None = None) -> bool:
  """Joins the multi-process job that `cfg` (config.distributed) or the environment describes.

  Returns True when this process is part of a multi-process job (also when JAX was
  initialised before), False for a single-process run. Call it before any JAX computation.
  """
  if jax.distributed.is_initialized():
    return True
  cfg = cfg if cfg is not None else ml_collections.ConfigDict()
  detect = "or none to let JAX detect them (Cloud TPU, SLURM, Open MPI, Kubernetes)"
  settings = (_explicit({k: cfg.get(k, _UNSET[k]) for k in FIELDS}, "config.distributed",
                        f"set all three (--config.distributed.<field>=...) {detect}")
              or _explicit(_from_env(), "environment " + ", ".join(f"${v}" for v in ENV.values()),
                           f"set all three {detect}"))
  ids = cfg.get("local_device_ids", "")
  try:
    device_ids = [int(i) for i in ids.split(",") if i.strip()] or None
  except ValueError:
    raise ValueError(f"config.distributed.local_device_ids={ids!r}: expected comma-separated "
                     "integers such as '0,1'") from None
  jax.config.update("jax_enable_preemption_service", False)
  if settings:
    jax.distributed.initialize(**settings, local_device_ids=device_ids,
                               cluster_detection_method="deactivate")
  elif cfg.get("multihost", False):
    try:
      jax.distributed.initialize(local_device_ids=device_ids)
    except ValueError as e:
      raise ValueError(
          "config.distributed.multihost=True but JAX found no cluster to join (Cloud TPU, SLURM, "
          "Open MPI, Kubernetes); set --config.distributed.coordinator_address, num_processes "
          "and process_id, or start the job with python -m revgm_jax.runtime.launch_local "
          f"({e})") from None
  else:
    return False
  _exit_on_uncaught_exception()
  return True


def from_process_0(value):
  """Process 0's `value` (anything JSON holds) on every process; the others' is ignored."""
  if jax.process_count() == 1:
    return value
  data = np.frombuffer(json.dumps(value).encode(), np.uint8)
  size = int(multihost_utils.broadcast_one_to_all(np.int32(data.size)))
  data = data if jax.process_index() == 0 else np.zeros(size, np.uint8)
  return json.loads(bytes(multihost_utils.broadcast_one_to_all(data)).decode())


def process_values(value: int) -> list[int]:
  """Every process's `value`, in process order (one all-gather)."""
  if jax.process_count() == 1:
    return [value]
  return [int(v) for v in multihost_utils.process_allgather(np.int32(value))]
