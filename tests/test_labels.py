"""The hyperparameter spaces, label directories, and the published RED116 ground truth.

Tests named *published* check the values of the published tables and are skipped without them
(conftest.py); the others run on random tables in the same layout.
"""

import csv
import os
import shutil

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from revgm_jax import labels
from revgm_jax.data import splits


@pytest.fixture
def official_only(published_red116, tmp_path):
  """The published tables without our gm_index.csv: what a user downloads."""
  for f in os.listdir(published_red116):
    if f != labels.INDEX_FILE:
      shutil.copy(published_red116 / f, tmp_path)
  return tmp_path


def test_published_files_load_with_documented_shape(published_red116):
  expected = {
      "ground_truth_net_116_15dim.npy": (116, 15), "ground_truth_loss_116_9dim.npy": (116, 10),
      "ground_truth_loss_116_3dim.npy": (116, 3), "ground_truth_net_116_15dim_cluster.npy": (12, 15),
      "ground_truth_loss_116_9dim_cluster.npy": (12, 10),
      "ground_truth_loss_116_3dim_cluster.npy": (12, 3),
      "ground_truth_net_dev_116_15dim.npy": (116, 15), "ground_truth_p.npy": (104, 16),
      "ground_truth_net_arch_15dim_file.npy": (100, 15),
      "ground_truth_loss_func_8dim_file.npy": (100, 8),
      "ground_truth_loss_func_3dim_file.npy": (100, 3),
  }
  npys = sorted(f for f in os.listdir(published_red116) if f.endswith(".npy"))
  assert npys == sorted(expected)
  for name, shape in expected.items():
    a = np.load(published_red116 / name, allow_pickle=False)
    assert a.shape == shape, name
    assert np.all(np.isfinite(a)), name
  with open(published_red116 / "red140_net_arch_raw.csv") as f:
    assert len(list(csv.reader(f))) == 141
  with open(published_red116 / "red140_loss_raw.csv") as f:
    assert len(list(csv.reader(f))) == 141
  dm = np.loadtxt(published_red116 / "DM_loss.txt")
  assert dm.shape == (7, 10)
  with open(published_red116 / "DM_net_arch.txt") as f:
    assert [len(line.split()) for line in f if line.strip()] == [16] * 7


def test_red116_names_map_to_index_rows_not_sorted_order(red116_dir):
  gt = labels.load_ground_truth(red116_dir, "red116")
  with open(labels.SHIPPED_INDEX) as f:
    index = list(csv.DictReader(f))
  assert len(gt) == 116
  for rec in index:
    assert gt.row(rec["gm_name"]) == int(rec["row"])
  # The documented traps: sorted() differs from the table order for these GMs.
  assert gt.row("CONT_ENC") == 21 and gt.row("CONTRAGAN") == 22
  assert sorted(gt.names) != list(gt.names)
  np.testing.assert_allclose(gt.net, np.load(red116_dir / "ground_truth_net_116_15dim.npy"), rtol=1e-6)


def test_shipped_index_reads_a_label_dir_without_one(red116_dir, tmp_path):
  for f in os.listdir(red116_dir):
    if f != labels.INDEX_FILE:
      shutil.copy(red116_dir / f, tmp_path)
  for space in ("red116", "v1"):
    own, shipped = (labels.load_ground_truth(d, space) for d in (red116_dir, tmp_path))
    assert shipped.names == own.names and len(shipped) == (116 if space == "red116" else 100)
    np.testing.assert_array_equal(shipped.net, own.net)
    np.testing.assert_array_equal(shipped.test_set, own.test_set)
  with pytest.raises(FileNotFoundError, match=f"{tmp_path}/gm_index.csv"):
    labels.load_ground_truth(tmp_path, "zoo")  # a zoo's index is its own


def test_published_raw_ranges_reproduce_normalised_table(official_only):
  """Rows ordered by the shipped index: the raw table normalises to the published one."""
  gt = labels.load_ground_truth(official_only, "red116")
  np.testing.assert_allclose(gt.cont_min, [1, 0, 0, 0, 0, 0, 0, 0, 300304])
  np.testing.assert_allclose(gt.cont_max, [105, 92, 40, 35, 57, 8365, 15, 20, 266907367])
  with open(official_only / "red140_net_arch_raw.csv") as f:
    raw = np.array([[float(v) for v in r[2:11]] for r in list(csv.reader(f))[1:117]])
  norm = labels.minmax_normalize(raw, gt.cont_min, gt.cont_max)
  agree = np.all(np.abs(norm - gt.net[:, :9]) < 1e-4, axis=1)
  assert agree.sum() == 110  # the 6 rows LGPN edited later differ (docs/labels.md#red116)
  np.testing.assert_allclose(gt.denormalize(norm), raw, rtol=1e-9)


def test_published_coarse_flags_are_or_of_fine_flags_except_srflow(official_only):
  gt = labels.load_ground_truth(official_only, "red116")
  fine_or = np.stack([gt.loss[:, list(g)].max(1) for g in gt.space.loss_groups], 1)
  bad = np.nonzero(np.any(fine_or != gt.loss_group, axis=1))[0]
  assert [gt.names[i] for i in bad] == ["SRFLOW"]
  assert gt.row("SRFLOW") == 93
  assert gt.loss[93, 0] == 1 and gt.loss_group[93, 0] == 0


def test_published_class_counts(official_only):
  gt = labels.load_ground_truth(official_only, "red116")
  counts = [np.bincount(gt.net[:, 9 + j].astype(int)).tolist() for j in range(6)]
  assert counts == [[72, 19, 19, 6], [10, 74, 8, 24], [15, 74, 24, 3], [80, 36], [39, 77], [67, 49]]
  w = labels.class_weights(gt)  # over all GMs, as the official code
  np.testing.assert_allclose(w["disc"][0], 116 / np.array([72, 19, 19, 6]), rtol=1e-6)
  np.testing.assert_allclose(w["group"][0], 116 / np.array([51, 65]), rtol=1e-6)
  assert gt.loss.sum(0).tolist() == [45, 21, 14, 4, 45, 14, 14, 6, 11, 49]


def test_class_weights_count_training_gms_only(red116_dir):
  gt = labels.load_ground_truth(red116_dir, "red116")
  split = splits.split_gms(gt, test_set=2)
  rows = gt.rows(split["train"])
  w = labels.class_weights(gt, rows)
  counts = np.bincount(gt.net[rows, 9].astype(int), minlength=4)
  np.testing.assert_allclose(w["disc"][0], len(rows) / counts, rtol=1e-6)
  assert len(rows) == 104


def test_published_leave_out_sets_and_trivial_baselines(official_only):
  """docs/protocol.md#trivial-baselines: training-mean / majority predictors per test set."""
  gt = labels.load_ground_truth(official_only, "red116")
  expected = {1: (0.140, 0.67, 0.36, 0.63), 2: (0.150, 0.64, 0.33, 0.59),
              3: (0.183, 0.58, 0.28, 0.58), 4: (0.148, 0.54, 0.27, 0.55)}
  seen = set()
  for k, (l1_ref, acc_ref, f1_ref, loss_f1_ref) in expected.items():
    split = splits.split_gms(gt, test_set=k)
    assert len(split["test"]) == 12 and not seen & set(split["test"])
    seen |= set(split["test"])
    tr, te = gt.rows(split["train"]), gt.rows(split["test"])
    l1 = np.abs(gt.net[te, :9] - gt.net[tr, :9].mean(0)).mean()
    accs, f1s, loss_f1s = [], [], []
    for c in range(9, 15):
      y = gt.net[te, c].astype(int)
      p = np.full_like(y, np.bincount(gt.net[tr, c].astype(int)).argmax())
      accs.append(accuracy_score(y, p))
      f1s.append(f1_score(y, p, average="macro", zero_division=0))
    for c in range(10):
      y = gt.loss[te, c]
      p = np.full_like(y, np.bincount(gt.loss[tr, c], minlength=2).argmax())
      loss_f1s.append(f1_score(y, p, average="macro", zero_division=0))
    assert round(l1, 3) == l1_ref
    assert round(np.mean(accs), 2) == acc_ref and round(np.mean(f1s), 2) == f1_ref
    assert round(np.mean(loss_f1s), 2) == loss_f1_ref
  assert "STARGAN" in gt.test_gms(1) and "YLG" in gt.test_gms(4)


def test_v1_tables_use_their_own_rows(red116_dir):
  gt = labels.load_ground_truth(red116_dir, "v1")
  assert len(gt) == 100 and gt.space.num_loss_types == 8 and gt.space.num_groups == 3
  assert "PIXELCNN" not in gt.names
  assert gt.space.loss_groups == ((0, 1, 2, 3), (4, 5, 6), (7,))


def test_validation_gms_are_training_gms(red116_dir):
  gt = labels.load_ground_truth(red116_dir, "red116")
  s = splits.split_gms(gt, test_set=3, num_val_gms=8, seed=5)
  assert len(s["val"]) == 8 and len(s["train"]) == 96
  assert not set(s["val"]) & set(s["test"]) and not set(s["val"]) & set(s["train"])
  assert s == splits.split_gms(gt, test_set=3, num_val_gms=8, seed=5)
  explicit = splits.split_gms(gt, test_gms=["AAE", "YLG"])
  assert explicit["test"] == ["AAE", "YLG"] and len(explicit["train"]) == 114
  with pytest.raises(KeyError, match="NOT_A_GM"):
    splits.split_gms(gt, test_gms=["NOT_A_GM"])


def test_fewer_training_gms_are_nested_subsets_with_the_same_val_and_test(red116_dir):
  gt = labels.load_ground_truth(red116_dir, "red116")
  full = splits.split_gms(gt, test_set=2, num_val_gms=8, seed=3)
  subsets = [splits.split_gms(gt, test_set=2, num_val_gms=8, seed=3, max_train_gms=n)
             for n in (10, 40, len(full["train"]))]
  assert [len(s["train"]) for s in subsets] == [10, 40, len(full["train"])]
  assert set(subsets[0]["train"]) < set(subsets[1]["train"]) < set(full["train"])
  assert subsets[2] == full
  assert all((s["val"], s["test"]) == (full["val"], full["test"]) for s in subsets)
  for bad in (500, -1):
    with pytest.raises(ValueError, match=f"max_train_gms={bad}: expected 0 \\(all\\) to "
                                         f"{len(full['train'])}"):
      splits.split_gms(gt, test_set=2, num_val_gms=8, seed=3, max_train_gms=bad)


def _write_labels(tmp_path, gt, **changes):
  d = tmp_path / "labels"
  labels.write_ground_truth(d, gt)
  files = labels.LABEL_FILES[gt.space.name]
  for key, arr in changes.items():
    np.save(d / files[key], arr)
  return d


def test_bad_tables_get_clear_errors(red116_dir, tmp_path):
  gt = labels.load_ground_truth(red116_dir, "red116")
  net = gt.net.astype(np.float64).copy()
  net[3, 2] = np.nan
  with pytest.raises(ValueError, match=r"ground_truth_net_116_15dim.npy.*non-finite.*row 3, column 2"):
    labels.load_ground_truth(_write_labels(tmp_path / "a", gt, net=net), "red116")
  with pytest.raises(ValueError, match=r"shape \(116, 9\), expected \(116, 10\)"):
    labels.load_ground_truth(_write_labels(tmp_path / "b", gt, loss=gt.loss[:, :9]), "red116")
  bad = gt.net.astype(np.float64).copy()
  bad[0, 9] = 7
  with pytest.raises(ValueError, match="normalization_type"):
    labels.load_ground_truth(_write_labels(tmp_path / "c", gt, net=bad), "red116")
  with pytest.raises(FileNotFoundError, match="label directory .*missing does not exist"):
    labels.load_ground_truth(tmp_path / "missing", "red116")
  with pytest.raises(ValueError, match="unknown hyperparameter space"):
    labels.get_space("v3")


def test_write_then_load_round_trip(red116_dir, tmp_path):
  gt = labels.load_ground_truth(red116_dir, "red116")
  zoo_like = labels.GroundTruth(space=labels.ZOO, names=gt.names, net=gt.net, loss=gt.loss,
                                 loss_group=gt.loss_group, test_set=gt.test_set,
                                 cont_min=gt.cont_min, cont_max=gt.cont_max)
  labels.write_ground_truth(tmp_path, zoo_like)
  back = labels.load_ground_truth(tmp_path, "zoo")
  assert back.names == gt.names
  np.testing.assert_array_equal(back.net, gt.net)
  np.testing.assert_array_equal(back.test_set, gt.test_set)
  np.testing.assert_allclose(back.cont_max, gt.cont_max)
