"""Small published-layout folders for tests: IMAGE_DIR/<GM_NAME>/* of random images, and
label directories in the RED116 layout with random tables."""

import csv
import os
import pathlib
import shutil

import numpy as np
from PIL import Image

from revgm_jax import labels

# (height, width, extension) of the images of each GM; sizes and formats vary on purpose.
_SHAPES = [(24, 24, "png"), (30, 20, "png"), (26, 34, "jpg"), (40, 36, "bmp"), (24, 28, "png"),
           (32, 32, "png"), (28, 40, "jpg"), (36, 24, "png")]


def write_layout(root, gm_names, images_per_gm=6, seed=0) -> dict[str, np.ndarray]:
  """Writes root/<GM>/img_<k>.<ext>; returns {"GM/file": RGB uint8 array as decoded by PIL}."""
  rng = np.random.default_rng(seed)
  out = {}
  for gm in gm_names:
    os.makedirs(os.path.join(root, gm), exist_ok=True)
    for k in range(images_per_gm):
      h, w, ext = _SHAPES[k % len(_SHAPES)]
      rel = f"{gm}/img_{k:03d}.{ext}"
      path = os.path.join(root, rel)
      Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
      out[rel] = np.asarray(Image.open(path).convert("RGB"))
  return out


def copy_labels(red116_dir, dest) -> str:
  """The RED116 index and tables in a scratch label dir (tests that edit labels)."""
  os.makedirs(dest, exist_ok=True)
  files = labels.LABEL_FILES["red116"]
  for f in (labels.INDEX_FILE, files["net"], files["loss"], files["group"]):
    shutil.copy(os.path.join(red116_dir, f), dest)
  return str(dest)


# Marginals of the published RED116 tables (docs/labels.md#red116): raw ranges of the 9
# continuous columns, class counts of the 6 discrete ones, positives of the 10 loss types.
_RED116_MIN = (1, 0, 0, 0, 0, 0, 0, 0, 300304)
_RED116_MAX = (105, 92, 40, 35, 57, 8365, 15, 20, 266907367)
_RED116_CLASS_COUNTS = ((72, 19, 19, 6), (10, 74, 8, 24), (15, 74, 24, 3), (80, 36), (39, 77),
                        (67, 49))
_RED116_LOSS_POSITIVES = (45, 21, 14, 4, 45, 14, 14, 6, 11, 49)


def _groups(loss: np.ndarray, space: labels.Space) -> np.ndarray:
  return np.stack([loss[:, list(g)].max(1) for g in space.loss_groups], 1)


def write_red116_labels(dest, seed=0) -> pathlib.Path:
  """A label dir as `labels.load_ground_truth` reads for spaces red116 and v1: the shipped GM
  index with seeded random tables of the published shapes and marginals (each column shuffled
  on its own), coarse flags the OR of their group's fine flags, raw ranges in net_ranges.csv."""
  rng = np.random.default_rng(seed)
  with open(labels.SHIPPED_INDEX, newline="") as f:
    index = list(csv.DictReader(f))
  n = len(index)
  cont = rng.random((n, labels.NUM_CONTINUOUS)) ** 3  # mostly small values, as published
  cont = (cont - cont.min(0)) / (cont.max(0) - cont.min(0))  # min-max normalised
  disc = [rng.permutation(np.repeat(np.arange(len(c)), c)) for c in _RED116_CLASS_COUNTS]
  net = np.concatenate([cont, np.stack(disc, 1)], 1).astype(np.float32)
  loss = np.stack([rng.permutation(np.arange(n) < p) for p in _RED116_LOSS_POSITIVES],
                  1).astype(np.int32)
  gt = labels.GroundTruth(
      space=labels.RED116, names=tuple(r["gm_name"] for r in index), net=net, loss=loss,
      loss_group=_groups(loss, labels.RED116), test_set=np.array(
          [int(r["test_set"] or 0) for r in index], np.int32),
      cont_min=np.array(_RED116_MIN, np.float64), cont_max=np.array(_RED116_MAX, np.float64))
  labels.write_ground_truth(dest, gt)
  shutil.copy(labels.SHIPPED_INDEX, os.path.join(dest, labels.INDEX_FILE))  # + v1 rows
  # v1: the 100 GMs of the legacy files, in their order, with 8 of the 10 loss columns.
  v1 = sorted((int(r["row_in_100gm_files"]), i) for i, r in enumerate(index)
              if r["row_in_100gm_files"])
  rows = [i for _, i in v1]
  v1_loss = loss[rows][:, [0, 1, 2, 3, 4, 5, 6, 9]]
  files = labels.LABEL_FILES["v1"]
  for key, table in (("net", net[rows]), ("loss", v1_loss),
                     ("group", _groups(v1_loss, labels.V1))):
    np.save(os.path.join(dest, files[key]), table.astype(np.float64))
  return pathlib.Path(dest)
