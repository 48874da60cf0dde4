"""Writes small published-layout folders (IMAGE_DIR/<GM_NAME>/*) of random images for tests."""

import os
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
