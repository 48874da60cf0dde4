"""Property-based tests (hypothesis) of the pure functions: label normalisation and encodings,
metric invariants, the constraint terms' symmetries, the workdir's config comparison."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from revgm_jax import labels, workdir as workdir_lib
from revgm_jax.data import splits
from revgm_jax.evaluation import metrics
from revgm_jax.losses import constraints

FEW = settings(max_examples=25, deadline=None)  # CI: 2 cores for the whole suite
finite = st.floats(-1e6, 1e6, allow_nan=False)


@FEW
@given(hnp.arrays(np.float64, (7, 9), elements=finite), hnp.arrays(np.float64, 9, elements=finite),
       hnp.arrays(np.float64, 9, elements=st.floats(1e-3, 1e6)))
def test_minmax_denormalize_inverts_normalize(raw, lo, span):
  hi = lo + span
  back = labels.minmax_denormalize(labels.minmax_normalize(raw, lo, hi), lo, hi)
  assert np.all(np.abs(back - raw) <= 1e-9 * (1 + np.abs(raw) + np.abs(lo) + span))


@FEW
@given(hnp.arrays(np.float64, 5, elements=finite))
def test_a_constant_column_normalises_to_zero(value):
  np.testing.assert_array_equal(labels.minmax_normalize(value[None], value, value), 0.0)


@pytest.fixture(scope="module")
def gt(red116_dir):
  return labels.load_ground_truth(str(red116_dir), "red116")


@FEW
@given(data=st.data())
def test_class_weights_balance_the_classes_present(gt, data):
  """N / count_c: every present class weighs in with N in total, an absent one with 0."""
  rows = data.draw(st.lists(st.integers(0, len(gt) - 1), min_size=1, max_size=40))
  weights = labels.class_weights(gt, rows)
  net = gt.net[rows]
  for j, k in enumerate(gt.space.discrete_classes):
    counts = np.bincount(net[:, labels.NUM_CONTINUOUS + j].astype(int), minlength=k)
    np.testing.assert_allclose(weights["disc"][j] * counts, np.where(counts > 0, len(rows), 0),
                               rtol=1e-5)


@FEW
@given(test_set=st.integers(1, 4), num_val=st.integers(0, 20), seed=st.integers(0, 2**31))
def test_split_is_a_partition_with_test_gms_held_out(gt, test_set, num_val, seed):
  split = splits.split_gms(gt, test_set, num_val_gms=num_val, seed=seed)
  names = split["train"] + split["val"] + split["test"]
  assert sorted(names) == sorted(gt.names)  # disjoint and complete
  assert split["test"] == gt.test_gms(test_set) and len(split["val"]) == num_val
  assert split == splits.split_gms(gt, test_set, num_val_gms=num_val, seed=seed)


# Multiples of 1/16 but 1/2: 1 - p is exact, and no score sits on the 0.5 threshold.
probs = hnp.arrays(np.float64, 12, elements=st.sampled_from([i / 16 for i in range(17) if i != 8]))
targets = hnp.arrays(np.int64, 12, elements=st.integers(0, 1))


@FEW
@given(probs, targets, st.permutations(range(12)))
def test_binary_scores_ignore_order_and_monotone_rescaling(p, y, perm):
  acc, f1, auc = metrics.binary_scores(p, y)
  assert 0 <= acc <= 1 and 0 <= f1 <= 1
  perm = np.asarray(perm)
  assert metrics.binary_scores(p[perm], y[perm]) == pytest.approx((acc, f1, auc))
  # AUC ranks scores: a strictly increasing map that keeps the 0.5 threshold changes nothing.
  assert metrics.binary_scores(np.where(p > 0.5, (1 + p) / 2, p / 2), y)[2] == pytest.approx(auc)
  flipped = metrics.binary_scores(1 - p, 1 - y)  # naming "yes" "no" instead
  assert flipped[:2] == pytest.approx((acc, f1))
  assert (flipped[2] is None) == (auc is None) and (auc is None or flipped[2] == pytest.approx(auc))


fingerprints = hnp.arrays(np.float32, (2, 8, 8, 3), elements=st.floats(-1, 1, width=32))


def _terms(f):
  return {k: float(v) for k, v in constraints.constraint_terms(jnp.asarray(f), 2, 1e4).items()}


@FEW
@given(fingerprints, st.integers(0, 7), st.integers(0, 7))
def test_constraint_terms_ignore_transpose_circular_shift_and_batch_order(f, dy, dx):
  """|FFT| is blind to circular shifts; transposing the image transposes the spectrum, whose
  low-frequency window, symmetry error and high-band max stay the same."""
  ref = _terms(f)
  for other in (np.swapaxes(f, 1, 2), np.roll(f, (dy, dx), axis=(1, 2)), f[::-1]):
    got = _terms(other)
    for k in ref:
      assert got[k] == pytest.approx(ref[k], rel=1e-4, abs=1e-5), k


@FEW
@given(hnp.arrays(np.float32, (1, 8, 8, 3), elements=st.floats(-1, 1, width=32)))
def test_symmetry_term_vanishes_for_a_transpose_symmetric_image(f):
  assert _terms((f + np.swapaxes(f, 1, 2)) / 2)["sym"] == pytest.approx(0, abs=1e-8)


leaf = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.lists(st.integers(0, 3), max_size=3))
configs = st.fixed_dictionaries({
    "image_size": st.integers(8, 64), "seed": st.integers(0, 9),
    "data": st.dictionaries(st.sampled_from(["test_set", "space", "image_dir", "tfds_dir"]), leaf),
    "model": st.dictionaries(st.sampled_from(["fen_width", "parser_widths"]), leaf),
    "optim": st.fixed_dictionaries({"lr": st.floats(0, 1),
                                    "weight_decay": st.sampled_from([0, 1])})})


@FEW
@given(configs, configs)
def test_run_fields_diff_names_exactly_the_changed_run_fields(a, b):
  diff = workdir_lib.run_fields_diff(a, b)
  assert workdir_lib.run_fields_diff(a, a) == []
  assert [d.split(":")[0] for d in diff] == [d.split(":")[0]
                                             for d in workdir_lib.run_fields_diff(b, a)]
  changed = {d.split(":")[0] for d in diff}
  assert not changed & {"optim.lr", "data.image_dir", "data.tfds_dir"}
  for key in ("seed", "image_size", "optim.weight_decay"):
    section, _, name = key.rpartition(".")
    va, vb = (a[section][name], b[section][name]) if section else (a[key], b[key])
    assert (key in changed) == (va != vb)
