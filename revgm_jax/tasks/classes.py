"""Classes of detection and attribution, and the image-level split of their data.

The known sources are the training GMs of the leave-out split plus the real images; each
source's images are split by position into train / val / test fractions, so validation and the
closed-set test see the same classes as training. The leave-out test GMs are never trained on:
they form the "unknown" split (docs/tasks.md#data).
"""

from __future__ import annotations

import ml_collections
import numpy as np

from revgm_jax import labels, splits

REAL = labels.REAL
DETECTION_CLASSES = (REAL, "generated")


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
  if not (0 < v and 0 < t and v + t < 1):
    raise ValueError(f"config.data.val_fraction={v} and test_fraction={t} must be > 0 and leave "
                     "a training share (sum < 1)")
  return {"train": (0.0, 1.0 - v - t), "val": (1.0 - v - t, 1.0 - t), "test": (1.0 - t, 1.0)}


def class_split(config: ml_collections.ConfigDict, gt: labels.GroundTruth, test_gms: list[str],
                data) -> dict:
  """The `input_pipeline.Datasets` fields of a detection or attribution run: split, parts,
  class_table and class_weights ({"class": [N / count per class over training images]}).

  gt: the GMs that have images; test_gms: explicit unknown GMs (else config.data.test_set's);
  data: the `builder.PreparedData` (imported here only: inference needs no TensorFlow).
  """
  from revgm_jax.data import builder  # pylint: disable=g-import-not-at-top
  task = config.task
  if task not in ("detection", "attribution"):
    raise ValueError(f"config.task={task!r}; use parsing, detection or attribution")
  if not set(gt.names) - set(test_gms or gt.test_gms(config.data.test_set)):
    raise ValueError(f"{task} needs at least two classes, but every GM with images is held out "
                     "(config.data.test_set / test_gms): only real images are left to train on")
  held_out = splits.split_gms(gt, config.data.test_set, test_gms, 0, config.seed)
  known, unknown = held_out["train"], held_out["test"]
  data.check_gms(unknown, "unknown (held-out)")
  sources = [*known, REAL]
  split = {"train": sources, "val": sources, "test": sources, "unknown": unknown}
  names = class_names(task, split)
  p = parts(config.data)
  for name in sources:
    for s, part in p.items():
      if data.num_images([name], config.data.max_images_per_gm, part) < 1:
        raise builder.DataError(
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
  return dict(split=split, parts=p, class_table=table,
              class_weights={"class": [weights.astype(np.float32)]})

