"""FEN + a classifier: the detection and attribution models of docs/tasks.md#models.

Detection classifies the fingerprint F itself; attribution classifies the centred magnitude
spectrum of its luma (one channel), as the paper's two classifiers do.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from revgm_jax.losses import constraints
from revgm_jax.models.fen import FEN
from revgm_jax.models.layers import TORCH_DEFAULT_KERNEL, Conv3x3, torch_bias_init
from revgm_jax.models.parser import _dense

INPUTS = ("fingerprint", "spectrum")


class Classifier(nn.Module):
  """Conv blocks (k x k conv, padding 2, ReLU, max-pool 2), dropout, FC + ReLU, FC to logits.

  kernels: 5 (same size out) or 3 (padding 2 grows the map by 2, as the paper's last block).
  Returns {"logits": [B, num_classes] float32, "embedding": [B, fc_width] float32}: the
  penultimate features the open-set distance scores use.
  """
  num_classes: int
  widths: Sequence[int] = (32, 64, 128, 256, 512)
  kernels: Sequence[int] = (5, 5, 5, 5, 3)
  fc_width: int = 512
  dropout: float = 0.5
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):  # [B, H, W, C]
    if len(self.kernels) != len(self.widths) or set(self.kernels) - {3, 5}:
      raise ValueError(f"classifier kernels {tuple(self.kernels)} must be 3 or 5, one per width "
                       f"{tuple(self.widths)} (config.model.classifier_kernels)")
    for i, (width, k) in enumerate(zip(self.widths, self.kernels)):
      if k == 3:
        x = Conv3x3(width, pad=2, kernel_init=TORCH_DEFAULT_KERNEL, dtype=self.dtype,
                    name=f"conv_{i}")(x)
      else:
        x = nn.Conv(width, (5, 5), padding=2, kernel_init=TORCH_DEFAULT_KERNEL,
                    bias_init=torch_bias_init(25 * x.shape[-1]), dtype=self.dtype,
                    param_dtype=jnp.float32, name=f"conv_{i}")(x)
      x = nn.max_pool(nn.relu(x), (2, 2), strides=(2, 2), padding="VALID")
    x = x.reshape(x.shape[0], -1)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    h = nn.relu(_dense(x, self.fc_width, self.dtype, "fc"))  # [B, fc_width]
    logits = _dense(h, self.num_classes, self.dtype, "head")
    return {"logits": logits.astype(jnp.float32), "embedding": h.astype(jnp.float32)}


class FingerprintClassifier(nn.Module):
  """Image -> fingerprint (FEN) -> classifier on F or on its spectrum; trained jointly."""
  fen: FEN
  classifier: Classifier
  input: str = "fingerprint"

  def __call__(self, x, train: bool):
    """x: [B, H, W, 3] -> (fingerprint [B, H, W, 3] float32, classifier outputs)."""
    f = self.fen(x, train)
    if self.input == "spectrum":
      z = constraints.spectrum(constraints.luma(f))[..., None]  # [B, H, W, 1]
    elif self.input == "fingerprint":
      z = f
    else:
      raise ValueError(f"config.model.classifier_input={self.input!r}; use one of {INPUTS}")
    return f, self.classifier(z, train)
