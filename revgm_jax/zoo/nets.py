"""The few small, fixed networks that train the zoo's generators: critics and encoders.

They only down-sample with average pooling after stride-1 convs: the input-gradient of a strided
conv is a transposed conv, which XLA:CPU runs much slower (benchmarks/RESULTS.md), and every
adversarial generator loss back-propagates through the critic into its input image.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

# name -> (conv widths per resolution, convs per resolution)
TRUNKS = {
    "conv3": ((16, 32, 64), 1),
    "conv2x2": ((16, 32), 2),
}


class Trunk(nn.Module):
  """Stride-1 3x3 convs + LeakyReLU(0.2), 2x2 average pooling after each stage, global mean."""
  arch: str

  @nn.compact
  def __call__(self, x):  # [B, S, S, 3] -> [B, C]
    widths, per_stage = TRUNKS[self.arch]
    for width in widths:
      for _ in range(per_stage):
        x = nn.leaky_relu(nn.Conv(width, (3, 3))(x), 0.2)
      x = nn.avg_pool(x, (2, 2), (2, 2))
    return x.mean(axis=(1, 2))


class Critic(nn.Module):
  """Discriminator (num_outputs=1) or auxiliary classifier (num_outputs=K): raw logits."""
  arch: str
  num_outputs: int = 1

  @nn.compact
  def __call__(self, x):  # [B, S, S, 3] in [-1, 1] -> [B, num_outputs]
    return nn.Dense(self.num_outputs)(Trunk(self.arch)(x))


class Encoder(nn.Module):
  """Image -> (mean, log-variance) of a diagonal Gaussian over the generator's latent."""
  arch: str
  latent_size: int

  @nn.compact
  def __call__(self, x):  # [B, S, S, 3] -> 2 x [B, latent_size]
    h = Trunk(self.arch)(x)
    mean = nn.Dense(self.latent_size)(h)
    logvar = nn.Dense(self.latent_size)(h)
    return mean, jnp.clip(logvar, -10.0, 4.0)
