"""Detection, attribution and open-set metrics against hand computations, and the open-set
scores on a constructed case."""

import numpy as np
import pytest

from revgm_jax.evaluation import task_metrics as tm
from revgm_jax.evaluation import classification, openset

# Two real (0) and two generated (1) images; at threshold 0.6 one of each is misjudged.
Y = np.array([0, 0, 1, 1])
P = np.array([0.1, 0.6, 0.4, 0.9])


def test_detection_metrics_by_hand():
  m = tm.detection_metrics(P, Y)
  assert m["auc"] == pytest.approx(3 / 4)  # generated above real in 3 of the 4 pairs
  assert m["accuracy"] == pytest.approx(0.5)  # predictions 0, 1, 0, 1
  assert m["eer"] == pytest.approx(0.5)  # FPR = FNR = 1/2 at threshold 0.6
  assert m["ap"] == pytest.approx((1 / 1 + 2 / 3) / 2)  # precision at each recall step
  assert (m["num_real"], m["num_generated"]) == (2, 2)
  assert tm.eer(Y, np.array([0.1, 0.2, 0.8, 0.9])) == pytest.approx(0.0)
  assert tm.detection_metrics(P[:2], Y[:2])["auc"] is None  # one class: undefined


def test_ece_by_hand():
  # Bin 0.9: confidence 0.9, accuracy 1/2; bin 0.6: confidence 0.6, accuracy 1.
  assert tm.ece([0.9, 0.9, 0.6, 0.6], [1, 0, 1, 1]) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
  r = tm.reliability([0.9, 0.9, 0.6, 0.6], [1, 0, 1, 1])
  assert r["count"][9] == 2 and r["accuracy"][6] == 1.0


def test_attribution_metrics_by_hand():
  prob = np.eye(3)[[0, 1, 1, 2]] * 0.8 + 0.2 / 3  # predicted 0, 1, 1, 2
  m = tm.attribution_metrics(prob, [0, 0, 1, 2])
  assert m["accuracy"] == pytest.approx(0.75)
  assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
  assert m["confusion"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_open_set_metrics_by_hand():
  known, correct, unknown = [0.9, 0.8, 0.3], [True, False, True], [0.5, 0.1]
  m = tm.open_set_metrics(known, correct, unknown, threshold=0.4)
  assert m["auroc"] == pytest.approx(5 / 6)  # 0.3 < 0.5 is the one misordered pair
  # CCR is 1/3 up to FPR 1/2 (0.3 is below 0.5), then 2/3: area 1/6 + 1/3.
  assert m["oscr"] == pytest.approx(0.5)
  assert m["closed_set_accuracy"] == pytest.approx(2 / 3)
  assert (m["known_accepted"], m["unknown_rejected"]) == (pytest.approx(2 / 3), 0.5)


def test_tnr_at_95_tpr_by_hand():
  known = np.arange(1, 21) / 20  # the threshold keeping 19 of 20 is 0.1
  assert tm.threshold_at_tpr(known) == pytest.approx(0.1)
  m = tm.open_set_metrics(known, np.ones(20, bool), [0.05, 0.1, 0.5, 0.02])
  assert m["tnr_at_95tpr"] == pytest.approx(0.5)  # 0.05 and 0.02 rejected


@pytest.mark.parametrize("kind", openset.SCORES)
def test_open_set_scores_rank_unknown_below_known(kind):
  """Known classes cluster around their means; a held-out GM's embeddings lie elsewhere and
  its softmax is flat: every score ranks it below the known images."""
  rng = np.random.default_rng(0)
  centres = np.array([[6.0, 0, 0, 0], [0, 6.0, 0, 0], [0, 0, 6.0, 0]])

  def known(n):
    y = np.arange(n) % 3
    prob = np.full((n, 3), 0.05)
    prob[np.arange(n), y] = 0.9
    return centres[y] + rng.normal(0, 0.5, (n, 4)), y, prob

  e_train, y_train, _ = known(60)
  e_val, _, p_val = known(30)
  e_test, _, p_test = known(30)
  e_unknown = np.array([0, 0, 0, 6.0]) + rng.normal(0, 0.5, (20, 4))
  p_unknown = np.full((20, 3), 1 / 3)
  stats = openset.fit(e_train, y_train, 3)
  threshold = classification.thresholds(p_val, e_val, stats)[kind]
  s_known = openset.score(kind, p_test, e_test, stats)
  s_unknown = openset.score(kind, p_unknown, e_unknown, stats)
  assert s_unknown.max() < s_known.min()
  m = tm.open_set_metrics(s_known, np.ones(30, bool), s_unknown, threshold)
  assert m["auroc"] == 1.0 and m["unknown_rejected"] == 1.0 and m["known_accepted"] >= 0.9


def test_open_set_fit_needs_every_class():
  with pytest.raises(ValueError, match=r"class\(es\) \[2\]"):
    openset.fit(np.zeros((4, 2)), [0, 1, 0, 1], 3)
