"""Real images for the zoo: random crops of photographs that ship inside installed packages.

Only files present in the packages' own directories are read (scikit-image's bundled
`skimage/data`, scikit-learn's `sklearn/datasets/images`, matplotlib's `mpl-data/sample_data`),
never `skimage.data` loaders, which may try to download. Synthetic pictures (charts, logos,
text, test patterns) are left out; greyscale photographs are used as 3 equal channels.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import numpy as np
from PIL import Image

# (package, folder inside the package, file names): natural photographs only.
SOURCES = (
    ("skimage", "data", ("astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg",
                         "ihc.png", "motorcycle_left.png", "retina.jpg", "rocket.jpg",
                         "camera.png", "brick.png", "grass.png", "gravel.png", "moon.png",
                         "coins.png", "cell.png", "clock_motion.png")),
    ("sklearn", os.path.join("datasets", "images"), ("china.jpg", "flower.jpg")),
    ("matplotlib", os.path.join("mpl-data", "sample_data"), ("grace_hopper.jpg",)),
)
MIN_SOURCES = 4


def source_paths() -> list[str]:
  """Paths of the bundled photographs that exist in this environment, in a fixed order."""
  paths = []
  for package, folder, names in SOURCES:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
      continue
    root = os.path.join(list(spec.submodule_search_locations)[0], folder)
    paths += [os.path.join(root, n) for n in names if os.path.isfile(os.path.join(root, n))]
  if len(paths) < MIN_SOURCES:
    raise FileNotFoundError(
        f"found only {len(paths)} bundled sample photographs ({paths}); the zoo needs "
        f"{MIN_SOURCES}: install scikit-image, scikit-learn and matplotlib with their data files")
  return paths


@functools.lru_cache(maxsize=1)
def load_sources() -> tuple[np.ndarray, ...]:
  """The source photographs as uint8 RGB arrays [H, W, 3]."""
  return tuple(np.asarray(Image.open(p).convert("RGB")) for p in source_paths())


def random_crops(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """n random square crops resized to size x size: (uint8 [n, size, size, 3], source ids [n]).

  The crop side is drawn log-uniformly between `size` and half the shorter image side (at
  least `size`), so crops span scales from pixel-level texture to objects; resizing uses a
  box filter (area averaging), position and source are uniform.
  """
  sources = load_sources()
  small = [p for p, img in zip(source_paths(), sources) if min(img.shape[:2]) < size]
  if small:
    raise ValueError(f"image size {size} is larger than the sample photographs {small}")
  rng = np.random.default_rng(seed)
  ids = rng.integers(0, len(sources), n)
  out = np.empty((n, size, size, 3), np.uint8)
  for i, s in enumerate(ids):
    img = sources[s]
    h, w = img.shape[:2]
    hi = max(size, min(h, w) // 2)
    side = int(round(np.exp(rng.uniform(np.log(size), np.log(hi)))))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = Image.fromarray(img[y:y + side, x:x + side])
    out[i] = np.asarray(crop.resize((size, size), Image.BOX)) if side != size else crop
  return out, ids.astype(np.int32)
