"""XLA compiler options for the model's jitted programs (train, eval and inference steps).

Why (docs/jax_notes.md#cpu-compile-options): jaxlib 0.10's XLA:CPU hands convolutions to
YNNPACK by default, and for the FEN's 3x3 convs that path is much slower than XLA's own (Eigen)
convolutions, above all for the kernel gradient. Turning YNNPACK off altogether is worse:
BatchNorm's reductions then become slow reduce-windows. So on CPU we keep YNNPACK for
element-wise ops, reductions and dots and leave convolutions to XLA (the measurements:
benchmarks/RESULTS.md). Other backends get no options.

Users who set `xla_cpu_experimental_ynn_fusion_type` in XLA_FLAGS keep their own setting.
`jax.jit` takes compiler options only at the top level: to call one of these steps inside your
own jit, call its `__wrapped__` function (and pass `for_backend()` to your jit).
"""

import os

import jax

YNN_FUSION_FLAG = "xla_cpu_experimental_ynn_fusion_type"
CPU_OPTIONS = {
    YNN_FUSION_FLAG: ",".join(f"LIBRARY_FUSION_TYPE_{kind}"
                              for kind in ("ELTWISE", "REDUCE", "INDIVIDUAL_DOT")),
}


def for_backend(backend: str | None = None) -> dict:
  """`compiler_options` for `jax.jit` on `backend` (default: JAX's default backend)."""
  backend = backend or jax.default_backend()
  if backend != "cpu" or YNN_FUSION_FLAG in os.environ.get("XLA_FLAGS", ""):
    return {}
  return dict(CPU_OPTIONS)


def jit(fun, **kwargs):
  """`jax.jit` with this backend's compiler options."""
  return jax.jit(fun, compiler_options=for_backend() or None, **kwargs)
