"""Which GMs a zoo holds: architectures, loss sets, seeds, leave-out test sets, label tables.

Everything here is a pure function of the zoo config, so every host of a multi-host build and
every resumed build agrees on the plan.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from revgm_jax import labels
from revgm_jax.zoo import autoencoders as A
from revgm_jax.zoo import generators as G
from revgm_jax.zoo import losses as L
from revgm_jax.zoo.nets import TRUNKS

LOSS_NAMES = labels.ZOO.loss_names
NUM_TEST_SETS = 4
RANDOM_FAMILY = "random_init"


@dataclasses.dataclass(frozen=True)
class GMPlan:
  """One GM of the zoo: its native hyperparameters and where it sits in the leave-out sets."""
  name: str
  family: str  # random_init | gan | vae | autoencoder | mmd | classifier | random_i2i
  seed: int
  spec: G.GeneratorSpec
  losses: tuple[str, ...]  # () for a random-init GM, else in labels.ZOO.loss_names order
  critic: str
  encoder: str  # trained: its encoder trunk; random_i2i: its image encoder (A.ENCODERS)
  test_set: int  # 1..4, 0 = always training
  init_gain: float  # He-normal gain of the initial kernels (not a label: a code convention)
  output_std: float  # pre-activation output std the initial generator is calibrated to
  cohort: int = -1  # trained and random_i2i GMs: its cohort (one architecture); -1: none

  @property
  def trained(self) -> bool:
    return bool(self.losses)


def family_of(losses: tuple[str, ...]) -> str:
  """The kind of GM a loss set makes (used to mix families across test sets)."""
  if not losses:
    return RANDOM_FAMILY
  if any(n in L.ADVERSARIAL for n in losses):
    return "gan"
  if "kl" in losses:
    return "vae"
  if any(n in L.RECONSTRUCTION for n in losses):
    return "autoencoder"
  return "mmd" if "mmd" in losses else "classifier"


def is_valid_loss_set(losses) -> bool:
  """A GM can be trained with at most one adversarial and one pixel reconstruction loss, and
  with KL (a VAE) only beside a reconstruction loss."""
  adv = sum(n in L.ADVERSARIAL for n in losses)
  rec = sum(n in L.RECONSTRUCTION for n in losses)
  return bool(losses) and adv <= 1 and rec <= 1 and ("kl" not in losses or rec == 1)


def cohort_loss_sets(size: int, rng: np.random.Generator) -> list[tuple[str, ...]]:
  """The loss sets of one cohort: a random partition of the 10 loss columns into `size` valid
  sets, so that every cohort holds every loss type exactly once (size >= 4: one adversarial
  loss per GM at most). Drawn by rejection: each column goes to a uniformly random member."""
  if size < len(L.ADVERSARIAL):
    raise ValueError(f"cohort_size={size}: a cohort holds all {len(L.ADVERSARIAL)} adversarial "
                     "losses, one per GM, so it needs at least that many GMs")
  while True:
    member = rng.integers(size, size=len(LOSS_NAMES))
    sets = [tuple(n for n, m in zip(LOSS_NAMES, member) if m == k) for k in range(size)]
    if all(map(is_valid_loss_set, sets)):
      return sets


def _balanced(rng: np.random.Generator, choices, n: int) -> list:
  """n draws from `choices` with every value used floor(n/k) or ceil(n/k) times, shuffled."""
  k = len(choices)
  idx = np.concatenate([np.tile(np.arange(k), n // k), rng.choice(k, n % k, replace=False)])
  return [choices[i] for i in rng.permutation(idx)]


def _specs(cfg, n: int, rng: np.random.Generator, widths, convs_per_block, max_channels
           ) -> list[G.GeneratorSpec]:
  """n architectures with balanced marginals of every native hyperparameter."""
  max_blocks = int(math.log2(cfg.image_size // 2))
  choices = dict(
      num_blocks=tuple(b for b in cfg.num_blocks if b <= max_blocks),
      upsampling=G.UPSAMPLING, norm=G.NORMS, block_nonlin=G.BLOCK_NONLINS,
      last_nonlin=G.LAST_NONLINS, skip=(False, True), convs_per_block=tuple(convs_per_block),
      width=tuple(widths), fc_latent=(False, True), latent_dim=tuple(cfg.latent_dims),
      skip_scale=tuple(cfg.skip_scales), norm_eps=tuple(cfg.norm_eps))
  draws = {k: _balanced(rng, v, n) for k, v in choices.items()}
  return [G.GeneratorSpec(image_size=cfg.image_size, max_channels=max_channels,
                          **{k: v[i] for k, v in draws.items()}) for i in range(n)]


def _num_per_set(n: int, fraction: float) -> int:
  return max(1, round(n * fraction / NUM_TEST_SETS)) if n >= NUM_TEST_SETS else 0


def _test_sets(n: int, fraction: float, rng: np.random.Generator) -> list[int]:
  """Leave-out set (1..4, or 0) of each of n random-init GMs or cohorts: about `fraction`."""
  sets = [0] * n
  for j, i in enumerate(rng.permutation(n)[:_num_per_set(n, fraction) * NUM_TEST_SETS]):
    sets[i] = j % NUM_TEST_SETS + 1
  return sets


def make_plan(cfg) -> list[GMPlan]:
  """The zoo's GMs: cfg.num_random_gms random-init ones, then cfg.num_trained_gms trained in
  cohorts of cfg.cohort_size GMs that share one architecture and split the loss types.

  Same architecture, other losses: the controlled contrast that makes loss types learnable,
  and as every cohort holds every loss type, every test set of whole cohorts measures every
  loss column (docs/labels.md#zoo-cohorts)."""
  root = np.random.SeedSequence(cfg.seed)
  seq_rand, seq_train, seq_sets, seq_seeds = root.spawn(4)
  rng_rand, rng_train, rng_sets = map(np.random.default_rng, (seq_rand, seq_train, seq_sets))
  seeds = seq_seeds.generate_state(cfg.num_random_gms + cfg.num_trained_gms)
  trunks = tuple(TRUNKS)
  gms = []
  for i, spec in enumerate(_specs(cfg, cfg.num_random_gms, rng_rand, cfg.widths,
                                  cfg.convs_per_block, cfg.max_channels)):
    gms.append(dict(name=f"random_{i:03d}", family=RANDOM_FAMILY, spec=spec, losses=(),
                    critic="", encoder="", test_set=0))
  for i, s in enumerate(_test_sets(cfg.num_random_gms, cfg.test_fraction, rng_sets)):
    gms[i]["test_set"] = s
  n = cfg.num_trained_gms
  num_cohorts = n // cfg.cohort_size
  loss_sets = [losses for _ in range(num_cohorts)
               for losses in cohort_loss_sets(cfg.cohort_size, rng_train)]
  critics = _balanced(rng_train, trunks, num_cohorts)
  encoders = _balanced(rng_train, trunks, num_cohorts)
  specs = _specs(cfg, num_cohorts, rng_train, cfg.trained_widths, cfg.trained_convs_per_block,
                 cfg.trained_max_channels)
  sets = _test_sets(num_cohorts, cfg.test_fraction, rng_sets)  # a cohort stays together
  for i, losses in enumerate(loss_sets):
    c = i // cfg.cohort_size
    gms.append(dict(name=f"trained_{i:03d}", family=family_of(losses), spec=specs[c],
                    losses=losses, critic=critics[c] if _needs_critic(losses) else "",
                    encoder=encoders[c] if _needs_encoder(losses) else "",
                    test_set=sets[c], cohort=c))
  n = len(gms)
  gains, stds = _balanced(rng_sets, cfg.init_gains, n), _balanced(rng_sets, cfg.output_stds, n)
  return [GMPlan(seed=int(seeds[i]), init_gain=float(gains[i]), output_std=float(stds[i]), **g)
          for i, g in enumerate(gms)] + _i2i_plan(cfg, root.spawn(1)[0], num_cohorts)


def _i2i_plan(cfg, seq: np.random.SeedSequence, first_cohort: int) -> list[GMPlan]:
  """The cheap image-to-image GMs (revgm_jax/zoo/autoencoders.py): cfg.num_i2i_gms in cohorts
  of cfg.i2i_per_arch GMs that share one architecture (decoder spec, encoder, code size; also
  the skip scale and norm epsilon, which the compile bakes in) and differ in seed, init gain and
  output std. A cohort is held out whole, so no test architecture is trained on. Own random
  streams (a fifth child of the zoo seed): the other GMs of a zoo do not change with it."""
  n = cfg.get("num_i2i_gms", 0)
  if not n:
    return []
  rng = np.random.default_rng(seq)
  k = n // cfg.i2i_per_arch
  specs = _specs(cfg, k, rng, cfg.i2i_widths, cfg.i2i_convs_per_block, cfg.i2i_max_channels)
  encoders = _balanced(rng, tuple(cfg.i2i_encoders), k)
  codes = _balanced(rng, tuple(cfg.i2i_code_channels), k)
  specs = [A.code_spec(s, e, c) for s, e, c in zip(specs, encoders, codes)]
  sets = _test_sets(k, cfg.test_fraction, rng)
  seeds = rng.integers(2**32, size=n)
  gains, stds = _balanced(rng, cfg.init_gains, n), _balanced(rng, cfg.i2i_output_stds, n)
  return [GMPlan(name=f"{A.NAME_PREFIX}{i:04d}", family=A.FAMILY, seed=int(seeds[i]),
                 spec=specs[i // cfg.i2i_per_arch], losses=(), critic="",
                 encoder=encoders[i // cfg.i2i_per_arch], test_set=sets[i // cfg.i2i_per_arch],
                 init_gain=float(gains[i]), output_std=float(stds[i]),
                 cohort=first_cohort + i // cfg.i2i_per_arch) for i in range(n)]


def architecture_counts(gm: GMPlan) -> dict[str, int | float]:
  """Raw continuous labels of a GM, read off its built model."""
  if gm.family == A.FAMILY:
    return A.architecture_counts(gm.spec, gm.encoder)
  return G.architecture_counts(gm.spec)


def _needs_critic(losses) -> bool:
  return any(n in L.ADVERSARIAL + ("cross_entropy",) for n in losses)


def _needs_encoder(losses) -> bool:
  return any(n in L.RECONSTRUCTION + ("kl",) for n in losses)


INDEX_COLUMNS = ("family", "seed", "num_blocks", "upsampling", "norm", "block_nonlin",
                 "last_nonlin", "skip", "convs_per_block", "width", "fc_latent", "latent_dim",
                 "skip_scale", "norm_eps", "losses", "critic", "encoder", "cohort",
                 "init_gain", "output_std")


def ground_truth(plan: list[GMPlan]) -> tuple[labels.GroundTruth, dict[str, list]]:
  """Label tables of the zoo ("zoo" space) and the native index columns of gm_index.csv.

  Continuous columns are min-max normalised over the zoo (raw ranges kept in cont_min/max).
  """
  raw = np.array([[architecture_counts(gm)[c] for c in labels.NET_COLUMNS[:9]]
                  for gm in plan], np.float64)  # [N, 9]
  lo, hi = raw.min(0), raw.max(0)
  disc = np.array([G.discrete_labels(gm.spec) for gm in plan], np.float64)  # [N, 6]
  loss = np.array([[n in gm.losses for n in LOSS_NAMES] for gm in plan], np.int32)  # [N, 10]
  group = np.stack([loss[:, list(g)].max(1) for g in labels.ZOO.loss_groups], 1)  # [N, 3]
  gt = labels.GroundTruth(
      space=labels.ZOO, names=tuple(gm.name for gm in plan),
      net=np.concatenate([labels.minmax_normalize(raw, lo, hi), disc], 1).astype(np.float32),
      loss=loss, loss_group=group.astype(np.int32),
      test_set=np.array([gm.test_set for gm in plan], np.int32), cont_min=lo, cont_max=hi,
      cohort=np.array([gm.cohort for gm in plan], np.int32))
  native = {
      "family": [gm.family for gm in plan],
      "seed": [gm.seed for gm in plan],
      **{f: [getattr(gm.spec, f) for gm in plan] for f in INDEX_COLUMNS[2:14]},
      "losses": ["+".join(gm.losses) or "none" for gm in plan],
      "critic": [gm.critic or "none" for gm in plan],
      "encoder": [gm.encoder or "none" for gm in plan],
      "cohort": [gm.cohort if gm.cohort >= 0 else "" for gm in plan],
      "init_gain": [gm.init_gain for gm in plan],
      "output_std": [gm.output_std for gm in plan],
  }
  return gt, native
