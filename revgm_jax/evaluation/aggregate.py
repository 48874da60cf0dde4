"""Multi-image parsing (docs/protocol.md#k-image-evaluation): score groups of k images of one GM.

The images of each GM are shuffled (seeded) and cut into disjoint groups of k; the leftover
images (fewer than k) are dropped, and a GM with fewer than k images contributes no group. A
group's prediction is the mean of its images' outputs: continuous values, class probabilities and
gated loss probabilities alike (the paper does not state its rule; the mean of fingerprints is
the alternative that `run.py` adds with `config.eval.aggregate_fingerprints`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import numpy as np

from revgm_jax.evaluation import metrics
from revgm_jax.labels import Space


def disjoint_groups(gm_rows: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
  """[M, k] sample indices: disjoint groups of k samples that share a GM, GM by GM."""
  if k < 1:
    raise ValueError(f"k_images must be >= 1, got {k}")
  gm_rows = np.asarray(gm_rows)
  rng = np.random.default_rng(seed)
  groups = []
  for gm in np.unique(gm_rows):
    idx = rng.permutation(np.nonzero(gm_rows == gm)[0])
    m = len(idx) // k
    groups.append(idx[:m * k].reshape(m, k))
  return np.concatenate(groups, 0) if groups else np.zeros((0, k), np.int64)


def mean_over_groups(tree, groups: np.ndarray):
  """Every [N, ...] leaf -> [M, ...]: the mean over the k members of each group."""
  return jax.tree.map(lambda a: np.asarray(a)[groups].mean(1), tree)


def first_of_groups(tree, groups: np.ndarray):
  """Every [N, ...] leaf -> [M, ...]: the first member's value (labels are equal within a GM)."""
  return jax.tree.map(lambda a: np.asarray(a)[groups[:, 0]], tree)


def k_image_metrics(pred: Mapping, target: Mapping, gm_rows: np.ndarray, ks: Sequence[int],
                    space: Space, seed: int = 0) -> dict[int, dict]:
  """{k: parsing metrics of the k-image groups}; a k that yields no group is left out."""
  out = {}
  for k in ks:
    groups = disjoint_groups(gm_rows, k, seed)
    if len(groups):
      out[int(k)] = metrics.parsing_metrics(mean_over_groups(pred, groups),
                                            first_of_groups(target, groups), space)
      out[int(k)]["num_gms"] = len(np.unique(np.asarray(gm_rows)[groups[:, 0]]))
  return out
