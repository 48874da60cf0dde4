"""Brief training of one zoo generator with a set of loss types (the zoo's loss columns).

How each loss type drives the generator G (images in [-1, 1]):
- l1 / l2 / mse: autoencoder with G as decoder of an `Encoder` (x -> E -> G -> x_hat).
- kl: VAE (needs a reconstruction loss): the encoder's Gaussian, reparameterised, KL to N(0, I).
- mmd: G(z ~ N(0, I)) matched to real images by Gaussian-kernel MMD (a GMMN).
- nonsaturating_adversarial / wasserstein_gp / hinge / least_squares: a GAN with a `Critic`.
- cross_entropy: an auxiliary classifier, trained on the real crops' pseudo-label (which
  source image a crop came from), must recognise class argmax(z[:K]) in G(z): the latent's
  first K coordinates act as the class condition.
A GM trained only with reconstruction losses samples from a Gaussian fitted to its encoder's
codes of real crops; every other GM samples from the prior N(0, I).

The generator starts from the same calibrated random init as an untrained GM
(`sampling.calibrated`); one compile per GM for its training step (all networks, one
simultaneous Adam update).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from revgm_jax.zoo import losses as L
from revgm_jax.zoo.generators import (Generator, GeneratorSpec, init_variables, to_signed,
                                      variable_shapes)
from revgm_jax.zoo.nets import Critic, Encoder

_PRIOR_LOSSES = L.ADVERSARIAL + ("mmd", "cross_entropy")
_FIT_IMAGES = 512  # real crops the latent Gaussian of a reconstruction-only GM is fitted on
_AVERAGE_LAST = 10  # steps the reported loss terms are averaged over


@dataclasses.dataclass(frozen=True)
class TrainSetup:
  """Static description of one GM's training (hashable: it keys the jit cache)."""
  spec: GeneratorSpec
  losses: tuple[str, ...]  # names from labels.ZOO.loss_names
  critic: str  # nets.TRUNKS key of the discriminator and the auxiliary classifier
  encoder: str  # nets.TRUNKS key of the encoder
  num_classes: int  # pseudo-label classes of the auxiliary classifier
  batch_size: int
  lr: float

  @property
  def adversarial(self) -> str | None:
    adv = [name for name in self.losses if name in L.ADVERSARIAL]
    return adv[0] if adv else None

  @property
  def uses_encoder(self) -> bool:
    return any(name in self.losses for name in L.RECONSTRUCTION + ("kl",))

  @property
  def uses_prior(self) -> bool:
    return any(name in self.losses for name in _PRIOR_LOSSES)


def _generate(spec, params, batch_stats, z, train: bool):
  """G(z) -> ([B, S, S, 3] raw output, updated batch statistics)."""
  variables = {"params": params, "batch_stats": batch_stats} if batch_stats else {"params": params}
  if train and spec.norm == "batch":
    out, upd = Generator(spec).apply(variables, z, train=True, mutable=["batch_stats"])
    return out, upd["batch_stats"]
  return Generator(spec).apply(variables, z, train=train), batch_stats


def _step(setup: TrainSetup, tx, real_pool, label_pool, state, key):
  """One simultaneous update of every network; returns (state, loss terms)."""
  spec, b = setup.spec, setup.batch_size
  k_idx, k_prior, k_eps, k_gp = jax.random.split(key, 4)
  idx = jax.random.randint(k_idx, (b,), 0, len(real_pool))
  real, labels = real_pool[idx], label_pool[idx]  # [B, S, S, 3], [B]
  z_prior = jax.random.normal(k_prior, (b, spec.latent_size))
  num_pixels = real[0].size

  def gen_loss(gen_params):
    terms, zs, mean = {}, [], None
    if setup.uses_encoder:
      mean, logvar = Encoder(setup.encoder, spec.latent_size).apply(gen_params["e"], real)
      noise = jax.random.normal(k_eps, mean.shape) if "kl" in setup.losses else 0.0
      zs.append(mean + jnp.exp(0.5 * logvar) * noise)
    if setup.uses_prior:
      zs.append(z_prior)
    out, batch_stats = _generate(spec, gen_params["g"], state["batch_stats"],
                                 jnp.concatenate(zs), train=True)
    img = to_signed(out, spec.last_nonlin)
    rec, fake = (img[:b], img[b:]) if setup.uses_encoder else (None, img)
    for name, fn, weight in (("l1", L.l1, 1.0), ("l2", L.l2, num_pixels**-0.5),
                             ("mse", L.mse, 1.0)):
      if name in setup.losses:
        terms[name] = weight * fn(rec, real)
    if "kl" in setup.losses:
      terms["kl"] = L.kl(mean, logvar) / num_pixels
    if "mmd" in setup.losses:
      terms["mmd"] = L.mmd(fake, real)
    if setup.adversarial:
      logits = Critic(setup.critic).apply(state["params"]["d"], fake)
      terms[setup.adversarial] = L.generator_adversarial_loss(setup.adversarial, logits)
    if "cross_entropy" in setup.losses:
      logits = Critic(setup.critic, setup.num_classes).apply(state["params"]["c"], fake)
      terms["cross_entropy"] = L.cross_entropy(logits, condition_labels(z_prior,
                                                                        setup.num_classes))
    return sum(terms.values()), (terms, batch_stats, fake)

  def critic_losses(critic_params, fake):
    total = 0.0
    if setup.adversarial:
      critic = functools.partial(Critic(setup.critic).apply, critic_params["d"])
      total += L.critic_loss(setup.adversarial, critic(real), critic(fake))
      if setup.adversarial == "wasserstein_gp":
        total += 10.0 * L.gradient_penalty(critic, real, fake, k_gp)
    if "cross_entropy" in setup.losses:
      logits = Critic(setup.critic, setup.num_classes).apply(critic_params["c"], real)
      total += L.cross_entropy(logits, labels)
    return total

  params = state["params"]
  gen_keys = [k for k in ("g", "e") if k in params]
  critic_keys = [k for k in ("d", "c") if k in params]
  (_, (terms, batch_stats, fake)), g_grads = jax.value_and_grad(gen_loss, has_aux=True)(
      {k: params[k] for k in gen_keys})
  grads = dict(g_grads)
  if critic_keys:
    grads.update(jax.grad(critic_losses)({k: params[k] for k in critic_keys},
                                         jax.lax.stop_gradient(fake)))
  updates, opt_state = tx.update(grads, state["opt_state"], params)
  return {"params": optax.apply_updates(params, updates), "batch_stats": batch_stats,
          "opt_state": opt_state}, terms


def condition_labels(z: jax.Array, num_classes: int) -> jax.Array:
  """The class a latent asks for: argmax of its first num_classes coordinates. [B] int32."""
  return jnp.argmax(z[:, :num_classes], axis=-1).astype(jnp.int32)


# A Python loop over a jitted step: the same step inside lax.fori_loop runs far slower on
# XLA:CPU (benchmarks/RESULTS.md, other code choices).
@functools.partial(jax.jit, static_argnames=("setup",), donate_argnums=(1,))
def _train_step(setup: TrainSetup, state, real_pool, label_pool, key):
  return _step(setup, _optimizer(setup), real_pool, label_pool, state, key)


@functools.partial(jax.jit, static_argnames=("setup",))
def _fit_latent(setup: TrainSetup, encoder_params, images):
  """Mean and std [L] of the encoder's codes of real images (reconstruction-only GMs)."""
  codes, _ = Encoder(setup.encoder, setup.spec.latent_size).apply(encoder_params, images)
  return codes.mean(0), codes.std(0)


def _optimizer(setup: TrainSetup):
  return optax.adam(setup.lr, b1=0.5, b2=0.999)


def init_networks(setup: TrainSetup, rng: np.random.Generator) -> dict:
  """NumPy-initialised parameters of the helper networks (encoder, critic, classifier)."""
  spec = setup.spec
  image = jnp.zeros((1, spec.image_size, spec.image_size, 3))
  params = {}
  if setup.uses_encoder:
    params["e"] = init_variables(variable_shapes(Encoder(setup.encoder, spec.latent_size),
                                                 image), rng)
  if setup.adversarial:
    params["d"] = init_variables(variable_shapes(Critic(setup.critic), image), rng)
  if "cross_entropy" in setup.losses:
    params["c"] = init_variables(variable_shapes(Critic(setup.critic, setup.num_classes),
                                                 image), rng)
  return params


def train_gm(setup: TrainSetup, generator: dict, real_pool: np.ndarray, label_pool: np.ndarray,
             seed: int, num_steps: int) -> tuple[dict, np.ndarray, np.ndarray, dict[str, float]]:
  """Trains one GM from its initial variables `generator` ({"params"[, "batch_stats"]}).

  real_pool: [N, S, S, 3] float32 real crops in [-1, 1]; label_pool: [N] int32 pseudo-labels.
  Returns (generator variables, latent mean [L], latent std [L] to sample with, loss terms
  averaged over the last steps).
  """
  if "kl" in setup.losses and not any(n in setup.losses for n in L.RECONSTRUCTION):
    raise ValueError(f"loss set {setup.losses}: kl (VAE) needs a reconstruction loss")
  rng = np.random.default_rng(seed)
  params = {"g": generator["params"], **init_networks(setup, rng)}
  state = {"params": params, "batch_stats": generator.get("batch_stats", {}),
           "opt_state": _optimizer(setup).init(params)}
  real_pool, label_pool = jnp.asarray(real_pool), jnp.asarray(label_pool)
  key = jax.random.key(seed)
  last = []  # loss terms of the last steps (kept on device: no sync per step)
  for i in range(num_steps):
    state, terms = _train_step(setup, state, real_pool, label_pool, jax.random.fold_in(key, i))
    last = (last + [terms])[-_AVERAGE_LAST:]
  size = setup.spec.latent_size
  mean, std = np.zeros(size, np.float32), np.ones(size, np.float32)
  if not setup.uses_prior:
    mean, std = map(np.asarray, _fit_latent(setup, state["params"]["e"], real_pool[:_FIT_IMAGES]))
  gen = {"params": state["params"]["g"]}
  if state["batch_stats"]:
    gen["batch_stats"] = state["batch_stats"]
  terms = {k: float(np.mean([t[k] for t in last])) for k in setup.losses} if last else {}
  return jax.tree_util.tree_map(np.asarray, gen), mean, std, terms
