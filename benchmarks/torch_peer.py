r"""The PyTorch peer of `torch_step.py` as a contender of `throughput.py`: one worker per mode.

`TorchWorker` starts the worker, this file, as

  python benchmarks/torch_peer.py '{"image": 64, "batch": 16, "dtype": "float32", \
      "device": "cpu", "threads": 2, "compile": false}'

and then writes a step count per line; the worker answers each with one JSON line.
"""

import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script, the worker imports benchmarks.* from the repo
  sys.path.insert(0, REPO)

from benchmarks import host_resources, step_settings  # noqa: E402


class TorchWorker:
  """The PyTorch peer in its own process (own OpenMP settings and memory), driven over a pipe.

  The main process interleaves its windows with ours, so the timings stay back to back.
  """

  def __init__(self, name: str, spec: dict, env: dict):
    self.name = name
    self.proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), json.dumps(spec)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    self.ready = self._reply()

  def _reply(self) -> dict:
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError(f"the {self.name} worker exited (code {self.proc.wait()}); its stderr "
                         "is above")
    return json.loads(line)

  def run(self, n: int) -> float:
    """Seconds for n steps, synchronised."""
    self.proc.stdin.write(f"{n}\n")
    self.proc.stdin.flush()
    return self._reply()["seconds"]

  def close(self):
    self.proc.stdin.close()
    self.proc.wait()


def torch_worker(spec: dict):
  """Worker side of TorchWorker: build the peer, warm up, then time windows on request."""
  import torch
  from benchmarks import torch_step
  from revgm_jax import labels
  from revgm_jax.losses import constraints

  baseline = host_resources.reset_peak_rss()
  config = step_settings.bench_config(spec["image"], spec["batch"], spec["dtype"])
  device = spec["device"]
  if device == "cpu":
    torch.set_num_threads(spec["threads"])
  else:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
  space = labels.get_space(config.data.space)
  torch.manual_seed(config.seed)
  batch = torch_step.random_batch(space, config.batch_size, config.image_size, device=device)
  step = torch_step.TorchStep(config, space, step_settings.synthetic_class_weights(space),
                              constraints.low_freq_radius(config), compile=spec["compile"],
                              dtype=spec["dtype"], device=device)
  t = time.perf_counter()
  step(batch)
  step(batch)
  step.synchronize()
  ready = {"compile_s": time.perf_counter() - t, "torch": torch.__version__,
           "threads": torch.get_num_threads()}
  if device == "cpu":
    ready["peak_memory"] = host_resources.peak_rss_growth(baseline)
    ready["memory_kind"] = "host RSS growth over build, compilation and 2 steps"
  else:
    ready["peak_memory"] = torch.cuda.max_memory_allocated()
    ready["memory_kind"] = "torch.cuda.max_memory_allocated"
  print(json.dumps(ready), flush=True)
  for line in sys.stdin:
    t = time.perf_counter()
    for _ in range(int(line)):
      step(batch)
    step.synchronize()
    print(json.dumps({"seconds": time.perf_counter() - t}), flush=True)


def torch_contenders(config, dtype: str, torch_compile: bool, platform_name: str) -> list:
  """Started PyTorch peers: eager (on CPU with OpenMP's default and passive waiting: spinning
  threads lose badly on a shared machine, so both run and the ratio takes the faster one each
  round), and torch.compile'd with `torch_compile`."""
  device = "cuda" if platform_name == "gpu" else "cpu"
  if device == "cuda":
    import torch
    if not torch.cuda.is_available():
      print("  torch has no CUDA here: the peer is skipped (install a CUDA build of torch)")
      return []
  spec = {"image": config.image_size, "batch": config.batch_size, "dtype": dtype,
          "device": device, "threads": host_resources.cpu_threads()}
  modes = [("torch eager", False, None)]
  if device == "cpu" and "OMP_WAIT_POLICY" not in os.environ:
    modes.append(("torch eager passive", False, "PASSIVE"))
  if torch_compile:
    modes.append(("torch.compile", True, None))
  workers = []
  for name, compiled, wait_policy in modes:
    env = dict(os.environ, **({"OMP_WAIT_POLICY": wait_policy} if wait_policy else {}))
    workers.append(TorchWorker(name, dict(spec, compile=compiled), env))
  return workers


if __name__ == "__main__":
  torch_worker(json.loads(sys.argv[1]))
