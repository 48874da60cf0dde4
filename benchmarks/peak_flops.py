"""The peak FLOP/s that MFU divides by: a table for accelerators, a measured matmul on CPU."""

import time

# Dense peak TFLOP/s per device (tensor cores; fp32 matmuls on GPUs run as TF32 under JAX's
# default precision and under torch.backends.cuda.matmul.allow_tf32). Keys: jax device_kind.
PEAK_TFLOPS = {
    "NVIDIA H100 80GB HBM3": {"float32": 494.7, "bfloat16": 989.4},
    "NVIDIA H100 PCIe": {"float32": 378.0, "bfloat16": 756.0},
    "NVIDIA H200": {"float32": 494.7, "bfloat16": 989.4},
    "NVIDIA A100-SXM4-80GB": {"float32": 156.0, "bfloat16": 312.0},
    "NVIDIA A100-SXM4-40GB": {"float32": 156.0, "bfloat16": 312.0},
    "NVIDIA L4": {"float32": 60.0, "bfloat16": 121.0},
    "TPU v4": {"float32": 275.0, "bfloat16": 275.0},
    "TPU v5 lite": {"float32": 197.0, "bfloat16": 197.0},
    "TPU v5p": {"float32": 459.0, "bfloat16": 459.0},
    "TPU v6 lite": {"float32": 918.0, "bfloat16": 918.0},
}
MATMUL_N = 4096


class Matmul:
  """The CPU's attainable peak: a jitted fp32 4096^2 matmul on XLA's own thread pool."""

  def __init__(self):
    import jax
    import jax.numpy as jnp
    self.jax = jax
    a = jax.random.normal(jax.random.key(0), (MATMUL_N, MATMUL_N), jnp.float32)
    self.a = a
    self.f = jax.jit(lambda x: x @ x)
    jax.block_until_ready(self.f(a))

  def flops_per_s(self) -> float:
    t = time.perf_counter()
    self.jax.block_until_ready(self.f(self.a))
    return 2 * MATMUL_N ** 3 / (time.perf_counter() - t)


def peak_flops_per_s(measured: list, device_kind: str, dtype: str) -> tuple[float, str]:
  """(peak, where it comes from): the median of the measured matmul rates (CPU) if any,
  else `PEAK_TFLOPS` (NaN for a device not in it)."""
  if measured:
    import numpy as np
    return float(np.median(measured)), f"measured {MATMUL_N}^2 fp32 matmul"
  table = PEAK_TFLOPS.get(device_kind, {})
  source = f"PEAK_TFLOPS[{device_kind!r}]" if table else f"unknown device {device_kind!r}"
  return table.get(dtype, float("nan")) * 1e12, source
