"""The hyperparameter spaces that model parsing predicts, and their ground-truth tables.

A *space* says what the labels mean (docs/labels.md#spaces): 15 architecture columns (9
continuous, min-max normalised to [0, 1]; 6 discrete) and L binary loss-type flags in G coarse
groups. *Ground truth* is one label row per generative model (GM), read from a label directory
that holds the `.npy` tables and `gm_index.csv` (GM folder name -> row, leave-out test set).
GM names are mapped to rows through that index, never through sorted folder order
(docs/labels.md#row-order: `sorted()` swaps CONT_ENC/CONTRAGAN and the WGAN variants of RED116).
The red116 and v1 tables share one index, which ships with the package: a label directory of
those spaces needs only the official tables.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from typing import Sequence

import numpy as np

NET_COLUMNS = (
    "num_layers", "num_conv_layers", "num_fc_layers", "num_pool_layers", "num_norm_layers",
    "num_filters", "num_blocks", "num_layers_per_block", "num_params",
    "normalization_type", "nonlin_last_layer", "nonlin_last_block", "upsampling_type",
    "skip_connection", "downsampling",
)
NUM_CONTINUOUS = 9
NUM_NET = len(NET_COLUMNS)


@dataclasses.dataclass(frozen=True)
class Space:
  """What the label columns mean; head sizes of the parsing network come from here."""
  name: str
  net_names: tuple[str, ...]
  class_names: tuple[tuple[str, ...], ...]  # one tuple per discrete column (6)
  loss_names: tuple[str, ...]
  loss_groups: tuple[tuple[int, ...], ...]  # fine loss indices of each coarse group
  group_names: tuple[str, ...]

  def __post_init__(self):
    if len(self.net_names) != NUM_NET or len(self.class_names) != NUM_NET - NUM_CONTINUOUS:
      raise ValueError(f"space {self.name}: need {NUM_NET} net columns, 6 of them discrete")
    fine = sorted(i for g in self.loss_groups for i in g)
    if fine != list(range(len(self.loss_names))):
      raise ValueError(f"space {self.name}: loss groups {self.loss_groups} must partition "
                       f"the {len(self.loss_names)} loss types")
    if len(self.group_names) != len(self.loss_groups):
      raise ValueError(f"space {self.name}: {len(self.group_names)} group names for "
                       f"{len(self.loss_groups)} groups")

  @property
  def continuous_names(self) -> tuple[str, ...]:
    return self.net_names[:NUM_CONTINUOUS]

  @property
  def discrete_names(self) -> tuple[str, ...]:
    return self.net_names[NUM_CONTINUOUS:]

  @property
  def num_continuous(self) -> int:
    return NUM_CONTINUOUS

  @property
  def discrete_classes(self) -> tuple[int, ...]:
    return tuple(len(c) for c in self.class_names)

  @property
  def num_loss_types(self) -> int:
    return len(self.loss_names)

  @property
  def num_groups(self) -> int:
    return len(self.loss_groups)

  @property
  def group_of_loss(self) -> np.ndarray:
    """[L] int: the coarse group of each fine loss type."""
    out = np.zeros(self.num_loss_types, np.int32)
    for g, members in enumerate(self.loss_groups):
      out[list(members)] = g
    return out


def _classes(*counts: int) -> tuple[tuple[str, ...], ...]:
  return tuple(tuple(f"class_{k}" for k in range(n)) for n in counts)


_LOSS10 = ("l1", "l2", "mse", "mmd", "adversarial", "wasserstein", "kl", "hinge",
           "least_squares", "cross_entropy")
_GROUPS = ("pixel", "distribution", "classification")

# RED116 (TPAMI): the meaning of the class indices is unknown, so they are named class_k; the
# loss names are tentative (docs/labels.md#red116).
RED116 = Space(
    name="red116", net_names=NET_COLUMNS, class_names=_classes(4, 4, 4, 2, 2, 2),
    loss_names=_LOSS10, loss_groups=((0, 1, 2, 3), (4, 5, 6, 7, 8), (9,)), group_names=_GROUPS)

# arXiv v1 (100 GMs): 8 loss types, columns 0-6 and 9 of the 10-type space.
V1 = Space(
    name="v1", net_names=NET_COLUMNS, class_names=_classes(4, 4, 4, 2, 2, 2),
    loss_names=_LOSS10[:7] + _LOSS10[9:], loss_groups=((0, 1, 2, 3), (4, 5, 6), (7,)),
    group_names=_GROUPS)

# Our zoo (revgm_jax.zoo): same column layout, with meanings the zoo defines. Column 14 is the
# zoo's latent projection (conv-from-reshape vs. fully connected); our generators do not
# down-sample. Column 12 merges the zoo's four up-sampling kinds into learned vs. interpolated.
ZOO = Space(
    name="zoo",
    net_names=NET_COLUMNS[:14] + ("fc_latent_projection",),
    class_names=(
        ("none", "batch", "instance", "layer"),
        ("tanh", "sigmoid", "none", "clip"),
        ("relu", "leaky_relu", "gelu", "elu"),
        ("learned", "interpolation"),
        ("no", "yes"),
        ("no", "yes"),
    ),
    loss_names=("l1", "l2", "mse", "mmd", "nonsaturating_adversarial", "wasserstein_gp", "kl",
                "hinge", "least_squares", "cross_entropy"),
    loss_groups=((0, 1, 2, 3), (4, 5, 6, 7, 8), (9,)),
    group_names=_GROUPS,
)

SPACES = {s.name: s for s in (RED116, V1, ZOO)}


def get_space(name: str) -> Space:
  if name not in SPACES:
    raise ValueError(f"unknown hyperparameter space {name!r}; known: {sorted(SPACES)}")
  return SPACES[name]


# File names of the ground-truth tables of each space inside a label directory.
# `row_column` is the gm_index.csv column that gives a GM's row in those tables.
LABEL_FILES = {
    "red116": dict(net="ground_truth_net_116_15dim.npy", loss="ground_truth_loss_116_9dim.npy",
                   group="ground_truth_loss_116_3dim.npy", row_column="row"),
    "v1": dict(net="ground_truth_net_arch_15dim_file.npy",
               loss="ground_truth_loss_func_8dim_file.npy",
               group="ground_truth_loss_func_3dim_file.npy", row_column="row_in_100gm_files"),
    "zoo": dict(net="ground_truth_net_15dim.npy", loss="ground_truth_loss_10dim.npy",
                group="ground_truth_loss_3dim.npy", row_column="row"),
}
INDEX_FILE = "gm_index.csv"
# Our GM-name-to-row index of the published tables (docs/labels.md#gm-index), used where a
# red116 / v1 label directory has no gm_index.csv of its own.
SHIPPED_INDEX = os.path.join(os.path.dirname(os.path.abspath(__file__)), "label_tables",
                             "red116_gm_index.csv")
RANGES_FILE = "net_ranges.csv"  # name,min,max of the 9 continuous columns (raw units)
RED140_RAW_FILE = "red140_net_arch_raw.csv"


def minmax_normalize(raw: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
  """Per-column (x - min) / (max - min); a constant column maps to 0."""
  span = np.where(hi > lo, hi - lo, 1.0)
  return (np.asarray(raw, np.float64) - lo) / span


def minmax_denormalize(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
  """Inverse of `minmax_normalize` (back to raw units)."""
  return np.asarray(x, np.float64) * (hi - lo) + lo


@dataclasses.dataclass(frozen=True)
class GroundTruth:
  """Label rows of a GM set, in table order.

  net:        [N, 15] float32; columns 0-8 normalised to [0, 1], 9-14 class indices.
  loss:       [N, L] int32 binary loss-type flags.
  loss_group: [N, G] int32 binary coarse-group flags.
  test_set:   [N] int32 leave-out test set (1..4), 0 = always training.
  cont_min/cont_max: [9] raw-unit ranges of the continuous columns, or None if unknown.
  cohort:     [N] int32 cohort of a zoo GM (GMs of one architecture, docs/labels.md#zoo-cohorts),
              -1 = none; None when the index has no cohort column.
  """
  space: Space
  names: tuple[str, ...]
  net: np.ndarray
  loss: np.ndarray
  loss_group: np.ndarray
  test_set: np.ndarray
  cont_min: np.ndarray | None = None
  cont_max: np.ndarray | None = None
  cohort: np.ndarray | None = None

  def __len__(self) -> int:
    return len(self.names)

  def row(self, gm_name: str) -> int:
    try:
      return self.names.index(gm_name)
    except ValueError:
      raise KeyError(f"GM {gm_name!r} is not in the ground-truth index "
                     f"({len(self.names)} GMs, e.g. {', '.join(self.names[:3])})") from None

  def rows(self, gm_names: Sequence[str]) -> np.ndarray:
    return np.array([self.row(n) for n in gm_names], np.int32)

  def test_gms(self, test_set: int) -> list[str]:
    """Names of the GMs of leave-out test set `test_set` (1-based)."""
    if test_set not in set(int(t) for t in self.test_set if t > 0):
      raise ValueError(f"no GM belongs to test set {test_set}; sets present: "
                       f"{sorted(set(int(t) for t in self.test_set if t > 0))}")
    return [n for n, t in zip(self.names, self.test_set) if t == test_set]

  def denormalize(self, cont: np.ndarray) -> np.ndarray:
    """[..., 9] normalised continuous values -> raw units."""
    if self.cont_min is None:
      raise ValueError("this label set has no raw ranges (net_ranges.csv); only normalised "
                       "values are available")
    return minmax_denormalize(cont, self.cont_min, self.cont_max)

  def subset(self, gm_names: Sequence[str]) -> "GroundTruth":
    r = self.rows(gm_names)
    return dataclasses.replace(self, names=tuple(gm_names), net=self.net[r], loss=self.loss[r],
                               loss_group=self.loss_group[r], test_set=self.test_set[r],
                               cohort=None if self.cohort is None else self.cohort[r])


def _load_table(path: str, shape: tuple[int, int]) -> np.ndarray:
  if not os.path.exists(path):
    raise FileNotFoundError(f"ground-truth table {path} does not exist")
  try:
    a = np.load(path, allow_pickle=False)
  except Exception as e:  # a corrupt or pickled file
    raise ValueError(f"ground-truth table {path} cannot be read as a .npy array: {e}") from e
  if a.shape != shape:
    raise ValueError(f"ground-truth table {path} has shape {a.shape}, expected {shape}")
  if not np.all(np.isfinite(a)):
    bad = np.argwhere(~np.isfinite(a))[0]
    raise ValueError(f"ground-truth table {path} holds a non-finite value at row {bad[0]}, "
                     f"column {bad[1]}")
  return a


def _read_index(path: str, row_column: str
                ) -> tuple[list[str], list[int], list[int], list[int] | None]:
  if not os.path.exists(path):
    raise FileNotFoundError(f"GM index {path} does not exist")
  names, rows, sets, cohorts = [], [], [], []
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    for col in (row_column, "gm_name"):
      if col not in (reader.fieldnames or []):
        raise ValueError(f"GM index {path} has no column {col!r} (columns: {reader.fieldnames})")
    for line, rec in enumerate(reader, start=2):
      if rec[row_column] in ("", None):
        continue  # this GM is not part of this label set (e.g. the 100-GM v1 tables)
      try:
        rows.append(int(rec[row_column]))
        sets.append(int(rec.get("test_set") or 0))
        cohorts.append(int(rec.get("cohort") or -1))
      except ValueError:
        raise ValueError(f"GM index {path} line {line}: {row_column}={rec[row_column]!r} / "
                         f"test_set={rec.get('test_set')!r} / cohort={rec.get('cohort')!r} are "
                         "not integers") from None
      names.append(rec["gm_name"])
  order = np.argsort(rows)
  if sorted(rows) != list(range(len(rows))):
    raise ValueError(f"GM index {path}: column {row_column!r} must number the rows 0..{len(rows)-1}"
                     " exactly once each")
  if len(set(names)) != len(names):
    raise ValueError(f"GM index {path} names a GM twice")
  has_cohort = "cohort" in (reader.fieldnames or [])
  return ([names[i] for i in order], [rows[i] for i in order], [sets[i] for i in order],
          [cohorts[i] for i in order] if has_cohort else None)


def _read_ranges(labels_dir: str, n: int) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
  path = os.path.join(labels_dir, RANGES_FILE)
  if os.path.exists(path):
    with open(path, newline="") as f:
      recs = list(csv.DictReader(f))
    if len(recs) != NUM_CONTINUOUS:
      raise ValueError(f"{path} must have {NUM_CONTINUOUS} rows (name,min,max), has {len(recs)}")
    return (np.array([float(r["min"]) for r in recs]), np.array([float(r["max"]) for r in recs]))
  raw = os.path.join(labels_dir, RED140_RAW_FILE)
  if os.path.exists(raw):  # the published raw table: ranges over its first n (= 116) rows
    with open(raw, newline="") as f:
      recs = list(csv.reader(f))[1:n + 1]
    vals = np.array([[float(v) for v in r[2:2 + NUM_CONTINUOUS]] for r in recs])
    return vals.min(0), vals.max(0)
  return None, None


def index_path(labels_dir: str, space: str) -> str:
  """The GM index of a label directory: its own gm_index.csv, else the shipped one (red116, v1)."""
  own = os.path.join(labels_dir, INDEX_FILE)
  if os.path.exists(own) or space not in ("red116", "v1"):
    return own
  return SHIPPED_INDEX


def load_ground_truth(labels_dir: str, space: str | Space = "red116") -> GroundTruth:
  """Reads and validates the ground-truth tables of `space` from `labels_dir`."""
  space = get_space(space) if isinstance(space, str) else space
  if not os.path.isdir(labels_dir):
    raise FileNotFoundError(f"label directory {labels_dir} does not exist")
  files = LABEL_FILES[space.name]
  names, _, sets, cohorts = _read_index(index_path(labels_dir, space.name), files["row_column"])
  n = len(names)
  net = _load_table(os.path.join(labels_dir, files["net"]), (n, NUM_NET))
  loss = _load_table(os.path.join(labels_dir, files["loss"]), (n, space.num_loss_types))
  group = _load_table(os.path.join(labels_dir, files["group"]), (n, space.num_groups))
  cont = net[:, :NUM_CONTINUOUS]
  if cont.min() < -1e-6 or cont.max() > 1 + 1e-6:
    raise ValueError(f"{files['net']}: continuous columns must be min-max normalised to [0, 1], "
                     f"found range [{cont.min():.3g}, {cont.max():.3g}]")
  for j, k in enumerate(space.discrete_classes):
    col = net[:, NUM_CONTINUOUS + j]
    if np.any(col != np.round(col)) or col.min() < 0 or col.max() >= k:
      raise ValueError(f"{files['net']}: column {NUM_CONTINUOUS + j} "
                       f"({space.discrete_names[j]}) must hold class indices 0..{k - 1}")
  for fname, a in ((files["loss"], loss), (files["group"], group)):
    if not np.all((a == 0) | (a == 1)):
      raise ValueError(f"{fname}: loss flags must be 0 or 1")
  lo, hi = _read_ranges(labels_dir, n)
  return GroundTruth(space=space, names=tuple(names), net=net.astype(np.float32),
                     loss=loss.astype(np.int32), loss_group=group.astype(np.int32),
                     test_set=np.array(sets, np.int32), cont_min=lo, cont_max=hi,
                     cohort=None if cohorts is None else np.array(cohorts, np.int32))


def write_ground_truth(labels_dir: str, gt: GroundTruth, extra_columns: dict | None = None):
  """Writes `gt` in the label-directory format that `load_ground_truth` reads."""
  os.makedirs(labels_dir, exist_ok=True)
  files = LABEL_FILES[gt.space.name]
  np.save(os.path.join(labels_dir, files["net"]), gt.net.astype(np.float64))
  np.save(os.path.join(labels_dir, files["loss"]), gt.loss.astype(np.float64))
  np.save(os.path.join(labels_dir, files["group"]), gt.loss_group.astype(np.float64))
  extra_columns = extra_columns or {}
  with open(os.path.join(labels_dir, INDEX_FILE), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["row", "gm_name", "test_set", *extra_columns])
    for i, name in enumerate(gt.names):
      t = int(gt.test_set[i])
      w.writerow([i, name, t if t else "", *(v[i] for v in extra_columns.values())])
  if gt.cont_min is not None:
    with open(os.path.join(labels_dir, RANGES_FILE), "w", newline="") as f:
      w = csv.writer(f)
      w.writerow(["name", "min", "max"])
      for name, lo, hi in zip(gt.space.continuous_names, gt.cont_min, gt.cont_max):
        w.writerow([name, repr(float(lo)), repr(float(hi))])


def class_weights(gt: GroundTruth, rows: Sequence[int] | None = None) -> dict[str, list[np.ndarray]]:
  """PyTorch-style class weights N / count_c, counted over GMs (not images).

  rows: the GMs to count over (the training GMs of a split, or None for all GMs as the
  official code does). A class absent from `rows` gets weight 0: no target of that class
  occurs in training, so the weight never enters the loss.
  Returns {"disc": 6 x [k], "group": G x [2], "loss": L x [2]} float32 arrays.
  """
  rows = np.arange(len(gt)) if rows is None else np.asarray(rows)

  def weights(labels: np.ndarray, k: int) -> np.ndarray:
    counts = np.bincount(labels.astype(np.int64), minlength=k).astype(np.float64)
    return np.where(counts > 0, len(labels) / np.maximum(counts, 1), 0.0).astype(np.float32)

  net = gt.net[rows]
  return {
      "disc": [weights(net[:, NUM_CONTINUOUS + j], k)
               for j, k in enumerate(gt.space.discrete_classes)],
      "group": [weights(gt.loss_group[rows, g], 2) for g in range(gt.space.num_groups)],
      "loss": [weights(gt.loss[rows, i], 2) for i in range(gt.space.num_loss_types)],
  }


# The per-example label arrays of a ground-truth row, as a batch and a TFRecord example carry
# them: net [15] float32, loss [L] int32, loss_group [G] int32.
LABEL_KEYS = ("net", "loss", "loss_group")

# Real images, the extra class of detection and attribution (docs/tasks.md#data): its name (of
# the class, its folder and its TFDS split) and its gm_row, no row of a ground truth (-1 marks
# evaluation padding).
REAL = "real"
REAL_ROW = -2
