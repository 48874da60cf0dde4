"""The fixed-feature parser: image features, linear heads, serialisation, sklearn-free predict."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

from revgm_jax import labels
from revgm_jax.evaluation import baselines, metrics
from revgm_jax.features import fitting, linear, spectral

REPO = pathlib.Path(__file__).resolve().parents[1]


def _nearest_up(low: np.ndarray) -> np.ndarray:
  """[N, s, s, 3] -> [N, 2s, 2s, 3] nearest-neighbour up-sampling."""
  return np.repeat(np.repeat(low, 2, axis=1), 2, axis=2)


def _smooth_noise(rng, n: int, sigma: float, size: int = 32) -> np.ndarray:
  """[n, size, size, 3] float images in [0, 1]: Gaussian noise blurred by sigma."""
  x = rng.standard_normal((n, size, size, 3))
  x = ndimage.gaussian_filter(x, (0, sigma, sigma, 0), mode="wrap") if sigma > 0 else x
  return np.clip(0.5 + 0.5 * x / x.std(), 0.0, 1.0)


def test_features_shape_finite_deterministic():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
  f = spectral.image_features(images)
  d = sum(spectral.block_sizes(32, 32).values())
  assert f.shape == (5, d) and f.dtype == np.float32
  assert np.all(np.isfinite(f))
  np.testing.assert_array_equal(f, spectral.image_features(images.copy()))
  # uint8 and the same images as floats in [0, 1] give the same features.
  np.testing.assert_allclose(f, spectral.image_features(images / 255.0), rtol=1e-4, atol=1e-4)
  # Constant and saturated images stay finite; one image alone gives its row of a batch.
  flat = np.zeros((2, 32, 32, 3), np.uint8)
  flat[1] = 255
  assert np.all(np.isfinite(spectral.image_features(flat)))
  np.testing.assert_allclose(spectral.image_features(images[2:3])[0], f[2], rtol=1e-5, atol=1e-5)
  slices = spectral.block_slices(32, 32)
  assert list(slices)[0] == "spectrum" and max(s.stop for s in slices.values()) == d


def test_upsampling_block_separates_nearest_upsampled_images():
  rng = np.random.default_rng(1)
  nearest = _nearest_up(_smooth_noise(rng, 8, 0.0, size=16))
  smooth = _smooth_noise(rng, 8, 1.0)  # no up-sampling, similar spectrum slope
  block = spectral.block_slices(32, 32)["upsample_phase"]
  f2 = slice(block.start, block.start + 3)  # factor 2: phases (0, 1), (1, 0), (1, 1)
  e_nearest = spectral.image_features(nearest)[:, f2].mean(1)
  e_other = spectral.image_features(smooth)[:, f2].mean(1)
  assert e_nearest.max() < e_other.min() - 5.0  # log-energies: orders of magnitude apart


def _synthetic_zoo(num_gms: int = 24, per_gm: int = 6):
  """A GM set whose labels follow a spectral property: GM g's images are noise blurred by
  sigma_g; continuous column 0 = sigma_g / 2, up-sampling type = sigma_g > 1, loss type l1 =
  sigma_g > 1.3; the rest constant. Returns (gt, images [N, 32, 32, 3], GM rows [N])."""
  rng = np.random.default_rng(2)
  sigma = np.linspace(0.0, 2.0, num_gms)[rng.permutation(num_gms)]
  net = np.zeros((num_gms, 15), np.float32)
  net[:, 0] = sigma / 2
  net[:, 12] = sigma > 1.0
  loss = np.zeros((num_gms, 10), np.int32)
  loss[:, 0] = sigma > 1.3
  group = np.zeros((num_gms, 3), np.int32)
  group[:, 0] = loss[:, 0]
  test_set = np.where(np.arange(num_gms) % 3 == 0, 1, 0).astype(np.int32)
  gt = labels.GroundTruth(space=labels.ZOO, names=tuple(f"gm{g}" for g in range(num_gms)),
                          net=net, loss=loss, loss_group=group, test_set=test_set)
  images = np.concatenate([_smooth_noise(rng, per_gm, s) for s in sigma])
  return gt, images, np.repeat(np.arange(num_gms), per_gm)


def _fit_small(x, rows, gt, train_rows):
  return fitting.fit(x, rows, gt, train_rows, folds=2, alphas=(1.0, 100.0), cs=(0.1,),
                    pca_dims=16)


def test_fitted_parser_beats_the_mean_on_a_spectral_task(tmp_path):
  gt, images, rows = _synthetic_zoo()
  x = spectral.image_features(images)
  train_rows = np.flatnonzero(gt.test_set == 0)
  parser = _fit_small(x, rows, gt, train_rows)
  test = np.isin(rows, np.flatnonzero(gt.test_set == 1))
  target = {"net": gt.net[rows[test]], "loss": gt.loss[rows[test]],
            "loss_group": gt.loss_group[rows[test]]}
  pred = parser.predict(x[test])
  assert pred["cont"].shape == (test.sum(), 9) and [d.shape[1] for d in pred["disc"]] == [
      4, 4, 4, 2, 2, 2]
  assert pred["group"].shape == (test.sum(), 3) and pred["loss"].shape == (test.sum(), 10)
  ours = metrics.parsing_metrics(pred, target, gt.space)
  mean = metrics.parsing_metrics(baselines.majority_predictions(gt, train_rows, test.sum()),
                                 target, gt.space)
  assert ours["cont_l1/num_layers"] < 0.5 * mean["cont_l1/num_layers"]
  assert ours["net_f1/upsampling_type"] > mean["net_f1/upsampling_type"] + 0.3
  assert ours["loss_auc/l1"] > 0.9
  # A head whose training GMs hold one class answers it with certainty.
  np.testing.assert_allclose(pred["loss"][:, 1:], 0.0, atol=1e-6)
  # Retrieval in feature space finds GMs of similar blur.
  bank_rows, bank = spectral.gm_mean_features(x[~test], rows[~test])
  for metric in ("euclidean", "cosine"):
    near = baselines.feature_retrieval_predictions(gt, bank_rows, bank, x[test], metric)
    assert metrics.parsing_metrics(near, target, gt.space)["cont_l1/num_layers"] < 0.6 * mean[
        "cont_l1/num_layers"]


@pytest.mark.e2e
def test_round_trip_and_predict_without_sklearn(tmp_path):
  gt, images, rows = _synthetic_zoo(num_gms=12, per_gm=4)
  x = spectral.image_features(images)
  parser = fitting.fit(x, rows, gt, np.arange(8), unit="gm", folds=2, alphas=(10.0,), cs=(0.1,))
  path = str(tmp_path / "parser.npz")
  parser.save(path)
  loaded = linear.SpectralParser.load(path)
  a, b = parser.predict(x), loaded.predict(x)
  for k in ("cont", "group", "loss"):
    np.testing.assert_array_equal(a[k], b[k])
  for da, db in zip(a["disc"], b["disc"]):
    np.testing.assert_array_equal(da, db)
  assert all(v.dtype != object for v in parser.to_arrays().values())
  np.save(tmp_path / "images.npy", (images[:3] * 255).astype(np.uint8))
  code = (
      "import sys, numpy as np\n"
      "from revgm_jax.features import linear, spectral\n"
      f"p = linear.SpectralParser.load({path!r})\n"
      f"out = p.predict(spectral.image_features(np.load({str(tmp_path / 'images.npy')!r})))\n"
      "assert out['cont'].shape == (3, 9)\n"
      "assert not [m for m in sys.modules if m.split('.')[0] == 'sklearn'], 'sklearn imported'\n"
      "print('ok')\n")
  env = {**os.environ, "PYTHONPATH": str(REPO)}
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=60, check=False)
  assert result.returncode == 0 and "ok" in result.stdout, result.stderr
