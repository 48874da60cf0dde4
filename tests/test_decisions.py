"""Decisions fitted on validation cohorts (`evaluation/decisions.py`): a head that carries no
signal answers the training baseline, one that does keeps its answer, thresholds move the
binary decisions, and the decisions survive JSON as `revgm parse` reads them."""

import json
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from revgm_jax.evaluation import decisions, metrics
from revgm_jax.labels import NUM_CONTINUOUS, get_space

SPACE = get_space("zoo")
N = 400


def _data(seed=0):
  """Validation images of 8 cohorts: targets, and predictions whose continuous column 0 and
  discrete head 0 are right while column 1 is noise and head 1 wrong; loss type 0 is ranked right
  but every P(yes) sits below 0.5."""
  rng = np.random.default_rng(seed)
  groups = np.repeat(np.arange(8), N // 8)
  net = np.zeros((N, 15), np.float32)
  net[:, :NUM_CONTINUOUS] = rng.uniform(size=(N, NUM_CONTINUOUS))
  for j, k in enumerate(SPACE.discrete_classes):
    net[:, NUM_CONTINUOUS + j] = rng.integers(0, k, N)
  loss = rng.integers(0, 2, (N, len(SPACE.loss_names)))
  group = np.ones((N, len(SPACE.group_names)), np.int64)
  target = {"net": net, "loss": loss, "loss_group": group}
  cont = rng.uniform(size=(N, NUM_CONTINUOUS))
  cont[:, 0] = net[:, 0]
  disc = [rng.dirichlet(np.ones(k), N) for k in SPACE.discrete_classes]
  for j, shift in ((0, 0), (1, 1)):  # head 0 right, head 1 always one class off
    k = SPACE.discrete_classes[j]
    disc[j] = np.eye(k)[(net[:, NUM_CONTINUOUS + j].astype(int) + shift) % k] * 0.9 + 0.1 / k
  p_loss = rng.uniform(0.05, 0.45, (N, len(SPACE.loss_names)))
  p_loss[:, 0] = 0.1 + 0.2 * loss[:, 0]
  pred = {"cont": cont, "disc": disc, "group": np.full(group.shape, 0.9), "loss": p_loss}
  base = decisions.baseline(net, SPACE.discrete_classes)
  return pred, target, groups, base


def test_macro_f1_is_scikit_learns():
  rng = np.random.default_rng(1)
  for _ in range(20):
    y, p = rng.integers(0, 3, 30), rng.integers(0, 4, 30)
    assert np.isclose(decisions.macro_f1(y, p), f1_score(y, p, average="macro", zero_division=0))


def test_auc_is_scikit_learns():
  rng = np.random.default_rng(2)
  for _ in range(20):
    y, p = rng.integers(0, 2, 40), rng.integers(0, 5, 40) / 4  # with ties
    assert np.isclose(decisions.auc(p, y), roc_auc_score(y, p))
  assert decisions.auc(np.ones(3), np.ones(3)) is None


def test_each_head_takes_the_source_that_validation_favours():
  pred, target, groups, base = _data()
  spectral = {**pred, "cont": np.asarray(target["net"])[:, :NUM_CONTINUOUS].copy(),
              "disc": [np.full_like(d, 1 / d.shape[1]) for d in pred["disc"]]}
  cands = decisions.candidates(pred, spectral)
  d = decisions.fit(cands, target, groups, base, SPACE.group_of_loss)
  assert d["sources"]["cont"][0] == "deep"  # a tie: the first source
  assert d["sources"]["cont"][1:] == ["spectral"] * (NUM_CONTINUOUS - 1)
  assert d["sources"]["disc"][0] == "deep"
  out = decisions.answer(cands, d, SPACE.group_of_loss)
  np.testing.assert_allclose(out["cont"][:, 1:], spectral["cont"][:, 1:], atol=1e-6)
  assert decisions.answer(cands, None, SPACE.group_of_loss)["cont"] is pred["cont"]


def test_a_head_without_signal_answers_the_baseline_and_one_with_signal_keeps_its_answer():
  pred, target, groups, base = _data()
  d = decisions.fit(decisions.candidates(pred), target, groups, base, SPACE.group_of_loss)
  assert d["cont_alpha"][0] == 1.0 and d["cont_alpha"][1] <= 0.2
  assert d["disc_alpha"][0] > 0.0 and d["disc_alpha"][1] == 0.0
  out = decisions.answer(decisions.candidates(pred), d, SPACE.group_of_loss)
  prior_class = int(np.argmax(base["prior"][1]))
  assert (np.asarray(out["disc"][1]).argmax(-1) == prior_class).all()
  before = metrics.parsing_metrics(pred, target, SPACE)
  after = metrics.parsing_metrics(out, target, SPACE)
  assert after["cont_l1"] < before["cont_l1"]


def test_a_threshold_turns_a_well_ranked_head_below_one_half_into_right_answers():
  pred, target, groups, base = _data()
  d = decisions.fit(decisions.candidates(pred), target, groups, base, SPACE.group_of_loss)
  assert 0.1 < d["loss_threshold"][0] < 0.3
  out = decisions.answer(decisions.candidates(pred), d, SPACE.group_of_loss)
  name = SPACE.loss_names[0]
  before = metrics.parsing_metrics(pred, target, SPACE)
  after = metrics.parsing_metrics(out, target, SPACE)
  assert before[f"loss_f1/{name}"] < 0.5 and after[f"loss_f1/{name}"] == 1.0
  assert np.isclose(after[f"loss_auc/{name}"], before[f"loss_auc/{name}"])
  group = np.asarray(out["group"])[:, np.asarray(SPACE.group_of_loss)]
  assert (np.asarray(out["loss"]) <= group + 1e-12).all()  # a type never above its group


def test_temperatures_are_kept_only_where_held_out_cohorts_get_a_lower_ece():
  pred, target, groups, base = _data()
  d = decisions.fit(decisions.candidates(pred), target, groups, base, SPACE.group_of_loss)
  for fam, kept in d["calibration_kept"].items():
    assert kept == (d["inner_ece"]["after"][fam] < d["inner_ece"]["before"][fam])
    if not kept:
      assert d["temperatures"][fam] == [1.0] * len(d["temperatures"][fam])
  # Over-confident discrete heads (the noise heads at 0.9+): scaling them helps held-out cohorts.
  assert d["calibration_kept"]["disc"]


@pytest.mark.e2e
def test_decisions_survive_json_and_apply_without_scikit_learn():
  pred, target, groups, base = _data()
  d = decisions.fit(decisions.candidates(pred), target, groups, base, SPACE.group_of_loss)
  again = json.loads(json.dumps(d))
  a = decisions.answer(decisions.candidates(pred), d, SPACE.group_of_loss)
  b = decisions.answer(decisions.candidates(pred), again, SPACE.group_of_loss)
  for k in ("cont", "group", "loss"):
    np.testing.assert_allclose(a[k], b[k])
  code = ("import sys; from revgm_jax.evaluation import decisions; "
          "print('sklearn' in sys.modules)")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "False"
