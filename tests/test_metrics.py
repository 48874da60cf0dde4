"""Parsing metrics, multi-image aggregation and baselines against hand computations."""

import numpy as np
import pytest

from revgm_jax import labels
from revgm_jax.data import splits
from revgm_jax.evaluation import aggregate, baselines, metrics

SPACE = labels.RED116


def _perfect_disc(net):
  return [np.eye(k)[net[:, 9 + j].astype(int)] for j, k in enumerate(SPACE.discrete_classes)]


def _hand_case():
  """4 samples; every head is perfect except the ones the test computes by hand."""
  net = np.zeros((4, 15))
  net[:, :9] = [[0.0] * 9, [0.2] * 9, [0.6] * 9, [1.0] * 9]
  net[:, 9] = [0, 0, 1, 3]
  net[:, 12] = [0, 1, 0, 1]
  loss = np.tile([[1], [1], [0], [0]], (1, 10))
  loss[:, 0] = [1, 0, 1, 0]
  loss[:, 1] = 0
  loss[:, 2] = 0
  group = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0], [0, 0, 0]])
  target = {"net": net, "loss": loss, "loss_group": group}
  disc = _perfect_disc(net)
  disc[0] = np.eye(4)[[0, 1, 1, 3]] * 0.7 + 0.075  # argmax 0, 1, 1, 3
  p_loss = loss.astype(float).copy()
  p_loss[:, 0] = [0.9, 0.6, 0.4, 0.1]
  p_loss[:, 1] = 0.2
  p_loss[:, 2] = [0.7, 0.0, 0.0, 0.5]  # 0.5 is a tie: "no"
  pred = {"cont": np.full((4, 9), 0.5), "disc": disc, "group": group.astype(float),
          "loss": p_loss}
  return pred, target


def test_parsing_metrics_match_hand_computation():
  pred, target = _hand_case()
  m = metrics.parsing_metrics(pred, target, SPACE)
  assert m["num_samples"] == 4
  # L1: |0.5 - t| over t = 0, 0.2, 0.6, 1.0 -> (0.5 + 0.3 + 0.1 + 0.5) / 4 = 0.35 for every column.
  assert m["cont_l1/num_layers"] == pytest.approx(0.35)
  assert m["cont_l1"] == pytest.approx(0.35) and m["cont_l1_std"] == pytest.approx(0.0)
  # Head 9: y = 0 0 1 3, p = 0 1 1 3 -> acc 3/4; F1 over classes {0, 1, 3}: 2/3, 2/3, 1.
  assert m["net_acc/normalization_type"] == pytest.approx(0.75)
  assert m["net_f1/normalization_type"] == pytest.approx(7 / 9)
  assert m["net_acc/upsampling_type"] == 1.0 and m["net_f1/upsampling_type"] == 1.0
  assert m["net_acc"] == pytest.approx((0.75 + 5) / 6)
  assert m["net_f1"] == pytest.approx((7 / 9 + 5) / 6)
  # Loss 0: y = 1 0 1 0, yes = 1 1 0 0 -> acc 1/2, F1 (1/2 + 1/2) / 2; AUC 3 of 4 pairs ordered.
  assert m["loss_acc/l1"] == 0.5 and m["loss_f1/l1"] == pytest.approx(0.5)
  assert m["loss_auc/l1"] == pytest.approx(0.75)
  # Loss 1: all-negative targets predicted right: F1 over the one present class = 1; AUC N/A.
  assert m["loss_acc/l2"] == 1.0 and m["loss_f1/l2"] == 1.0 and m["loss_auc/l2"] is None
  # Loss 2: one false positive: class 0 F1 = 2*3/(2*3+1) = 6/7, class 1 F1 = 0.
  assert m["loss_acc/mse"] == 0.75 and m["loss_f1/mse"] == pytest.approx(3 / 7)
  assert m["loss_acc"] == pytest.approx((0.5 + 1 + 0.75 + 7) / 10)
  assert m["loss_f1"] == pytest.approx((0.5 + 1 + 3 / 7 + 7) / 10)
  assert m["loss_auc_defined"] == 8
  assert m["loss_auc"] == pytest.approx((0.75 + 7) / 8)
  assert m["group_acc"] == 1.0 and m["group_f1"] == 1.0
  assert m["group_auc/pixel"] == 1.0 and m["group_auc_defined"] == 3


def test_binary_scores_tie_goes_to_no_and_auc_needs_both_classes():
  assert metrics.binary_scores(np.array([0.5, 0.51]), np.array([0, 1])) == (1.0, 1.0, 1.0)
  acc, f1, auc = metrics.binary_scores(np.array([0.9, 0.8]), np.array([1, 1]))
  assert (acc, f1, auc) == (1.0, 1.0, None)


def test_confusion_matrices_of_discrete_heads():
  pred, target = _hand_case()
  cms = metrics.confusion(pred, target, SPACE)
  assert [c.shape for c in cms] == [(4, 4), (4, 4), (4, 4), (2, 2), (2, 2), (2, 2)]
  np.testing.assert_array_equal(cms[0], [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
  np.testing.assert_array_equal(cms[3], [[2, 0], [0, 2]])


def test_combine_sets_mean_and_std_skip_undefined():
  out = metrics.combine({"1": {"cont_l1": 0.1, "loss_auc": None},
                         "2": {"cont_l1": 0.3, "loss_auc": 0.8},
                         "3": {"cont_l1": 0.2, "loss_auc": None}})
  assert out["cont_l1"]["mean"] == pytest.approx(0.2)
  assert out["cont_l1"]["std"] == pytest.approx(np.sqrt(((0.1) ** 2 + 0.1 ** 2) / 3))
  assert out["loss_auc"] == {"mean": 0.8, "std": 0.0, "n": 1}
  assert metrics.combine({"1": {"x": None}})["x"] == {"mean": None, "std": None, "n": 0}


def test_disjoint_groups_per_gm():
  rows = np.array([0, 0, 0, 1, 1, 2, 0])
  g = aggregate.disjoint_groups(rows, 2, seed=3)
  assert g.shape == (3, 2)  # GM 0: 4 images -> 2 groups; GM 1: 1 group; GM 2: none
  assert len(set(g.ravel())) == 6
  assert all(len(set(rows[grp])) == 1 for grp in g)
  np.testing.assert_array_equal(aggregate.disjoint_groups(rows, 2, seed=3), g)
  assert aggregate.disjoint_groups(rows, 5).shape == (0, 5)
  with pytest.raises(ValueError, match="k_images"):
    aggregate.disjoint_groups(rows, 0)


def test_k_image_aggregation_hand_built():
  """Two GMs x 3 images: single images err, their means are exact."""
  rows = np.array([0, 0, 0, 1, 1, 1])
  net = np.zeros((6, 15))
  net[:3, :9], net[3:, :9] = 0.3, 0.8
  net[:3, 12], net[3:, 12] = 1, 0
  loss = np.zeros((6, 10), int)
  loss[:3, 0] = 1
  target = {"net": net, "loss": loss, "loss_group": np.zeros((6, 3), int)}
  disc = _perfect_disc(net)
  disc[3] = np.array([[0.6, 0.4], [0.4, 0.6], [0.3, 0.7],    # GM 0 (class 1): mean 0.43/0.57
                      [0.7, 0.3], [0.3, 0.7], [0.8, 0.2]])   # GM 1 (class 0): mean 0.6/0.4
  p_loss = np.zeros((6, 10))
  p_loss[:, 0] = [0.2, 0.9, 0.6, 0.1, 0.1, 0.7]  # means 17/30 (yes) and 0.3 (no)
  cont = np.zeros((6, 9))
  cont[:, :] = np.array([0.1, 0.2, 0.6, 0.8, 0.7, 0.9])[:, None]
  pred = {"cont": cont, "disc": disc, "group": np.zeros((6, 3)), "loss": p_loss}
  curve = aggregate.k_image_metrics(pred, target, rows, (1, 3, 5), SPACE)
  assert sorted(curve) == [1, 3]  # no GM has 5 images
  assert curve[1]["num_samples"] == 6 and curve[3]["num_samples"] == 2
  assert curve[3]["num_gms"] == 2
  # k = 1: |0.1-0.3|, |0.2-0.3|, |0.6-0.3|, 0, 0.1, 0.1 -> 0.8 / 6; k = 3: exact means.
  assert curve[1]["cont_l1"] == pytest.approx(0.8 / 6)
  assert curve[3]["cont_l1"] == pytest.approx(0.0, abs=1e-12)
  assert curve[1]["net_acc/upsampling_type"] == pytest.approx(4 / 6)
  assert curve[3]["net_acc/upsampling_type"] == 1.0
  assert curve[1]["loss_acc/l1"] == pytest.approx(4 / 6)
  assert curve[3]["loss_acc/l1"] == 1.0
  np.testing.assert_allclose(aggregate.mean_over_groups(pred, np.array([[0, 1, 2]]))["disc"][3],
                             [[13 / 30, 17 / 30]])


def test_majority_baseline_reproduces_published_table(published_red116):
  """docs/protocol.md#trivial-baselines: GM-level training mean / majority, 4 leave-out sets."""
  gt = labels.load_ground_truth(published_red116, "red116")
  expected = {1: (0.140, 0.67, 0.36, 0.63), 2: (0.150, 0.64, 0.33, 0.59),
              3: (0.183, 0.58, 0.28, 0.58), 4: (0.148, 0.54, 0.27, 0.55)}
  per_set = {}
  for k, (l1, acc, f1, loss_f1) in expected.items():
    split = splits.split_gms(gt, test_set=k)
    te = gt.rows(split["test"])
    target = {"net": gt.net[te], "loss": gt.loss[te], "loss_group": gt.loss_group[te]}
    pred = baselines.majority_predictions(gt, gt.rows(split["train"]), len(te))
    m = per_set[str(k)] = metrics.parsing_metrics(pred, target, gt.space)
    assert round(m["cont_l1"], 3) == l1
    assert (round(m["net_acc"], 2), round(m["net_f1"], 2)) == (acc, f1)
    assert round(m["loss_f1"], 2) == loss_f1
    assert m["loss_auc"] == pytest.approx(0.5)  # a constant score ranks nothing
  summary = metrics.combine(per_set)
  means = [m["cont_l1"] for m in per_set.values()]
  assert summary["cont_l1"]["mean"] == pytest.approx(np.mean(means))
  assert summary["cont_l1"]["n"] == 4


def test_retrieval_baseline_predicts_the_most_cosine_similar_gm(red116_dir):
  gt = labels.load_ground_truth(red116_dir, "red116")
  bank_rows = np.array([5, 17, 40])
  bank = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
  queries = np.array([[2.0, 0.1], [0.1, 3.0], [5.0, 4.5], [0.0, 0.0]])
  np.testing.assert_array_equal(baselines.cosine_nearest(queries, bank), [0, 1, 2, 0])
  pred = baselines.retrieval_predictions(gt, bank_rows, bank, queries[:3])
  np.testing.assert_allclose(pred["cont"], gt.net[[5, 17, 40], :9])
  np.testing.assert_array_equal(pred["loss"], gt.loss[[5, 17, 40]])
  assert [int(d.argmax(1)[1]) for d in pred["disc"]] == gt.net[17, 9:].astype(int).tolist()
  # A retrieved label vector scored against itself is perfect.
  target = {"net": gt.net[[5, 17, 40]], "loss": gt.loss[[5, 17, 40]],
            "loss_group": gt.loss_group[[5, 17, 40]]}
  m = metrics.parsing_metrics(pred, target, gt.space)
  assert m["cont_l1"] == 0.0 and m["net_acc"] == 1.0 and m["loss_f1"] == 1.0
  with pytest.raises(ValueError, match="no training GM"):
    baselines.retrieval_predictions(gt, bank_rows[:0], bank[:0], queries)
