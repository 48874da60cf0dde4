"""Fixed (untrained) image features for a low-capacity parser beside the deep one.

Why: the deep parser learns its fingerprint from a few dozen training GMs; a handful of
hand-made statistics that are known to carry generator traces (up-sampling periodicity, the
high-frequency spectrum, the output non-linearity's value range) give a parser with almost no
capacity to overfit, and a feature space for the nearest-GM baseline that does not depend on a
trained network. Pure NumPy/SciPy, deterministic, vectorised over images.

Blocks (`block_slices` gives each block's columns in the feature vector; `S` = image side):
  spectrum          log power of the high-pass grey residual (grey - 3x3 box blur), rfft2,
                    [H * (W // 2 + 1)]
  radial_residual   azimuthal (ring) mean of that log power, [R] rings of integer radius
  radial_image      the same of the grey image itself (smoothness, colour-free), [R]
  upsample_phase    up-sampling residual x - nearest_up_f(nearest_down_f(x)), f = 2, 4, 8:
                    log mean energy at each phase (i mod f, j mod f) but (0, 0), [3 + 15 + 63]
  highpass_phase    share of the high-pass residual energy at each phase mod 2 and mod 4
                    (checkerboard traces of strided up-sampling), [4 + 16]
  histogram         per-channel 16-bin pixel-value histogram (fractions), [48]
  saturation        per channel: fraction of pixels at 0 and at 1, within 2/255 of 0 and of 1,
                    min, max, mean, std; image min == 0 and max == 1 (a min-max stretched
                    output); channel correlations, [3 * 8 + 2 + 3]
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_GREY = np.array([0.299, 0.587, 0.114], np.float32)
_FACTORS = (2, 4, 8)  # up-sampling residual factors (those that divide the image side)
_HP_PERIODS = (2, 4)  # phases of the high-pass residual energy
_BINS = 16
_EPS = 1e-10
CHUNK = 1024  # images per vectorised step (bounds memory)


def _as_unit(images: np.ndarray) -> np.ndarray:
  """uint8 or float [N, H, W, 3] -> float32 in [0, 1]."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"image_features: expected [N, H, W, 3] images, got {images.shape}")
  if images.dtype == np.uint8:
    return images.astype(np.float32) / 255.0
  return np.clip(images.astype(np.float32), 0.0, 1.0)


def _factors(h: int, w: int) -> tuple[int, ...]:
  return tuple(f for f in _FACTORS if h % f == 0 and w % f == 0 and min(h, w) >= 2 * f)


def _ring_index(h: int, w: int) -> np.ndarray:
  """[H, W // 2 + 1] integer radius of each rfft2 frequency (in cycles per image)."""
  fy = np.fft.fftfreq(h) * h
  fx = np.fft.rfftfreq(w) * w
  return np.round(np.hypot(fy[:, None], fx[None, :])).astype(np.int64)


def block_sizes(h: int, w: int) -> dict[str, int]:
  """{block name: number of columns} for images of side h x w, in feature order."""
  rings = int(_ring_index(h, w).max()) + 1
  return {
      "spectrum": h * (w // 2 + 1),
      "radial_residual": rings,
      "radial_image": rings,
      "upsample_phase": sum(f * f - 1 for f in _factors(h, w)),
      "highpass_phase": sum(p * p for p in _HP_PERIODS if h % p == 0 and w % p == 0),
      "histogram": 3 * _BINS,
      "saturation": 3 * 8 + 2 + 3,
  }


def block_slices(h: int, w: int) -> dict[str, slice]:
  """{block name: slice of the feature vector}: what the report can name per block."""
  out, start = {}, 0
  for name, n in block_sizes(h, w).items():
    out[name] = slice(start, start + n)
    start += n
  return out


def _radial(logp: np.ndarray, ring: np.ndarray) -> np.ndarray:
  """[N, H, W'] -> [N, R] mean over each ring of integer radius."""
  n_rings = int(ring.max()) + 1
  onehot = np.eye(n_rings, dtype=np.float32)[ring.reshape(-1)]  # [H * W', R]
  return logp.reshape(len(logp), -1) @ onehot / onehot.sum(0)


def _phase_energy(e: np.ndarray, f: int) -> np.ndarray:
  """[N, H, W] energy -> [N, f * f] its mean at each phase (i mod f, j mod f)."""
  n, h, w = e.shape
  return e.reshape(n, h // f, f, w // f, f).mean(axis=(1, 3)).reshape(n, f * f)


def _upsample_phase(x: np.ndarray, factors) -> np.ndarray:
  """[N, 3, H, W] -> log energy of x - nearest_up(nearest_down(x)) by phase, (0, 0) dropped."""
  n, c, h, w = x.shape
  out = []
  for f in factors:
    blocks = x.reshape(n, c, h // f, f, w // f, f)  # the f x f blocks of each channel
    e = ((blocks - blocks[:, :, :, :1, :, :1]) ** 2).mean(axis=(1, 2, 4))  # [N, f, f]
    out.append(np.log(e.reshape(n, f * f)[:, 1:] + _EPS))
  return np.concatenate(out, 1)


def _saturation(x: np.ndarray) -> np.ndarray:
  """[N, 3, H, W] -> [N, 29] saturation and moment statistics (see the module docstring)."""
  n = len(x)
  flat = x.reshape(n, 3, -1)  # [N, 3, P]
  lo, hi = 0.5 / 255, 1 - 0.5 / 255
  mn, mx, mean = flat.min(2), flat.max(2), flat.mean(2)  # [N, 3]
  c = flat - mean[..., None]
  cov = np.einsum("ncp,ndp->ncd", c, c) / flat.shape[2]  # [N, 3, 3]
  var = np.diagonal(cov, axis1=1, axis2=2)  # [N, 3]
  s = np.sqrt(var) + 1e-6
  corr = cov[:, [0, 0, 1], [1, 2, 2]] / (s[:, [0, 0, 1]] * s[:, [1, 2, 2]])
  stats = [(flat <= lo).mean(2), (flat >= hi).mean(2), (flat <= 2 / 255).mean(2),
           (flat >= 1 - 2 / 255).mean(2), mn, mx, mean, np.sqrt(var)]
  stretched = [(mn.min(1) <= lo)[:, None], (mx.max(1) >= hi)[:, None]]
  return np.concatenate(stats + stretched + [corr], 1)


def _histogram(x: np.ndarray) -> np.ndarray:
  """[N, 3, H, W] -> [N, 3 * BINS] per-channel value histogram (fractions)."""
  n = len(x)
  b = np.minimum((x * _BINS).astype(np.int32), _BINS - 1).reshape(n * 3, -1)  # [N * 3, P]
  b += _BINS * np.arange(n * 3, dtype=np.int32)[:, None]
  counts = np.bincount(b.reshape(-1), minlength=n * 3 * _BINS).reshape(n, 3 * _BINS)
  return counts / (b.shape[1])


def _chunk_features(x: np.ndarray) -> np.ndarray:
  """float32 [N, H, W, 3] in [0, 1] -> [N, D]."""
  _, h, w, _ = x.shape
  grey = x @ _GREY  # [N, H, W]
  residual = grey - ndimage.uniform_filter(grey, size=(1, 3, 3), mode="reflect")
  logp = np.log(np.abs(np.fft.rfft2(residual, axes=(1, 2))) ** 2 + _EPS)  # [N, H, W//2+1]
  logp_image = np.log(np.abs(np.fft.rfft2(grey - grey.mean((1, 2), keepdims=True),
                                          axes=(1, 2))) ** 2 + _EPS)
  ring = _ring_index(h, w)
  planar = np.ascontiguousarray(x.transpose(0, 3, 1, 2))  # [N, 3, H, W]
  e = residual ** 2
  total = e.mean((1, 2))[:, None] + _EPS
  hp = [_phase_energy(e, p) / total for p in _HP_PERIODS if h % p == 0 and w % p == 0]
  blocks = [logp.reshape(len(x), -1), _radial(logp, ring), _radial(logp_image, ring),
            _upsample_phase(planar, _factors(h, w)), *hp, _histogram(planar), _saturation(planar)]
  return np.concatenate(blocks, 1).astype(np.float32)


def unit_images(images: np.ndarray, mean: float, std: float) -> np.ndarray:
  """Model inputs [N, S, S, 3] (normalised with config.data.mean/std) back to [0, 1]."""
  return np.clip(np.asarray(images, np.float32) * std + mean, 0.0, 1.0)


def image_features(images: np.ndarray) -> np.ndarray:
  """[N, H, W, 3] uint8, or float in [0, 1] -> [N, D] float32 features (D: `block_sizes`)."""
  x = _as_unit(images)
  if len(x) == 0:
    return np.zeros((0, sum(block_sizes(*x.shape[1:3]).values())), np.float32)
  return np.concatenate([_chunk_features(x[i:i + CHUNK]) for i in range(0, len(x), CHUNK)])


def gm_mean_features(features: np.ndarray, gm_rows: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
  """(GM rows [T] present, mean feature [T, D] of each): per-GM features for fitting."""
  gm_rows = np.asarray(gm_rows)
  present, inverse = np.unique(gm_rows, return_inverse=True)
  sums = np.zeros((len(present), features.shape[1]), np.float64)
  np.add.at(sums, inverse, features)
  return present, (sums / np.bincount(inverse)[:, None]).astype(np.float32)
