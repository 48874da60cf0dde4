"""The FFT constraint terms against NumPy, their gradients at zero bins, and data parallelism."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from revgm_jax.losses import constraints

LOSS_CFG = ml_collections.ConfigDict(dict(fen_terms="mag,spec,rep,sym", coef_mag=0.1,
                                          coef_spec=0.05, coef_rep=0.001, coef_sym=1.0))


def numpy_terms(f, n):
  """The constraint terms of docs/losses.md#constraint-losses, written out with NumPy."""
  f = np.asarray(f, np.float64)
  gray = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
  s = np.abs(np.fft.fftshift(np.fft.fft2(gray), axes=(-2, -1)))
  c = gray.shape[1] // 2
  low = s[:, c - n:c + n + 1, c - n:c + n + 1]
  high = s.copy()
  high[:, c - n:c + n + 1, c - n:c + n + 1] = 0.0
  return {"mag": np.mean(gray ** 2), "spec": np.mean(low ** 2),
          "sym": np.mean((s - s.transpose(0, 2, 1)) ** 2), "rep_unclamped": high.max()}


def fingerprints(b, h, seed=0):
  return jax.random.normal(jax.random.key(seed), (b, h, h, 3)) * 0.1


@pytest.mark.parametrize("size,radius", [(16, 3), (15, 4), (32, 12)])
def test_terms_match_numpy(size, radius):
  f = fingerprints(3, size)
  got = constraints.constraint_terms(f, radius, rep_clip=1e4)
  want = numpy_terms(f, radius)
  for k, v in want.items():
    np.testing.assert_allclose(got[k], v, rtol=2e-5, err_msg=k)
  np.testing.assert_allclose(got["rep"], want["rep_unclamped"], rtol=2e-5)


def test_rep_is_clamped_and_unclamped_max_logged():
  f = fingerprints(2, 16)
  m = numpy_terms(f, 3)["rep_unclamped"]
  got = constraints.constraint_terms(f, 3, rep_clip=m / 2)
  np.testing.assert_allclose(got["rep"], m / 2, rtol=1e-6)
  np.testing.assert_allclose(got["rep_unclamped"], m, rtol=2e-5)
  # Above the clip the repetition term no longer pushes the max up.
  grad = jax.grad(lambda f: constraints.constraint_terms(f, 3, m / 2)["rep"])(f)
  assert float(jnp.abs(grad).max()) == 0.0


def test_max_is_over_the_whole_batch():
  f = fingerprints(4, 16)
  per_image = [numpy_terms(f[i:i + 1], 3)["rep_unclamped"] for i in range(4)]
  got = constraints.constraint_terms(f, 3, 1e4)["rep_unclamped"]
  np.testing.assert_allclose(got, max(per_image), rtol=2e-5)


def test_fen_loss_coefficients_and_subsets():
  terms = {"mag": 2.0, "spec": 3.0, "sym": 5.0, "rep": 7.0, "rep_unclamped": 70.0}
  np.testing.assert_allclose(constraints.fen_loss(terms, LOSS_CFG),
                             0.1 * 2 + 0.05 * 3 - 0.001 * 7 + 1.0 * 5, rtol=1e-6)
  cfg = ml_collections.ConfigDict(LOSS_CFG.to_dict())
  cfg.fen_terms = "sym, mag"
  np.testing.assert_allclose(constraints.fen_loss(terms, cfg), 0.1 * 2 + 5.0, rtol=1e-6)
  cfg.fen_terms = ""
  assert float(constraints.fen_loss(terms, cfg)) == 0.0
  cfg.fen_terms = "mag,freq"
  with pytest.raises(ValueError, match="config.loss.fen_terms.*freq"):
    constraints.fen_loss(terms, cfg)


@pytest.mark.parametrize("image_size,radius,want", [(64, -1, 25), (32, -1, 12), (128, -1, 50),
                                                    (64, 7, 7)])
def test_low_freq_radius(image_size, radius, want):
  cfg = ml_collections.ConfigDict(dict(image_size=image_size, loss=dict(low_freq_radius=radius)))
  assert constraints.low_freq_radius(cfg) == want


def test_bad_shapes_are_clear_errors():
  with pytest.raises(ValueError, match="low_freq_radius.*16 x 16"):
    constraints.constraint_terms(fingerprints(1, 16), 8, 1e4)  # window 17 > 16
  with pytest.raises(ValueError, match="square"):
    constraints.constraint_terms(jnp.zeros((1, 16, 12, 3)), 3, 1e4)


@pytest.mark.parametrize("value", [0.0, 0.5])
def test_finite_gradients_at_exactly_zero_bins(value):
  f = jnp.full((2, 16, 16, 3), value)  # every non-DC bin is exactly 0 (all bins if value == 0)
  s = constraints.spectrum(constraints.luma(f))
  assert int(jnp.sum(s == 0)) >= 2 * (16 * 16 - 1)
  grad = jax.grad(lambda f: constraints.fen_loss(constraints.constraint_terms(f, 3, 1e4),
                                                 LOSS_CFG))(f)
  assert bool(jnp.all(jnp.isfinite(grad)))


def test_bfloat16_fingerprint_gives_float32_terms():
  f = fingerprints(2, 16)
  got = constraints.constraint_terms(f.astype(jnp.bfloat16), 3, 1e4)
  want = numpy_terms(np.asarray(f.astype(jnp.bfloat16).astype(jnp.float32)), 3)
  assert all(v.dtype == jnp.float32 for v in got.values())
  np.testing.assert_allclose(got["sym"], want["sym"], rtol=2e-5)


def test_mask_drops_examples_from_every_term():
  f = fingerprints(4, 16)
  f = f.at[3].multiply(100.0)  # a padded example with a huge spectrum
  mask = jnp.array([True, True, True, False])
  got = constraints.constraint_terms(f, 3, 1e4, mask=mask)
  want = constraints.constraint_terms(f[:3], 3, 1e4)
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-5, err_msg=k)


def _sharded(fn, n):
  """fn(f, mask) -> (loss, terms, grad wrt f) run per device over an n-device mesh."""
  mesh = jax.make_mesh((n,), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:n])
  return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=(P("data"), P("data")),
                               out_specs=(P(), P(), P("data"))))


def test_eight_devices_equal_one_device_values_and_gradients():
  f = fingerprints(16, 16)
  checker = jnp.where((jnp.arange(16)[:, None] + jnp.arange(16)) % 2 == 0, 1.0, -1.0)
  f = f.at[5].add(checker[..., None])  # the high-band max, tied on two devices
  f = f.at[12].set(f[5])
  mask = jnp.arange(16) < 13  # uneven real examples per device
  cfg = ml_collections.ConfigDict(LOSS_CFG.to_dict())
  cfg.coef_rep = 1.0  # make the max's gradient as large as the other terms'

  def loss(f, mask, axis_name):
    terms = constraints.constraint_terms(f, 3, 1e4, axis_name=axis_name, mask=mask)
    return constraints.fen_loss(terms, cfg), terms

  def value_and_grad(axis_name):
    def fn(f, mask):
      (total, terms), g = jax.value_and_grad(loss, has_aux=True)(f, mask, axis_name)
      return total, terms, g
    return fn

  one = _sharded(value_and_grad("data"), 1)(f, mask)
  eight = _sharded(value_and_grad("data"), 8)(f, mask)
  plain = jax.value_and_grad(loss, has_aux=True)(f, mask, None)
  np.testing.assert_allclose(eight[0], plain[0][0], rtol=1e-5)
  np.testing.assert_allclose(one[0], plain[0][0], rtol=1e-5)
  for k in plain[0][1]:
    np.testing.assert_allclose(eight[1][k], plain[0][1][k], rtol=1e-5, err_msg=k)
  np.testing.assert_allclose(eight[2], plain[1], rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(one[2], plain[1], rtol=1e-4, atol=1e-7)
