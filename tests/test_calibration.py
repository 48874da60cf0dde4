"""Temperature scaling: it lowers the ECE of over-confident heads without changing decisions."""

import numpy as np

from revgm_jax.evaluation import calibration


def _overconfident(n=2000, seed=0):
  """Labels drawn from soft probabilities, reported as if much sharper (logits x 4)."""
  rng = np.random.default_rng(seed)
  z = rng.normal(size=(n, 3))
  true_p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
  y = np.array([rng.choice(3, p=p) for p in true_p])
  sharp = np.exp(4 * z) / np.exp(4 * z).sum(1, keepdims=True)
  zb = rng.normal(size=(n, 2))  # two binary heads; group 0 gates loss type 0
  yb = (rng.random((n, 2)) < 1 / (1 + np.exp(-zb))).astype(np.int64)
  pb = 1 / (1 + np.exp(-4 * zb))
  pred = {"cont": np.zeros((n, 1)), "disc": [sharp], "group": pb[:, :1],
          "loss": np.minimum(pb[:, 1:], pb[:, :1])}
  target = {"net": np.stack([np.zeros(n), y], 1), "loss_group": yb[:, :1], "loss": yb[:, 1:]}
  return pred, target


def test_calibration_lowers_validation_ece_and_keeps_decisions():
  pred, target = _overconfident()
  temps = calibration.fit(pred, target)
  assert 2.5 < temps["disc"][0] < 6 and temps["group"][0] > 2  # undoes the x 4
  ece = calibration.before_after(pred, target, temps, [0])
  for fam in ("disc", "group", "loss"):
    assert ece["after"][fam] < ece["before"][fam]
  assert ece["after"]["disc"] < 0.03 < 0.1 < ece["before"]["disc"]
  cal = calibration.apply(pred, temps, [0])
  np.testing.assert_array_equal(cal["disc"][0].argmax(1), pred["disc"][0].argmax(1))
  np.testing.assert_array_equal(cal["loss"] > 0.5, pred["loss"] > 0.5)
  assert (cal["loss"] <= cal["group"]).all()  # a type is never above its group


def test_ece_of_a_calibrated_head_is_small_and_of_a_wrong_one_large():
  y = np.array([0, 1] * 50)
  half = np.full((100, 2), 0.5)
  assert calibration.ece(half, y) == 0.0  # 50 % confident, 50 % right
  wrong = np.eye(2)[1 - y] * 0.98 + 0.01
  assert calibration.ece(wrong, y) > 0.95


def test_a_family_with_one_class_in_validation_keeps_temperature_one():
  pred, target = _overconfident()
  target["loss"] = np.zeros_like(target["loss"])
  assert calibration.fit(pred, target)["loss"] == [1.0]
