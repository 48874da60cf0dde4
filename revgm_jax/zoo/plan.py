"""Which GMs a zoo holds: architectures, loss sets, seeds, leave-out test sets, label tables.

Everything here is a pure function of the zoo config, so every host of a multi-host build and
every resumed build agrees on the plan.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np

from revgm_jax import labels
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
  family: str  # random_init | gan | vae | autoencoder | mmd | classifier
  seed: int
  spec: G.GeneratorSpec
  losses: tuple[str, ...]  # () for a random-init GM, else in labels.ZOO.loss_names order
  critic: str
  encoder: str
  test_set: int  # 1..4, 0 = always training

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


def valid_loss_sets(max_size: int) -> list[tuple[str, ...]]:
  """Loss sets a GM can be trained with: at most one adversarial and one pixel reconstruction
  loss, and KL (a VAE) only beside a reconstruction loss."""
  out = []
  for size in range(1, max_size + 1):
    for combo in itertools.combinations(LOSS_NAMES, size):
      adv = sum(n in L.ADVERSARIAL for n in combo)
      rec = sum(n in L.RECONSTRUCTION for n in combo)
      if adv <= 1 and rec <= 1 and ("kl" not in combo or rec == 1):
        out.append(combo)
  return out


def balanced_loss_sets(n: int, sizes: tuple[int, ...], rng: np.random.Generator,
                       restarts: int = 64) -> list[tuple[str, ...]]:
  """n loss sets, sizes cycling through `sizes`, with loss columns about equally frequent.

  Each set is chosen greedily to raise the rarest columns (ties broken at random); of
  `restarts` such draws the one with the most evenly covered columns is kept (fewest absent
  columns, then the smallest spread of counts), so every column occurs, alone and in
  combinations, whenever n and the sizes allow it.
  """
  candidates = valid_loss_sets(max(sizes))
  cols = [np.array([LOSS_NAMES.index(x) for x in c]) for c in candidates]
  best, best_key = None, None
  for _ in range(restarts):
    counts = np.zeros(len(LOSS_NAMES))
    chosen = []
    for i in range(n):
      size = sizes[i % len(sizes)]
      pool = [j for j, c in enumerate(candidates) if len(c) == size]
      score = np.array([counts[cols[j]].sum() for j in pool])
      j = pool[rng.choice(np.flatnonzero(score == score.min()))]
      counts[cols[j]] += 1
      chosen.append(candidates[j])
    key = (int(np.sum(counts == 0)), float(counts.max() - counts.min()), float(counts.var()))
    if best_key is None or key < best_key:
      best, best_key = chosen, key
  return best


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
      width=tuple(widths), fc_latent=(False, True), latent_dim=tuple(cfg.latent_dims))
  draws = {k: _balanced(rng, v, n) for k, v in choices.items()}
  return [G.GeneratorSpec(image_size=cfg.image_size, max_channels=max_channels,
                          **{k: v[i] for k, v in draws.items()}) for i in range(n)]


def _test_sets(families: list[str], fraction: float, rng: np.random.Generator) -> list[int]:
  """Leave-out set (1..4, or 0) of each GM of one kind: about `fraction` of them go to the 4
  sets, taken family by family in turn so that every set mixes families."""
  n = len(families)
  per_set = max(1, round(n * fraction / NUM_TEST_SETS)) if n >= NUM_TEST_SETS else 0
  order = rng.permutation(n)
  rank = {}
  ranks = np.empty(n, int)
  for i in order:
    ranks[i] = rank.get(families[i], 0)
    rank[families[i]] = ranks[i] + 1
  interleaved = sorted(order, key=lambda i: ranks[i])  # stable: one GM per family per round
  sets = [0] * n
  for j, i in enumerate(interleaved[:per_set * NUM_TEST_SETS]):
    sets[i] = j % NUM_TEST_SETS + 1
  return sets


def make_plan(cfg) -> list[GMPlan]:
  """The zoo's GMs: cfg.num_random_gms random-init ones, then cfg.num_trained_gms trained."""
  root = np.random.SeedSequence(cfg.seed)
  seq_rand, seq_train, seq_sets, seq_seeds = root.spawn(4)
  rng_rand, rng_train, rng_sets = map(np.random.default_rng, (seq_rand, seq_train, seq_sets))
  seeds = seq_seeds.generate_state(cfg.num_random_gms + cfg.num_trained_gms)
  trunks = tuple(TRUNKS)
  gms = []
  for i, spec in enumerate(_specs(cfg, cfg.num_random_gms, rng_rand, cfg.widths,
                                  cfg.convs_per_block, cfg.max_channels)):
    gms.append(dict(name=f"random_{i:03d}", family=RANDOM_FAMILY, spec=spec, losses=(),
                    critic="", encoder=""))
  n = cfg.num_trained_gms
  loss_sets = balanced_loss_sets(n, tuple(cfg.loss_set_sizes), rng_train)
  critics, encoders = _balanced(rng_train, trunks, n), _balanced(rng_train, trunks, n)
  for i, spec in enumerate(_specs(cfg, n, rng_train, cfg.trained_widths,
                                  cfg.trained_convs_per_block, cfg.trained_max_channels)):
    losses = loss_sets[i]
    gms.append(dict(name=f"trained_{i:03d}", family=family_of(losses), spec=spec,
                    losses=losses, critic=critics[i] if _needs_critic(losses) else "",
                    encoder=encoders[i] if _needs_encoder(losses) else ""))
  test_sets = []
  for kind in (lambda g: not g["losses"], lambda g: bool(g["losses"])):
    members = [g for g in gms if kind(g)]
    test_sets += _test_sets([g["family"] for g in members], cfg.test_fraction, rng_sets)
  return [GMPlan(seed=int(seeds[i]), test_set=test_sets[i], **g) for i, g in enumerate(gms)]


def _needs_critic(losses) -> bool:
  return any(n in L.ADVERSARIAL + ("cross_entropy",) for n in losses)


def _needs_encoder(losses) -> bool:
  return any(n in L.RECONSTRUCTION + ("kl",) for n in losses)


INDEX_COLUMNS = ("family", "seed", "num_blocks", "upsampling", "norm", "block_nonlin",
                 "last_nonlin", "skip", "convs_per_block", "width", "fc_latent", "latent_dim",
                 "losses", "critic", "encoder")


def ground_truth(plan: list[GMPlan]) -> tuple[labels.GroundTruth, dict[str, list]]:
  """Label tables of the zoo ("zoo" space) and the native index columns of gm_index.csv.

  Continuous columns are min-max normalised over the zoo (raw ranges kept in cont_min/max).
  """
  raw = np.array([[G.architecture_counts(gm.spec)[c] for c in labels.NET_COLUMNS[:9]]
                  for gm in plan], np.float64)  # [N, 9]
  lo, hi = raw.min(0), raw.max(0)
  disc = np.array([G.discrete_labels(gm.spec) for gm in plan], np.float64)  # [N, 6]
  loss = np.array([[n in gm.losses for n in LOSS_NAMES] for gm in plan], np.int32)  # [N, 10]
  group = np.stack([loss[:, list(g)].max(1) for g in labels.ZOO.loss_groups], 1)  # [N, 3]
  gt = labels.GroundTruth(
      space=labels.ZOO, names=tuple(gm.name for gm in plan),
      net=np.concatenate([labels.minmax_normalize(raw, lo, hi), disc], 1).astype(np.float32),
      loss=loss, loss_group=group.astype(np.int32),
      test_set=np.array([gm.test_set for gm in plan], np.int32), cont_min=lo, cont_max=hi)
  native = {
      "family": [gm.family for gm in plan],
      "seed": [gm.seed for gm in plan],
      **{f: [getattr(gm.spec, f) for gm in plan] for f in INDEX_COLUMNS[2:12]},
      "losses": ["+".join(gm.losses) or "none" for gm in plan],
      "critic": [gm.critic or "none" for gm in plan],
      "encoder": [gm.encoder or "none" for gm in plan],
  }
  return gt, native
