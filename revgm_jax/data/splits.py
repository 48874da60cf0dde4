"""The split policy: which GMs (and which images of them) train, validate and test a run.

Parsing: a leave-out split by GM into training, validation and test GMs (docs/protocol.md).
Detection and attribution: the known sources are the training GMs of the leave-out split plus
the real images; each source's images are split by position into train / val / test fractions,
so validation and the closed-set test see the same classes as training. The leave-out test GMs
are never trained on: they form the "unknown" split (docs/tasks.md#data).

`draw` gives the plain values `input_pipeline.get_datasets` builds the datasets from.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import logging
import ml_collections
import numpy as np

from revgm_jax import labels
from revgm_jax.config_utils import ConfigError
from revgm_jax.data import DataError
from revgm_jax.labels import GroundTruth

REAL = labels.REAL
DETECTION_CLASSES = (REAL, "generated")


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


def shuffled_label_rows(gt: GroundTruth, train_gms: list[str], seed: int) -> np.ndarray:
  """[N] label row of each GM row: a seeded permutation among the training GMs (the
  random-ground-truth baseline), identity elsewhere."""
  rows = np.arange(len(gt))
  train = gt.rows(train_gms)
  rows[train] = train[np.random.default_rng([seed, 1]).permutation(len(train))]
  return rows


def _index(row):
  """Index into a class table of a gm_row (or an array of them)."""
  return row - labels.REAL_ROW


def class_names(task: str, split: dict) -> list[str]:
  """Output classes of a task's model, in logit order, from a run's split."""
  if task == "detection":
    return list(DETECTION_CLASSES)
  return list(split["train"])  # attribution: the known GMs, then real


def num_classes(task: str, split: dict) -> int:
  return len(class_names(task, split))


def parts(data: ml_collections.ConfigDict) -> dict[str, tuple[float, float]]:
  """Fractions of each known source's images (in sorted file order) per split."""
  v, t = data.val_fraction, data.test_fraction
  return {"train": (0.0, 1.0 - v - t), "val": (1.0 - v - t, 1.0 - t), "test": (1.0 - t, 1.0)}


def class_split(config: ml_collections.ConfigDict, gt: GroundTruth, test_gms: list[str],
                data) -> dict:
  """The split of a detection or attribution run: split, parts, class_table and
  class_weights ({"class": [N / count per class over training images]}).

  gt: the GMs that have images; test_gms: explicit unknown GMs (else config.data.test_set's);
  data: the `builder.PreparedData`.
  """
  task = config.task
  if not set(gt.names) - set(test_gms or gt.test_gms(config.data.test_set)):
    raise ValueError(f"{task} needs at least two classes, but every GM with images is held out "
                     "(config.data.test_set / test_gms): only real images are left to train on")
  held_out = split_gms(gt, config.data.test_set, test_gms, 0, config.seed)
  known, unknown = held_out["train"], held_out["test"]
  data.check_gms(unknown, "unknown (held-out)")
  sources = [*known, REAL]
  split = {"train": sources, "val": sources, "test": sources, "unknown": unknown}
  names = class_names(task, split)
  p = parts(config.data)
  for name in sources:
    for s, part in p.items():
      if data.num_images([name], config.data.max_images_per_gm, part) < 1:
        raise DataError(
            f"class {name} has {data.gm_info[name]['num_images']} image(s): none left for its "
            f"{s} share {part} (config.data.val_fraction / test_fraction)")
  # class_table[_index(gm_row)]: rows -2 (real), -1 (padding), 0 .. N-1 (GMs).
  table = np.full(_index(len(data.gt)), -1, np.int32)
  table[_index(0):] = 1 if task == "detection" else -1  # attribution: unknown GMs, no class
  table[_index(labels.REAL_ROW)] = names.index(REAL)
  if task == "attribution":
    table[_index(data.gt.rows(known))] = np.arange(len(known))
  counts = np.zeros(len(names))
  for name in sources:
    row = labels.REAL_ROW if name == REAL else data.gt.row(name)
    counts[table[_index(row)]] += data.num_images([name], config.data.max_images_per_gm,
                                                  p["train"])
  weights = counts.sum() / counts if config.loss.weighted_ce else np.ones(len(names))
  return dict(split=split, parts=p, class_table=table, label_rows=None,
              class_weights={"class": [weights.astype(np.float32)]})


def draw(config: ml_collections.ConfigDict, data) -> dict:
  """The split of `config`'s run over the prepared data `data` (`builder.PreparedData`): the
  `input_pipeline.Datasets` fields split, class_weights, label_rows, parts and class_table.

  The split is drawn from the GMs that have images (a GM of the index without a folder is left
  out with a warning).
  """
  gt = data.gt
  present = [n for n in gt.names if n in data.gm_info]
  if len(present) < len(gt):
    absent = [n for n in gt.names if n not in data.gm_info]
    logging.warning("%d GM(s) of the index have no folder in %s and are left out: %s",
                    len(absent), data.image_dir,
                    ", ".join(absent[:10]) + (", ..." if len(absent) > 10 else ""))
  test_gms = [n.strip() for n in config.data.test_gms.split(",") if n.strip()]
  if config.get("task", "parsing") != "parsing":
    return class_split(config, gt.subset(present), test_gms, data)
  split = split_gms(gt.subset(present), config.data.test_set, test_gms,
                    config.data.num_val_gms, config.seed, config.data.max_train_gms)
  data.check_gms(split["test"], "test")
  rows = None if config.loss.class_weights_from == "all" else gt.rows(split["train"])
  label_rows = (shuffled_label_rows(gt, split["train"], config.seed)
                if config.data.shuffle_labels else None)
  return dict(split=split, class_weights=labels.class_weights(gt, rows), label_rows=label_rows,
              parts={}, class_table=None)
