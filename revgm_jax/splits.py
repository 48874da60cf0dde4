"""Leave-out splits of a GM set into training, validation and test GMs (docs/protocol.md)."""

from collections.abc import Sequence

import numpy as np

from revgm_jax.config_utils import ConfigError
from revgm_jax.labels import GroundTruth


def split_gms(gt: GroundTruth, test_set: int = 1, test_gms: Sequence[str] = (),
              num_val_gms: int = 0, seed: int = 0, max_train_gms: int = 0
              ) -> dict[str, list[str]]:
  """Leave-out split by GM: {"train", "val", "test"} lists of GM names.

  test_gms (explicit names) overrides `test_set`. The validation GMs are held-out *training*
  GMs (for model selection), drawn with `seed` as the test GMs are held out: a zoo cohort
  (GMs of one architecture) whole, so that selection, like the test, sees architectures that
  training did not; the validation set is the first whole cohorts and single GMs of a seeded
  order that hold at least `num_val_gms` GMs and, as a test set, GMs of both kinds where the
  zoo has both. Test GMs never enter train or val.
  max_train_gms > 0 keeps that many training GMs: a prefix of one fixed order of them, so
  the subsets of a GM-count study are nested and share their test and validation GMs.
  """
  test = list(test_gms) if test_gms else gt.test_gms(test_set)
  for n in test:
    gt.row(n)  # a clear error for an unknown name
  rest = [n for n in gt.names if n not in set(test)]
  if num_val_gms >= len(rest):
    raise ConfigError(f"config.data.num_val_gms={num_val_gms} leaves no training GM "
                      f"({len(rest)} non-test GMs)")
  perm = np.random.default_rng(seed).permutation(len(rest))
  cohort = {n: -1 if gt.cohort is None else int(gt.cohort[gt.row(n)]) for n in rest}
  kinds = {c < 0 for c in cohort.values()}  # single GMs, cohorts, or both
  val: set[str] = set()
  for i in perm:
    if len(val) >= num_val_gms and (not num_val_gms or {cohort[n] < 0 for n in val} == kinds):
      break
    c = cohort[rest[i]]
    val |= {rest[i]} if c < 0 else {n for n in rest if cohort[n] == c}
  if len(val) >= len(rest):
    raise ConfigError(f"config.data.num_val_gms={num_val_gms}: the validation cohorts leave "
                      "no training GM")
  order = [rest[i] for i in perm if rest[i] not in val]
  if max_train_gms < 0 or max_train_gms > len(order):
    raise ConfigError(f"config.data.max_train_gms={max_train_gms}: expected 0 (all) to "
                      f"{len(order)}, the training GMs besides the validation and test GMs")
  keep = set(order[:max_train_gms] if max_train_gms > 0 else order)
  train = [n for n in rest if n in keep]
  return {"train": train, "val": sorted(val), "test": test}
