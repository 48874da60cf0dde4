r"""Weak scaling of our step (`throughput.py --scaling`): the per-device batch fixed, 1-8 devices.

On CPU each point is a worker process with its own simulated device count (XLA_FLAGS must be
set before jax is imported); `weak_scaling` starts this file as

  python benchmarks/weak_scaling.py '{"devices": 2, "image": 64, "per_device_batch": 4, \
      "windows": 5, "steps": 3}'

which prints the point as its last line of JSON. On GPU/TPU the meshes span the first 1, 2, 4,
8 real devices of this process.
"""

import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script, the worker imports benchmarks.* from the repo
  sys.path.insert(0, REPO)

from benchmarks import jax_step, step_settings  # noqa: E402


def scaling_worker(devices: int, image: int, per_device_batch: int, windows: int,
                   steps: int) -> dict:
  """One weak-scaling point (in a subprocess on CPU, where XLA_FLAGS fixed the device count)."""
  import jax
  import numpy as np
  config = step_settings.bench_config(image, per_device_batch * devices, "float32")
  ours = jax_step.JaxStep(config, jax.devices()[:devices], count_flops=False)
  ours.run(2)
  seconds = []
  for _ in range(windows):
    t = time.perf_counter()
    ours.run(steps)
    seconds.append((time.perf_counter() - t) / steps)
  ips = config.batch_size / float(np.median(seconds))
  return {"devices": devices, "global_batch": config.batch_size, "images_per_s": ips,
          "images_per_s_per_device": ips / devices, "compile_s": ours.compile_s,
          "step_s_median": float(np.median(seconds)),
          "step_s_spread": float((max(seconds) - min(seconds)) / np.median(seconds))}


def weak_scaling(size: tuple[int, int], windows: int, steps: int, platform_name: str) -> list:
  """Points for 1, 2, 4, 8 devices at `size` = (image, per-device batch)."""
  image, per_device = size
  points = []
  if platform_name == "cpu":
    for n in (1, 2, 4, 8):
      env = dict(os.environ, XLA_FLAGS=" ".join(
          [os.environ.get("XLA_FLAGS", ""), f"--xla_force_host_platform_device_count={n}"]))
      spec = {"devices": n, "image": image, "per_device_batch": per_device,
              "windows": windows, "steps": steps}
      cmd = [sys.executable, os.path.abspath(__file__), json.dumps(spec)]
      out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
      if out.returncode != 0:
        raise RuntimeError(f"scaling worker for {n} devices failed:\n{out.stderr[-3000:]}")
      points.append(json.loads(out.stdout.strip().splitlines()[-1]))
      print(f"  scaling: {n} simulated devices: {points[-1]['images_per_s']:.2f} img/s",
            flush=True)
  else:
    import jax
    for n in (1, 2, 4, 8):
      if n <= jax.device_count():
        points.append(scaling_worker(n, image, per_device, windows, steps))
  return points


if __name__ == "__main__":
  print(json.dumps(scaling_worker(**json.loads(sys.argv[1]))))
