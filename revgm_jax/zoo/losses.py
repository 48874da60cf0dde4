"""The zoo's GM training losses, one per loss column of the "zoo" space (plain jnp functions).

Images are in [-1, 1], [B, S, S, 3]; critic outputs are raw logits [B, 1].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

ADVERSARIAL = ("nonsaturating_adversarial", "wasserstein_gp", "hinge", "least_squares")
RECONSTRUCTION = ("l1", "l2", "mse")


def l1(x, y):
  return jnp.mean(jnp.abs(x - y))


def l2(x, y):
  """Euclidean norm of the per-image difference (not squared), averaged over the batch."""
  return jnp.mean(jnp.sqrt(jnp.sum(jnp.square(x - y), axis=(1, 2, 3)) + 1e-12))


def mse(x, y):
  return jnp.mean(jnp.square(x - y))


def mmd(x, y, scales=(0.25, 1.0, 4.0)):
  """Biased squared MMD between two image batches, Gaussian kernels in pixel space.

  Bandwidths are multiples of the median squared pairwise distance (held constant).
  """
  a = jnp.concatenate([x.reshape(len(x), -1), y.reshape(len(y), -1)])  # [n + m, D]
  sq = jnp.sum(a * a, axis=1)
  d2 = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * a @ a.T, 0.0)  # [n + m, n + m]
  med = jax.lax.stop_gradient(jnp.median(d2)) + 1e-6
  k = sum(jnp.exp(-d2 / (s * med)) for s in scales)
  n = len(x)
  return k[:n, :n].mean() + k[n:, n:].mean() - 2.0 * k[:n, n:].mean()


def kl(mean, logvar):
  """KL(N(mean, exp(logvar)) || N(0, I)), summed over latent dims, averaged over the batch."""
  return jnp.mean(0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1))


def cross_entropy(logits, labels):
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def critic_loss(kind: str, real, fake):
  """Discriminator loss of adversarial loss `kind` from logits on real and generated images."""
  if kind == "nonsaturating_adversarial":
    return jnp.mean(jax.nn.softplus(-real) + jax.nn.softplus(fake))
  if kind == "wasserstein_gp":
    return jnp.mean(fake - real)
  if kind == "hinge":
    return jnp.mean(jax.nn.relu(1.0 - real) + jax.nn.relu(1.0 + fake))
  if kind == "least_squares":
    return 0.5 * jnp.mean(jnp.square(real - 1.0) + jnp.square(fake))
  raise ValueError(f"unknown adversarial loss {kind!r}; known: {ADVERSARIAL}")


def generator_adversarial_loss(kind: str, fake):
  """Generator side of adversarial loss `kind` from critic logits on generated images."""
  if kind == "nonsaturating_adversarial":
    return jnp.mean(jax.nn.softplus(-fake))
  if kind in ("wasserstein_gp", "hinge"):
    return -jnp.mean(fake)
  if kind == "least_squares":
    return 0.5 * jnp.mean(jnp.square(fake - 1.0))
  raise ValueError(f"unknown adversarial loss {kind!r}; known: {ADVERSARIAL}")


def gradient_penalty(critic_fn, real, fake, key):
  """WGAN-GP: (||grad_x critic(x)|| - 1)^2 at random interpolates of real and fake."""
  eps = jax.random.uniform(key, (len(real), 1, 1, 1))
  mix = eps * real + (1.0 - eps) * fake
  grads = jax.grad(lambda x: jnp.sum(critic_fn(x)))(mix)
  norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=(1, 2, 3)) + 1e-12)
  return jnp.mean(jnp.square(norms - 1.0))
