"""conv3x3 equals XLA's padded conv; the compiled model leaves convolutions to XLA on CPU."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from revgm_jax.runtime import compile_options
from revgm_jax.models import layers


def reference(x, w, pad):
  return lax.conv_general_dilated(x, w, (1, 1), ((pad, pad), (pad, pad)),
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))


def data(b, h, ci, co, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=(b, h, h, ci)), jnp.float32),
          jnp.asarray(rng.normal(size=(3, 3, ci, co)), jnp.float32))


@pytest.mark.parametrize("pad,h,ci,co", [(1, 16, 8, 4), (2, 11, 3, 5), (0, 12, 4, 6)])
def test_values_and_gradients_match_xla(pad, h, ci, co):
  x, w = data(2, h, ci, co)
  y, vjp = jax.vjp(lambda x, w: layers.conv3x3(x, w, pad), x, w)
  y_ref, vjp_ref = jax.vjp(lambda x, w: reference(x, w, pad), x, w)
  assert y.shape == (2, h + 2 * pad - 2, h + 2 * pad - 2, co)
  np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=1e-5, atol=1e-5)
  ct = jnp.asarray(np.random.default_rng(1).normal(size=y.shape), jnp.float32)
  for g, g_ref in zip(jax.jit(vjp)(ct), vjp_ref(ct)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=2e-5,
                               atol=2e-5 * float(jnp.max(jnp.abs(g_ref))))


def ynn_convolutions(hlo: str) -> list:
  """Computations run by YNNPACK fusions whose result is a convolution (YNNPACK's own conv)."""
  called = set(re.findall(r"calls=%([\w.\-]+).*__ynn_fusion", hlo))
  bodies = re.split(r"\n(?=\S)", hlo)
  return [b.split()[0] for b in bodies if b.split() and b.split()[0].lstrip("%") in called
          and re.search(r"ROOT %\S+ = \S+ convolution\(", b)]


def test_bad_padding():
  x, w = data(1, 8, 2, 2)
  with pytest.raises(ValueError, match="padding"):
    layers.conv3x3(x, w, 3)


def test_cpu_convolutions_are_not_given_to_ynnpack(monkeypatch):
  """The 2-4x slower YNNPACK conv path (revgm_jax/runtime/compile_options.py) stays off on CPU."""
  x, w = data(2, 16, 32, 32)
  grad = jax.grad(lambda w: jnp.sum(layers.conv3x3(x, w, 1) ** 2))
  assert ynn_convolutions(jax.jit(grad).lower(w).compile().as_text())  # jaxlib's default
  hlo = compile_options.jit(grad).lower(w).compile().as_text()
  assert "convolution(" in hlo
  assert not ynn_convolutions(hlo)
  monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_experimental_ynn_fusion_type=")
  assert compile_options.for_backend("cpu") == {}
  monkeypatch.delenv("XLA_FLAGS")
  assert compile_options.for_backend("gpu") == {}
