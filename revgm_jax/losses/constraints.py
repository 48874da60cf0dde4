"""The four fingerprint-property (constraint) losses of the FEN (docs/losses.md#constraint-losses).

All terms act on the luma of the fingerprint and on its centred magnitude spectrum
S = |fftshift(fft2(F_gray))|, computed in float32 whatever the trunk's dtype. Inside
`shard_map` pass `axis_name`: every mean becomes psum(sum) / psum(count) and the high-band
max becomes the max over the global batch, so N devices give the 1-device value.
"""

import jax
import jax.numpy as jnp
import ml_collections
from jax import lax

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601
TERMS = ("mag", "spec", "rep", "sym")


def low_freq_radius(config: ml_collections.ConfigDict) -> int:
  """config.loss.low_freq_radius, or n = 25 at 64 x 64 scaled with config.image_size."""
  if config.loss.low_freq_radius >= 0:
    return int(config.loss.low_freq_radius)
  return round(25 * config.image_size / 64)


def luma(f):  # [B, H, W, 3] -> [B, H, W] float32
  f = f.astype(jnp.float32)
  return LUMA[0] * f[..., 0] + LUMA[1] * f[..., 1] + LUMA[2] * f[..., 2]


def spectrum(gray):  # [B, H, W] -> [B, H, W] magnitude, DC at (H // 2, W // 2)
  # Full (two-sided) fft2; jnp.abs has a finite gradient at zero bins, sqrt(re^2 + im^2) not.
  return jnp.fft.fftshift(jnp.abs(jnp.fft.fft2(gray.astype(jnp.float32))), axes=(-2, -1))


def _window(h: int, w: int, radius: int) -> tuple[slice, slice]:
  """Rows/columns of the (2n+1) x (2n+1) low-frequency window centred on DC."""
  ch, cw = h // 2, w // 2
  if not 0 <= radius <= min(ch, cw, h - ch - 1, w - cw - 1):
    raise ValueError(f"low-frequency radius {radius} (config.loss.low_freq_radius) does not fit "
                     f"a {h} x {w} spectrum; it must be <= {min(ch, cw, h - ch - 1, w - cw - 1)}")
  return slice(ch - radius, ch + radius + 1), slice(cw - radius, cw + radius + 1)


def _global_max(x, axis_name):
  """max(x) over the global batch, with jnp.max's gradient (split evenly among ties).

  lax.pmax has no differentiation rule, so the gradient is routed by hand to the entries
  that equal the global max, on whichever devices hold them.
  """
  if axis_name is None:
    return jnp.max(x)
  m = lax.pmax(jnp.max(lax.stop_gradient(x)), axis_name)
  hit = x == m
  ties = lax.psum(jnp.sum(hit), axis_name)
  return m + lax.psum(jnp.sum(jnp.where(hit, x - lax.stop_gradient(x), 0.0)), axis_name) / ties


def _mean(x, weight, axis_name):
  """Mean of x [B, ...] over the examples with weight 1 (and all their elements), globally."""
  w = jnp.broadcast_to(weight.reshape((-1,) + (1,) * (x.ndim - 1)), x.shape)
  num, den = jnp.sum(w * x), jnp.sum(w)
  if axis_name is not None:
    num, den = lax.psum(num, axis_name), lax.psum(den, axis_name)
  return num / jnp.maximum(den, 1.0)


def constraint_terms(fingerprint, radius: int, rep_clip: float, axis_name: str | None = None,
                     mask=None) -> dict:
  """The four constraint terms of a batch of fingerprints [B, H, W, 3] (H == W).

  Returns scalars {"mag": MSE(F_gray, 0), "spec": MSE(S_low, 0), "sym": MSE(S, S^T),
  "rep": min(m, rep_clip), "rep_unclamped": m} with m the max of the high band (S with the
  low-frequency window zeroed) over the whole batch. `mask` ([B] bool, e.g. padded eval
  batches) drops examples from every term.
  """
  b, h, w, _ = fingerprint.shape
  if h != w:
    raise ValueError(f"the symmetry loss compares S with S^T and needs square images, got {h} x {w}")
  rows, cols = _window(h, w, radius)
  weight = jnp.ones((b,), jnp.float32) if mask is None else mask.astype(jnp.float32)
  gray = luma(fingerprint)  # [B, H, W]
  s = spectrum(gray)  # [B, H, W]
  s_low = s[:, rows, cols]  # [B, 2n+1, 2n+1]
  # S >= 0, so zeroing the window (and dropped examples) leaves the max of the rest.
  s_high = s.at[:, rows, cols].set(0.0) * weight[:, None, None]
  m = _global_max(s_high, axis_name)
  return {
      "mag": _mean(gray ** 2, weight, axis_name),
      "spec": _mean(s_low ** 2, weight, axis_name),
      "sym": _mean((s - jnp.swapaxes(s, 1, 2)) ** 2, weight, axis_name),
      "rep": jnp.minimum(m, rep_clip),
      "rep_unclamped": m,
  }


def active_terms(fen_terms: str) -> tuple[str, ...]:
  """Parses config.loss.fen_terms ("mag,spec,rep,sym" or a subset; "" = none)."""
  names = tuple(t.strip() for t in fen_terms.split(",") if t.strip())
  unknown = [t for t in names if t not in TERMS]
  if unknown:
    raise ValueError(f"config.loss.fen_terms={fen_terms!r}: unknown term(s) {unknown}; "
                     f"choose from {','.join(TERMS)}")
  return names


def fen_loss(terms: dict, loss_cfg: ml_collections.ConfigDict):
  """coef_mag L_mag + coef_spec L_spec - coef_rep min(m, clip) + coef_sym L_sym (active terms)."""
  sign = {"mag": 1.0, "spec": 1.0, "rep": -1.0, "sym": 1.0}
  total = jnp.zeros((), jnp.float32)
  for t in active_terms(loss_cfg.fen_terms):
    total = total + sign[t] * loss_cfg[f"coef_{t}"] * terms[t]
  return total
