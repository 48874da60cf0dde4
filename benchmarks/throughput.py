r"""Training-step throughput: our jit(shard_map) step against a PyTorch peer, MFU, weak scaling.

  python benchmarks/throughput.py --quick        # 64 x 64, batch 16, CPU: < 2 min, `ratio: X`
  python benchmarks/throughput.py                # 64x16 and 128x32 (the two CPU targets)
  python benchmarks/throughput.py --sizes=64x16,128x32,128x64 --torch_compile --scaling

Times the full model-parsing training step of `revgm_jax.steps.make_train_step` (FEN, the four
FFT constraint losses, parser, all heads, backward, Adam) at the paper's settings
(`configs/red116.py`: 17 x 64 FEN, radius 25, Adam lr 1e-4 with L2 1e-4) on a fixed random
batch, and the PyTorch peer of `benchmarks/torch_step.py` (the same step written from the design
notes) in the same invocation, with the same sizes and thread count. The peer runs in worker
processes driven over a pipe (`benchmarks/torch_peer.py`: own OpenMP settings, own memory
figures): on CPU once with OpenMP's default waiting and once with OMP_WAIT_POLICY=PASSIVE,
because spinning OpenMP threads lose up to 2x on a shared machine; the ratio takes the faster
one. Compilation and warm-up are excluded; `block_until_ready` is called only at window
boundaries. The machine this was written on is shared and its speed drifts 2-8x within an hour,
so the JAX windows, the torch windows and a 4096^2 fp32 matmul (the CPU's measured peak, for
MFU) are interleaved round by round and the ratio is the median of the per-round ratios:
back-to-back numbers only.

MFU = model FLOPs per step (XLA's cost analysis of the lowered step, before library fusions hide
FLOPs) x steps/s / peak. The peak (`benchmarks/peak_flops.py`) is `PEAK_TFLOPS` for accelerators
and the matmul rate measured in the same run on CPU. Weak scaling (`--scaling`,
`benchmarks/weak_scaling.py`) runs one subprocess per simulated CPU device count (1, 2, 4, 8;
XLA_FLAGS must be set before jax is imported) with the per-device batch fixed; on GPU/TPU it
uses meshes over the first 1, 2, 4, 8 real devices. XLA flags are not changed here: what is
measured is what users get. `--profile`: `benchmarks/step_profile.py`.
"""

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
  sys.path.insert(0, REPO)

from benchmarks import host_resources, jax_step, peak_flops, step_settings  # noqa: E402


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--quick", action="store_true",
                 help="64x16 only, 3 short windows, eager torch peer (< 2 min on a 2-core CPU)")
  p.add_argument("--sizes", default="64x16,128x32",
                 help="comma-separated IMAGExBATCH (global batch), e.g. 64x16,128x32,128x64")
  p.add_argument("--windows", type=int, default=5, help="timed windows (rounds) per size")
  p.add_argument("--steps", type=int, default=3, help="steps per timed window")
  p.add_argument("--dtypes", default="",
                 help="model compute dtypes; '' = float32 on CPU, float32,bfloat16 on GPU/TPU")
  p.add_argument("--torch", choices=("eager", "none"), default="eager",
                 help="run the PyTorch peer (eager always, compiled with --torch_compile)")
  p.add_argument("--torch_compile", action="store_true",
                 help="also time the peer under torch.compile (slow to compile on CPU)")
  p.add_argument("--scaling", action="store_true",
                 help="weak scaling over 1, 2, 4, 8 devices (simulated CPU devices on CPU)")
  p.add_argument("--scaling_size", default="64x4", help="IMAGExPER_DEVICE_BATCH for --scaling")
  p.add_argument("--profile", default="",
                 help="write a jax.profiler trace of our step (first size) to this directory "
                      "and print XLA's ops by time")
  p.add_argument("--json", default="", help="also write all results to this JSON file")
  args = p.parse_args(argv)
  if args.quick:
    args.sizes, args.windows, args.steps = "64x16", 3, 2
    args.torch_compile = args.scaling = False
  args.sizes = [parse_size(s, "--sizes") for s in args.sizes.split(",") if s.strip()]
  args.scaling_size = parse_size(args.scaling_size, "--scaling_size")
  if args.torch != "none" and importlib.util.find_spec("torch") is None:
    p.error("--torch=eager: torch is not installed; pip install -e '.[bench]' (README, "
            "Performance), or pass --torch=none")
  if args.windows < 1 or args.steps < 1:
    p.error(f"--windows={args.windows} and --steps={args.steps} must be >= 1")
  return args


def parse_size(text: str, flag: str) -> tuple[int, int]:
  try:
    image, batch = (int(v) for v in text.lower().split("x"))
  except ValueError:
    raise SystemExit(f"{flag}: {text!r} is not IMAGExBATCH (e.g. 64x16)") from None
  if image < 52 or batch < 1:
    # radius 25 needs a 51 x 51 window inside the spectrum.
    raise SystemExit(f"{flag}: {text!r}: image side must be >= 52 and batch >= 1")
  return image, batch


@dataclasses.dataclass
class Series:
  """Per-window seconds per step of one contender."""
  name: str
  batch: int
  seconds: list = dataclasses.field(default_factory=list)
  compile_s: float = float("nan")
  peak_memory: int = 0
  memory_kind: str = ""

  def images_per_s(self):
    import numpy as np
    return self.batch / np.asarray(self.seconds)


def measure_size(image: int, batch: int, dtype: str, args, platform_name: str) -> dict:
  """Interleaved windows of our step, the torch peer(s) and (CPU) the matmul peak."""
  import jax
  import numpy as np

  from revgm_jax import steps  # noqa: F401  (imports TensorFlow: before the RSS baseline)

  config = step_settings.bench_config(image, batch, dtype)
  devices = jax.devices()[:1]
  rss0 = host_resources.reset_peak_rss()
  ours = jax_step.JaxStep(config, devices)
  ours.run(2)  # warm-up (first calls allocate)
  jax_series = Series("jax", batch, compile_s=ours.compile_s)
  if platform_name == "cpu":
    jax_series.peak_memory = host_resources.peak_rss_growth(rss0)
    jax_series.memory_kind = "host RSS growth over build, compilation and 2 steps"
  else:
    stats = devices[0].memory_stats() or {}
    jax_series.peak_memory = stats.get("peak_bytes_in_use", 0)
    jax_series.memory_kind = "device peak_bytes_in_use"

  def run_ours(n):
    t = time.perf_counter()
    ours.run(n)
    return time.perf_counter() - t

  contenders = [(jax_series, run_ours, None)]  # (series, run(n) -> seconds, worker to close)
  if args.torch != "none":
    from benchmarks import torch_peer
    for worker in torch_peer.torch_contenders(config, dtype, args.torch_compile, platform_name):
      contenders.append((Series(worker.name, batch, compile_s=worker.ready["compile_s"],
                                peak_memory=worker.ready["peak_memory"],
                                memory_kind=worker.ready["memory_kind"]), worker.run, worker))
  matmul = peak_flops.Matmul() if platform_name == "cpu" else None
  peaks = []
  try:
    for r in range(args.windows):
      for series, run, _ in contenders:
        series.seconds.append(run(args.steps) / args.steps)
      if matmul:
        peaks.append(matmul.flops_per_s())
      print(f"  [{image}x{batch} {dtype}] window {r + 1}/{args.windows}: " + ", ".join(
          f"{s.name} {batch / s.seconds[-1]:.2f} img/s" for s, _, _ in contenders)
          + (f", matmul {peaks[-1] / 1e9:.0f} GFLOP/s" if peaks else ""), flush=True)
  finally:
    for _, _, worker in contenders:
      if worker is not None:
        worker.close()

  peak, peak_src = peak_flops.peak_flops_per_s(peaks, devices[0].device_kind, dtype)
  step_s = np.asarray(jax_series.seconds)
  result = {
      "image": image, "batch": batch, "dtype": dtype, "devices": len(devices),
      "flops_per_step": ours.flops_per_device_step * len(devices),
      "flops_per_image": ours.flops_per_device_step * len(devices) / batch,
      "xla_buffer_bytes": ours.xla_bytes,
      "peak_flops_per_s": peak, "peak_source": peak_src,
      "matmul_flops_per_s_windows": peaks,
      "mfu": float(ours.flops_per_device_step / np.median(step_s) / peak),
      "contenders": {},
  }
  for series, _, _ in contenders:
    ips = series.images_per_s()
    s = np.asarray(series.seconds)
    result["contenders"][series.name] = {
        "images_per_s": float(np.median(ips)),
        "images_per_s_per_device": float(np.median(ips)) / len(devices),
        "step_s_median": float(np.median(s)), "step_s_min": float(s.min()),
        "step_s_max": float(s.max()),
        "step_s_spread": float((s.max() - s.min()) / np.median(s)),
        "compile_s": series.compile_s, "peak_memory_bytes": series.peak_memory,
        "memory_kind": series.memory_kind, "window_step_s": series.seconds,
    }
    if series.name != "jax":
      ratio = np.asarray(series.seconds) / step_s  # per round: jax img/s over peer img/s
      result["contenders"][series.name]["ratio_jax_over_this"] = float(np.median(ratio))
  eager = [np.asarray(series.seconds) for series, _, _ in contenders
           if series.name.startswith("torch eager")]
  if eager:  # per round, against the faster of the eager peers
    result["ratio_vs_best_eager"] = float(np.median(np.min(eager, axis=0) / step_s))
  workers = [w for _, _, w in contenders if w is not None]
  if workers:
    result["torch"] = workers[0].ready["torch"]
    result["torch_threads"] = workers[0].ready["threads"]
  return result


def environment(platform_name: str) -> dict:
  import jax
  env = {"jax": jax.__version__, "platform": platform_name,
         "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count(),
         "cpu": platform.processor() or platform.machine(), "threads": host_resources.cpu_threads(),
         "xla_flags": os.environ.get("XLA_FLAGS", ""), "python": platform.python_version()}
  try:
    with open("/proc/cpuinfo") as f:
      env["cpu"] = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
  except (OSError, StopIteration):
    pass
  return env


def print_report(env: dict, results: list, scaling: list):
  print(f"\njax {env['jax']} on {env['platform']} ({env['device_kind']}), {env['cpu']}, "
        f"torch {env['torch']}; threads: XLA pool = torch = {env['threads']} "
        f"(process CPU affinity); XLA_FLAGS={env['xla_flags']!r}")
  hdr = (f"{'size':>9} {'dtype':>8} {'contender':>19} {'img/s':>7} {'img/s/dev':>9} "
         f"{'step ms':>8} {'spread':>6} {'compile s':>9} {'peak MB':>8} {'jax/this':>8}")
  print(hdr)
  print("-" * len(hdr))
  for r in results:
    for name, c in r["contenders"].items():
      ratio = c.get("ratio_jax_over_this")
      print(f"{r['image']:>4}x{r['batch']:<4} {r['dtype']:>8} {name:>19} "
            f"{c['images_per_s']:7.2f} {c['images_per_s_per_device']:9.2f} "
            f"{1e3 * c['step_s_median']:8.1f} {100 * c['step_s_spread']:5.0f}% "
            f"{c['compile_s']:9.1f} {c['peak_memory_bytes'] / 2**20:8.0f} "
            f"{'' if ratio is None else f'{ratio:8.2f}'}")
    print(f"{'':>9} MFU {100 * r['mfu']:.1f}% = {r['flops_per_image'] / 1e9:.2f} GFLOP/image "
          f"(XLA cost analysis) x img/s / peak {r['peak_flops_per_s'] / 1e9:.0f} GFLOP/s "
          f"({r['peak_source']}); XLA buffers {r['xla_buffer_bytes'] / 2**20:.0f} MB")
  if results:
    kind = next(iter(results[0]["contenders"].values()))["memory_kind"]
    print(f"peak MB: {kind}; torch runs in its own process (torch.set_num_threads = "
          f"{results[0].get('torch_threads', '-')}), 'passive' = OMP_WAIT_POLICY=PASSIVE")
  if scaling:
    base = scaling[0]["images_per_s"]
    print("\nweak scaling (per-device batch fixed):")
    print(f"{'devices':>7} {'batch':>6} {'img/s':>8} {'img/s/dev':>9} {'vs 1 dev':>8} "
          f"{'efficiency':>10}")
    for p in scaling:
      n = p["devices"]
      print(f"{n:>7} {p['global_batch']:>6} {p['images_per_s']:8.2f} "
            f"{p['images_per_s_per_device']:9.2f} {p['images_per_s'] / base:8.2f} "
            f"{p['images_per_s'] / (n * base):10.2f}")
    if env["platform"] == "cpu":
      print("(simulated CPU devices share the same cores: the ideal 'vs 1 dev' is 1.0, "
            "efficiency = vs 1 dev / devices)")
  for r in results:
    if "ratio_vs_best_eager" in r:
      print(f"ratio at {r['image']}x{r['batch']} {r['dtype']}: {r['ratio_vs_best_eager']:.2f}")
  first = next((r for r in results if "ratio_vs_best_eager" in r), None)
  if first is not None:
    print(f"\nratio: {first['ratio_vs_best_eager']:.2f}"
          f"  (our img/s / the faster PyTorch eager peer's img/s at {first['image']}x"
          f"{first['batch']} {first['dtype']}, median over "
          f"{len(first['contenders']['jax']['window_step_s'])} back-to-back rounds)")


def main(argv=None):
  args = parse_args(argv)
  import jax
  platform_name = jax.default_backend()
  env = environment(platform_name)
  dtypes = ([d for d in args.dtypes.split(",") if d] if args.dtypes
            else ["float32"] if platform_name == "cpu" else ["float32", "bfloat16"])
  results = []
  for image, batch in args.sizes:
    for dtype in dtypes:
      print(f"measuring {image}x{image}, batch {batch}, {dtype} ...", flush=True)
      results.append(measure_size(image, batch, dtype, args, platform_name))
  if args.profile:
    from benchmarks import step_profile
    image, batch = args.sizes[0]
    step_profile.profile_step(jax_step.JaxStep(step_settings.bench_config(image, batch, dtypes[0]),
                                               jax.devices()[:1]), args.profile)
  scaling = []
  if args.scaling:
    from benchmarks import weak_scaling
    scaling = weak_scaling.weak_scaling(args.scaling_size, args.windows, args.steps,
                                        platform_name)
  env["torch"] = next((r["torch"] for r in results if "torch" in r), None)
  print_report(env, results, scaling)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"environment": env, "results": results, "scaling": scaling}, f, indent=1)


if __name__ == "__main__":
  main()
