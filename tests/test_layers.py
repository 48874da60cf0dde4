"""conv3x3's chunked kernel gradient equals XLA's, on one device and inside shard_map."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.sharding import NamedSharding, PartitionSpec as P

from revgm_jax.models import layers


def reference(x, w, pad):
  return lax.conv_general_dilated(x, w, (1, 1), ((pad, pad), (pad, pad)),
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))


def data(b, h, ci, co, seed=0):
  rng = np.random.default_rng(seed)
  return (jnp.asarray(rng.normal(size=(b, h, h, ci)), jnp.float32),
          jnp.asarray(rng.normal(size=(3, 3, ci, co)), jnp.float32))


# 64 wide: 4 output rows per chunk; 19 -> 21 rows of 13 per chunk (a padded last chunk).
@pytest.mark.parametrize("pad,h,ci,co", [(1, 64, 8, 4), (2, 19, 3, 5), (0, 12, 4, 6)])
def test_values_and_gradients_match_xla(pad, h, ci, co):
  x, w = data(2, h, ci, co)
  y, vjp = jax.vjp(lambda x, w: layers.conv3x3(x, w, pad, "chunked"), x, w)
  y_ref, vjp_ref = jax.vjp(lambda x, w: reference(x, w, pad), x, w)
  np.testing.assert_array_equal(np.asarray(y), np.asarray(y_ref))
  ct = jnp.asarray(np.random.default_rng(1).normal(size=y.shape), jnp.float32)
  for g, g_ref in zip(jax.jit(vjp)(ct), vjp_ref(ct)):
    np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=2e-5,
                               atol=2e-5 * float(jnp.max(jnp.abs(g_ref))))


def test_sharded_kernel_gradient_is_the_global_one():
  """Replicated kernel, batch split over 4 devices: the gradient is summed over devices."""
  mesh = jax.make_mesh((4,), ("data",), axis_types=(jax.sharding.AxisType.Explicit,),
                       devices=jax.devices()[:4])
  x, w = data(8, 16, 4, 4)

  def loss(w, x):
    return lax.psum(jnp.sum(layers.conv3x3(x, w, 1, "chunked") ** 2), "data")

  grad = jax.jit(jax.shard_map(jax.grad(loss), mesh=mesh, in_specs=(P(), P("data")),
                               out_specs=P()))
  g = grad(w, jax.device_put(x, NamedSharding(mesh, P("data"))))
  g_ref = jax.grad(lambda w: jnp.sum(reference(x, w, 1) ** 2))(w)
  np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=2e-5)


def test_bad_arguments():
  x, w = data(1, 8, 2, 2)
  with pytest.raises(ValueError, match="padding"):
    layers.conv3x3(x, w, 3)
  with pytest.raises(ValueError, match="weight_grad"):
    layers.conv3x3(x, w, 1, "fast")
