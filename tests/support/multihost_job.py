"""One process of the jobs that tests/test_multihost.py starts with revgm_jax.runtime.launch_local.

  multihost_job.py collectives         the job's shape, a cross-process psum and allgather, the
                                       values processes agree on, a stop check
  multihost_job.py fail raise|exit3    p1 raises (or dies with status 3); p0 waits
  multihost_job.py zoo OUT OVERRIDES   a tiny zoo (JSON overrides) built together into OUT/shared
                                       (twice), and into OUT/disk_<i> (disks not shared)
  multihost_job.py train SPEC          `tiny_run`'s training (SPEC: JSON root, labels, workdir,
                                       overrides and kill_at: the last process SIGKILLs itself
                                       before step kill_at, once step kill_at - 2 is on disk)
"""

import json
import os
import signal
import sys
import time

from revgm_jax.runtime import distributed, stop_signal


def collectives():
  import jax  # pylint: disable=g-import-not-at-top
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec as P  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top

  assert (jax.process_count(), jax.device_count(), jax.local_device_count()) == (2, 4, 2)
  mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,))
  local = np.array([d.id for d in jax.local_devices()], np.float32)  # this process's rows
  x = jax.make_array_from_process_local_data(NamedSharding(mesh, P("data")), local)
  total = jax.jit(jax.shard_map(lambda v: jax.lax.psum(v, "data"), mesh=mesh,
                                in_specs=P("data"), out_specs=P()))(x)
  assert float(total.addressable_data(0)[0]) == sum(d.id for d in jax.devices()), total
  ids = multihost_utils.process_allgather(np.array([jax.process_index()]), tiled=True)
  assert ids.tolist() == [0, 1], ids
  assert distributed.process_values(10 + jax.process_index()) == [10, 11]
  assert distributed.from_process_0({"from": jax.process_index()}) == {"from": 0}
  with stop_signal.catch():  # a SIGTERM to process 1 alone stops both at the same step
    check = stop_signal.make_check(mesh)
    answers = [check()]
    if jax.process_index() == 1:
      os.kill(os.getpid(), signal.SIGTERM)
    answers += [check(), check()]
  assert answers == [False, False, True], answers
  print("collectives ok", flush=True)


def fail(how: str):
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 1:
    if how == "raise":
      raise RuntimeError("process 1 fails")
    os._exit(3)  # pylint: disable=protected-access
  if how == "raise":
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    multihost_utils.sync_global_devices("never reached by process 1")
  time.sleep(600)  # a process that would never end by itself


def zoo(out: str, overrides: str):
  import jax  # pylint: disable=g-import-not-at-top
  from revgm_jax.zoo import build, presets  # pylint: disable=g-import-not-at-top
  cfg = presets.get_preset("tiny")
  cfg.update(json.loads(overrides))
  for _ in range(2):
    build.build_zoo(cfg, os.path.join(out, "shared"))
  build.build_zoo(cfg, os.path.join(out, f"disk_{jax.process_index()}"))


def train(spec: str):
  import jax  # pylint: disable=g-import-not-at-top
  from support import tiny_run  # pylint: disable=g-import-not-at-top
  from revgm_jax import input_pipeline, train_lib  # pylint: disable=g-import-not-at-top
  spec = json.loads(spec)
  config = tiny_run.config(spec["root"], spec["labels"], **spec["overrides"])
  kill_at = spec.get("kill_at")
  if kill_at and jax.process_index() == jax.process_count() - 1:
    batches = input_pipeline.Datasets.train_iter
    saved = os.path.join(spec["workdir"], "latest", str(kill_at - 2))

    def dies_before_step(data, start_step=0):
      for step, batch in enumerate(batches(data, start_step), start=start_step + 1):
        if step == kill_at:
          deadline = time.monotonic() + 60
          while not os.path.isdir(saved) and time.monotonic() < deadline:
            time.sleep(0.2)  # the async save of step kill_at - 2 finishes in the background
          os.kill(os.getpid(), signal.SIGKILL)
        yield batch

    input_pipeline.Datasets.train_iter = dies_before_step
  train_lib.train_and_evaluate(config, spec["workdir"])
  print("train ok", flush=True)


if __name__ == "__main__":
  assert distributed.initialize(), "not started by revgm_jax.runtime.launch_local"
  {"collectives": collectives, "fail": fail, "zoo": zoo,
   "train": train}[sys.argv[1]](*sys.argv[2:])
