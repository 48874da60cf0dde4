"""Linear heads on fixed image features: the "spectral features + linear heads" parser.

Why: a parser with almost no capacity is the honest yardstick for the deep one on a few dozen
training GMs, and, being linear, it is cheap enough to fit in seconds and to ship as a handful
of arrays. Fitting (`fitting.fit`) uses scikit-learn; prediction is pure NumPy from
the stored coefficients, so `revgm parse` can load a parser without scikit-learn, and the
parser is saved as a flat dict of arrays (np.savez, loaded with allow_pickle=False).

Heads (one standardisation of the features shared by all; fitted on its leading principal
components, then mapped back, so every head is linear in the standardised features):
  cont   Ridge, 9 outputs, clipped to [0, 1]; alpha per column by grouped CV
  disc   multinomial LogisticRegression per discrete head (absent classes get P = 0)
  group  binary LogisticRegression per coarse loss group, P(yes)
  loss   binary LogisticRegression per fine loss type, P(yes) (not gated by the group)
The regularisation is chosen by GroupKFold over the *training* GMs (a zoo cohort is one group,
so a held-out fold holds architectures the fold's training did not see), never on validation or
test GMs.
"""

from __future__ import annotations

import dataclasses
import zipfile
from typing import Mapping, Sequence

import numpy as np

from revgm_jax.labels import NUM_CONTINUOUS, GroundTruth

NAME = "spectral features + linear heads"
BIG_LOGIT = 30.0  # |logit| of a head whose training GMs hold one class only
ABSENT_LOGIT = -1e30  # logit bias of a class that no training GM has


def _sigmoid(z: np.ndarray) -> np.ndarray:
  return 0.5 * (1.0 + np.tanh(0.5 * z))


def softmax(z: np.ndarray) -> np.ndarray:
  z = z - z.max(-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(-1, keepdims=True)


@dataclasses.dataclass(frozen=True)
class SpectralParser:
  """Coefficients of the linear heads on standardised features (D = feature size)."""
  mean: np.ndarray  # [D]
  scale: np.ndarray  # [D]
  cont_w: np.ndarray  # [D, 9]
  cont_b: np.ndarray  # [9]
  disc_w: tuple[np.ndarray, ...]  # 6 x [D, k]
  disc_b: tuple[np.ndarray, ...]  # 6 x [k]
  group_w: np.ndarray  # [D, G]
  group_b: np.ndarray  # [G]
  loss_w: np.ndarray  # [D, L]
  loss_b: np.ndarray  # [L]
  # What was chosen by the inner CV (kept for the report): alpha per continuous column, C per
  # logistic family (disc, group, loss).
  cont_alpha: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
  family_c: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

  @property
  def num_features(self) -> int:
    return len(self.mean)

  def predict(self, features: np.ndarray) -> dict:
    """[N, D] features -> {"cont": [N, 9], "disc": 6 x [N, k], "group": [N, G], "loss": [N, L]}
    (the `evaluation.metrics` prediction format; probabilities)."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[1] != self.num_features:
      raise ValueError(f"SpectralParser: expected [N, {self.num_features}] features, got "
                       f"{x.shape} (features of another image size or version?)")
    z = (x - self.mean) / self.scale
    return {"cont": np.clip(z @ self.cont_w + self.cont_b, 0.0, 1.0).astype(np.float32),
            "disc": [softmax(z @ w + b).astype(np.float32)
                     for w, b in zip(self.disc_w, self.disc_b)],
            "group": _sigmoid(z @ self.group_w + self.group_b).astype(np.float32),
            "loss": _sigmoid(z @ self.loss_w + self.loss_b).astype(np.float32)}

  def to_arrays(self) -> dict[str, np.ndarray]:
    """A flat {name: array} dict (np.savez-able, no object arrays)."""
    out = {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self)
           if f.name not in ("disc_w", "disc_b")}
    for j, (w, b) in enumerate(zip(self.disc_w, self.disc_b)):
      out[f"disc_w_{j}"], out[f"disc_b_{j}"] = np.asarray(w), np.asarray(b)
    return out

  @classmethod
  def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> "SpectralParser":
    """Inverse of `to_arrays` (accepts an `np.load` NpzFile)."""
    n_disc = len([k for k in arrays if k.startswith("disc_w_")])
    kw = {f.name: np.asarray(arrays[f.name]) for f in dataclasses.fields(cls)
          if f.name not in ("disc_w", "disc_b") and f.name in arrays}
    return cls(disc_w=tuple(np.asarray(arrays[f"disc_w_{j}"]) for j in range(n_disc)),
               disc_b=tuple(np.asarray(arrays[f"disc_b_{j}"]) for j in range(n_disc)), **kw)

  def save(self, path: str):
    np.savez(path, **self.to_arrays())

  @classmethod
  def load(cls, path: str) -> "SpectralParser":
    """The parser saved at `path`; a ValueError naming the file if it is not one."""
    try:
      with np.load(path, allow_pickle=False) as f:
        return cls.from_arrays({k: f[k] for k in f.files})
    except (ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
      raise ValueError(f"{path} is not a spectral parser saved by revgm_jax ({e}); run eval.py "
                       "on the workdir to write it again") from e


def targets(gt: GroundTruth, rows: np.ndarray) -> dict[str, np.ndarray]:
  """Per-sample targets: cont [N, 9], disc [N, 6] int, group [N, G], loss [N, L]."""
  net = gt.net[rows]
  return {"cont": net[:, :NUM_CONTINUOUS].astype(np.float64),
          "disc": net[:, NUM_CONTINUOUS:].astype(np.int64),
          "group": gt.loss_group[rows].astype(np.int64), "loss": gt.loss[rows].astype(np.int64)}
