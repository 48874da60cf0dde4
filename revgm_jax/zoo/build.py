"""Building a GM zoo on disk: cached, resumable, deterministic for a seed.

Layout of a built zoo (the published layout, docs/labels.md#data-layout):
  OUT/gms/<GM_NAME>/000000.png ...   images_per_gm PNGs per GM
  OUT/real/000000.png ...            real crops (for detection)
  OUT/gm_index.csv, OUT/ground_truth_*.npy, OUT/net_ranges.csv   labels, space "zoo"
  OUT/meta/<GM_NAME>.json            per-GM build record (training losses, seconds)
  OUT/zoo_config.json                the config this directory belongs to
  OUT/zoo_summary.json               written last: its presence marks a finished build
  OUT/.lock-<share>, OUT/.lock-finish  serialise processes building the same OUT

A GM is written into OUT/gms/.tmp-<GM_NAME> and renamed to its final name only when all its
images are there, so a killed build never leaves a half-written folder under a GM's name; the
next call rebuilds exactly the missing GMs (each GM depends only on the config and its own
seed, so the result is byte-identical to an uninterrupted build).

  python -m revgm_jax.zoo build --preset default --out DIR [--zoo.images_per_gm=100 ...]
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import shutil
import sys
import time
import uuid

import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
from tqdm import tqdm

from revgm_jax import config_utils, labels
from revgm_jax.runtime import file_lock
from revgm_jax.zoo import autoencoders as A
from revgm_jax.zoo import plan as P
from revgm_jax.zoo import real
from revgm_jax.zoo.generators import Generator, init_variables, variable_shapes
from revgm_jax.zoo.sampling import calibrated, sample_images
from revgm_jax.zoo.training import TrainSetup, train_gm

ZOO_VERSION = 2  # bump when a change of the code changes what a config builds
CONFIG_FILE = "zoo_config.json"
SUMMARY_FILE = "zoo_summary.json"
GMS_DIR, REAL_DIR, META_DIR = "gms", "real", "meta"
TMP_PREFIX = ".tmp-"
_CALIB_LATENTS = 128  # latents a random-init GM is calibrated on


def config_dict(cfg: ml_collections.ConfigDict) -> dict:
  """The config as plain JSON data (tuples become lists). Without cheap GMs
  (num_i2i_gms = 0) their fields are left out: the older presets keep their hash and files."""
  d = json.loads(json.dumps(cfg.to_dict()))
  if not d.get("num_i2i_gms"):
    d = {k: v for k, v in d.items() if k != "num_i2i_gms" and not k.startswith("i2i_")}
  return d


def config_hash(cfg: ml_collections.ConfigDict) -> str:
  blob = json.dumps({"zoo_version": ZOO_VERSION, **config_dict(cfg)}, sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:12]


def default_zoo_dir(cfg: ml_collections.ConfigDict) -> str:
  """Where the zoo of `cfg` is cached: $REVGM_CACHE/zoo/<preset>-<config hash>."""
  return os.path.join(config_utils.cache_root(), "zoo", f"{cfg.preset}-{config_hash(cfg)}")


def validate(cfg: ml_collections.ConfigDict):
  """Clear errors for zoo configs that cannot be built."""
  def bad(field, why):
    raise ValueError(f"zoo config: {field}={cfg[field]!r} {why}")

  if cfg.image_size % 16 or not 32 <= cfg.image_size <= 256:
    bad("image_size", "must be a multiple of 16 from 32 to 256 (32, 64, 128 are the presets)")
  for field in ("num_random_gms", "num_trained_gms", "train_steps", "real_images"):
    if cfg[field] < 0:
      bad(field, "must be >= 0")
  for field in ("images_per_gm", "batch_size", "train_pool"):
    if cfg[field] < 1:
      bad(field, "must be >= 1")
  num_i2i = cfg.get("num_i2i_gms", 0)  # absent from configs written before the family
  if cfg.num_random_gms + cfg.num_trained_gms + num_i2i < 1:
    raise ValueError("zoo config: num_random_gms + num_trained_gms + num_i2i_gms must be >= 1")
  if num_i2i:
    if num_i2i < 0:
      bad("num_i2i_gms", "must be >= 0")
    for field in ("i2i_per_arch", "i2i_pool"):
      if cfg[field] < 1:
        bad(field, "must be >= 1")
    if num_i2i % cfg.i2i_per_arch:
      bad("num_i2i_gms", f"must be a multiple of i2i_per_arch={cfg.i2i_per_arch}")
    if not cfg.i2i_encoders or not set(cfg.i2i_encoders) <= set(A.ENCODERS):
      bad("i2i_encoders", f"must be a non-empty tuple of {A.ENCODERS}")
    for field in ("i2i_widths", "i2i_convs_per_block", "i2i_code_channels", "i2i_output_stds"):
      if not cfg[field] or min(cfg[field]) <= 0:
        bad(field, "must be a non-empty tuple of positive numbers")
  if not 0.0 <= cfg.test_fraction <= 1.0:
    bad("test_fraction", "must be in [0, 1]")
  if cfg.cohort_size < 4:
    bad("cohort_size", "must be >= 4 (a cohort holds the 4 adversarial losses, one per GM)")
  if cfg.num_trained_gms % cfg.cohort_size:
    bad("num_trained_gms", f"must be a multiple of cohort_size={cfg.cohort_size}")
  if not cfg.num_blocks or not all(2 <= b <= 4 for b in cfg.num_blocks):
    bad("num_blocks", "must hold block counts from 2 to 4")
  for field in ("widths", "convs_per_block", "trained_widths", "trained_convs_per_block",
                "latent_dims", "init_gains", "output_stds", "skip_scales", "norm_eps"):
    if not cfg[field] or min(cfg[field]) <= 0:
      bad(field, "must be a non-empty tuple of positive numbers")


def _write_json(path: str, data: dict):
  tmp = f"{path}.tmp-{uuid.uuid4().hex}"  # unique across hosts sharing the disk
  with open(tmp, "w") as f:
    json.dump(data, f, indent=1, sort_keys=True)
  os.replace(tmp, path)


def _claim(out_dir: str, cfg: ml_collections.ConfigDict):
  """Ties out_dir to cfg; refuses a directory that holds a zoo of another config."""
  path = os.path.join(out_dir, CONFIG_FILE)
  want = {"zoo_version": ZOO_VERSION, **config_dict(cfg)}
  if os.path.exists(path):
    with open(path) as f:
      have = json.load(f)
    if have != want:
      diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
      raise ValueError(f"{out_dir} holds a zoo built with another config (differs in {diff}); "
                       "choose another --out or delete that directory")
    return
  os.makedirs(out_dir, exist_ok=True)
  _write_json(path, want)


def is_complete(out_dir: str, cfg: ml_collections.ConfigDict) -> bool:
  """True when out_dir holds a finished build of exactly this config."""
  try:
    with open(os.path.join(out_dir, CONFIG_FILE)) as f:
      have = json.load(f)
  except FileNotFoundError:
    return False
  return (have == {"zoo_version": ZOO_VERSION, **config_dict(cfg)}
          and os.path.exists(os.path.join(out_dir, SUMMARY_FILE)))


def save_png(image: np.ndarray, path: str):
  Image.fromarray(image).save(path, format="PNG")


def _write_folder(final: str, images: np.ndarray):
  """Writes images into a temporary sibling folder, then renames it to `final` (atomic)."""
  tmp = os.path.join(os.path.dirname(final), TMP_PREFIX + os.path.basename(final))
  shutil.rmtree(tmp, ignore_errors=True)  # left by a killed build
  os.makedirs(tmp)
  for i, image in enumerate(images):
    save_png(image, os.path.join(tmp, f"{i:06d}.png"))
  os.rename(tmp, final)


def _gm_done(out_dir: str, gm: P.GMPlan, num_images: int) -> bool:
  path = os.path.join(out_dir, GMS_DIR, gm.name)
  if not os.path.isdir(path):
    return False
  n = sum(f.endswith(".png") for f in os.listdir(path))
  if n != num_images:
    raise ValueError(f"{path} holds {n} PNGs, expected {num_images}: the folder was changed "
                     "after it was built; delete it and build again")
  return True


def _seed(cfg, purpose: int) -> int:
  return int(np.random.SeedSequence([cfg.seed, purpose]).generate_state(1)[0])


def training_pool(cfg) -> tuple[np.ndarray, np.ndarray]:
  """Real crops the trained GMs learn from: float32 [N, S, S, 3] in [-1, 1], source ids [N]."""
  crops, ids = real.random_crops(cfg.train_pool, cfg.image_size, _seed(cfg, 1))
  return crops.astype(np.float32) / 127.5 - 1.0, ids


def i2i_pool(cfg) -> np.ndarray:
  """uint8 real crops [N, S, S, 3] the cheap image-to-image GMs take their inputs from."""
  return real.random_crops(cfg.i2i_pool, cfg.image_size, _seed(cfg, 3))[0]


def build_gm(cfg, gm: P.GMPlan, pool: tuple[np.ndarray, np.ndarray] | None,
             crops: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
  """Makes one GM (calibrated random init, then training if it has losses; a cheap
  image-to-image GM runs on `crops`) and samples its images: (uint8 [N, S, S, 3], record)."""
  spec, n = gm.spec, cfg.images_per_gm
  rng = np.random.default_rng(gm.seed)
  record = {"name": gm.name, "family": gm.family, "losses": list(gm.losses)}
  if gm.family == A.FAMILY:
    variables = A.init(spec, gm.encoder, rng, gm.init_gain)
    x_calib, x = A.gm_inputs(crops, rng, n, A.NUM_CALIB)
    return A.images(spec, gm.encoder, variables, x_calib, x, gm.output_std), record
  shapes = variable_shapes(Generator(spec), jnp.zeros((1, spec.latent_size)), train=False)
  variables = init_variables(shapes, rng, gm.init_gain)
  z_calib = rng.standard_normal((_CALIB_LATENTS, spec.latent_size)).astype(np.float32)
  if not gm.trained:
    z = rng.standard_normal((n, spec.latent_size)).astype(np.float32)
    return sample_images(spec, variables, z, z_calib, True, gm.output_std), record
  images_pool, ids = pool
  num_classes = min(len(real.source_paths()), spec.latent_size)
  setup = TrainSetup(spec, gm.losses, gm.critic or "conv3", gm.encoder or "conv3",
                     num_classes, cfg.batch_size, cfg.lr)
  variables, mean, std, terms = train_gm(setup, calibrated(spec, variables, z_calib, n, gm.output_std),
                                         images_pool, ids % num_classes, gm.seed,
                                         cfg.train_steps)
  record["final_loss_terms"] = terms
  z = (mean + std * rng.standard_normal((n, spec.latent_size))).astype(np.float32)
  return sample_images(spec, variables, z, z_calib, False, gm.output_std), record


def _finalize(cfg, plan: list[P.GMPlan], out_dir: str, wall: float) -> dict:
  """Real crops, label tables and the summary (written last: marks the build finished)."""
  real_dir = os.path.join(out_dir, REAL_DIR)
  if not os.path.isdir(real_dir):
    crops, _ = real.random_crops(cfg.real_images, cfg.image_size, _seed(cfg, 2))
    _write_folder(real_dir, crops)
  gt, native = P.ground_truth(plan)
  labels.write_ground_truth(out_dir, gt, native)
  records = []
  for gm in plan:
    with open(os.path.join(out_dir, META_DIR, gm.name + ".json")) as f:
      records.append(json.load(f))
  space = labels.ZOO
  summary = {
      "preset": cfg.preset, "config_hash": config_hash(cfg), "image_size": cfg.image_size,
      "num_gms": len(plan), "num_trained_gms": sum(gm.trained for gm in plan),
      "images_per_gm": cfg.images_per_gm, "num_images": len(plan) * cfg.images_per_gm,
      "real_images": cfg.real_images,
      "families": dict(collections.Counter(gm.family for gm in plan)),
      "test_sets": {str(k): int(np.sum(gt.test_set == k)) for k in range(5)},
      "loss_columns": dict(zip(space.loss_names, gt.loss.sum(0).tolist())),
      "classes": {name: dict(zip(classes, np.bincount(gt.net[:, space.num_continuous + j]
                                                      .astype(int), minlength=len(classes))
                                 .tolist()))
                  for j, (name, classes) in enumerate(zip(space.discrete_names,
                                                          space.class_names))},
      "gm_seconds": round(sum(r["seconds"] for r in records), 1),
      "last_run_wall_seconds": round(wall, 1),
  }
  _write_json(os.path.join(out_dir, SUMMARY_FILE), summary)
  return summary


def _print_summary(summary: dict, out_dir: str):
  print(f"zoo {summary['preset']} ({summary['config_hash']}) at {out_dir}: "
        f"{summary['num_gms']} GMs ({summary['num_trained_gms']} trained) x "
        f"{summary['images_per_gm']} images of {summary['image_size']}px, "
        f"{summary['real_images']} real crops")
  print(f"  families: {summary['families']}")
  print(f"  test sets (0 = always training): {summary['test_sets']}")
  print(f"  loss columns (GMs): {summary['loss_columns']}")
  for name, counts in summary["classes"].items():
    print(f"  {name}: {counts}")
  print(f"  time: {summary['gm_seconds']} s making GMs (all runs), "
        f"{summary['last_run_wall_seconds']} s wall in the last run")


def _lock(out_dir: str, name: str):
  """Serialises the processes that make the same files of out_dir (e.g. two trainings started
  at once): `.lock-<i>` guards the GMs of share i, `.lock-finish` the shared files."""
  return file_lock.waiting(os.path.join(out_dir, f".lock-{name}"),
                           f"zoo: another process is building {out_dir}; waiting for it")


def build_zoo(cfg: ml_collections.ConfigDict, out_dir: str, process_index: int | None = None,
              process_count: int | None = None) -> str:
  """Builds the zoo of `cfg` into out_dir (or finishes a killed build); returns out_dir.

  Returns at once when out_dir already holds a finished build of the same config. The GMs
  are split into process_count shares, share i = GMs i, i + n, ...:
  - In a multi-process JAX job (jax.process_count() > 1) this is a collective: every process
    calls it with the same arguments and makes its share (process_index / process_count are
    JAX's); then process 0 writes the shared files. A process whose out_dir then lacks GMs of
    other shares (a disk it does not share with them) makes those, and the shared files.
  - Otherwise separate runs may split a build (CLI --process_index / --process_count); the
    run that finds every GM finished writes the labels and the summary.
  """
  validate(cfg)
  if jax.process_count() > 1:
    if (process_index, process_count) not in ((None, None),
                                              (jax.process_index(), jax.process_count())):
      raise ValueError(f"process_index={process_index}, process_count={process_count} differ "
                       f"from this JAX process ({jax.process_index()} of {jax.process_count()})")
    _build_together(cfg, out_dir)
  elif is_complete(out_dir, cfg):
    print(f"zoo {cfg.preset} at {out_dir} is complete (same config): nothing to do")
  else:
    start, plan = time.time(), P.make_plan(cfg)
    index, count = process_index or 0, process_count or 1
    _claim(out_dir, cfg)
    _make(cfg, out_dir, plan[index::count], index)
    missing = [gm.name for gm in plan if not _gm_done(out_dir, gm, cfg.images_per_gm)]
    if missing:
      print(f"zoo: this run finished its {len(plan[index::count])} GMs; {len(missing)} GMs of "
            f"other runs are not finished yet (e.g. {missing[0]}); the run that finishes last "
            "writes the labels")
    else:
      _finish(cfg, out_dir, plan, start)
  return out_dir


def _build_together(cfg: ml_collections.ConfigDict, out_dir: str):
  """build_zoo for every process of a JAX job; each calls the same collectives in turn."""
  index, count = jax.process_index(), jax.process_count()
  complete = multihost_utils.process_allgather(np.array(is_complete(out_dir, cfg)))
  if np.all(complete):
    if index == 0:
      print(f"zoo {cfg.preset} at {out_dir} is complete (same config): nothing to do")
    return
  start, plan = time.time(), P.make_plan(cfg)
  _claim(out_dir, cfg)
  _make(cfg, out_dir, plan[index::count], index)
  multihost_utils.sync_global_devices("revgm_jax zoo: shares made")
  for share in range(count):  # all there, unless out_dir is a disk not shared with `share`
    if not all(_gm_done(out_dir, gm, cfg.images_per_gm) for gm in plan[share::count]):
      print(f"zoo: GMs of process {share} are missing from {out_dir} (a disk it does not "
            "share); making them here")
      _make(cfg, out_dir, plan[share::count], share)
  if index == 0:
    _finish(cfg, out_dir, plan, start)
  multihost_utils.sync_global_devices("revgm_jax zoo: finished")
  if index != 0:  # a no-op unless process 0 wrote the shared files on another disk
    _finish(cfg, out_dir, plan, start)


def _architecture(gm: P.GMPlan) -> tuple:
  """What one compile serves: the spec (and a cheap GM's encoder)."""
  return gm.spec, gm.encoder if gm.family == A.FAMILY else ""


def _make(cfg: ml_collections.ConfigDict, out_dir: str, gms: list[P.GMPlan], share: int):
  """Makes those of `gms` (of share `share`) that are not on disk yet."""
  with _lock(out_dir, str(share)):
    todo = [gm for gm in gms if not _gm_done(out_dir, gm, cfg.images_per_gm)]
    if not todo:
      return
    for sub in (GMS_DIR, META_DIR):
      os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    pool = training_pool(cfg) if any(gm.trained for gm in todo) else None
    crops = i2i_pool(cfg) if any(gm.family == A.FAMILY for gm in todo) else None
    bar = tqdm(todo, desc=f"zoo {cfg.preset}", unit="GM", initial=len(gms) - len(todo),
               total=len(gms), file=sys.stdout)
    for i, gm in enumerate(bar):
      bar.set_postfix_str(gm.name)
      if i and _architecture(gm) != _architecture(todo[i - 1]):
        # Each compiled program keeps its code mapped: hundreds of GMs exhaust the process's
        # memory maps (LLVM "Cannot allocate memory"). A cohort shares its sampling compile.
        jax.clear_caches()
      t = time.time()
      images, record = build_gm(cfg, gm, pool, crops)
      record["seconds"] = round(time.time() - t, 2)
      _write_json(os.path.join(out_dir, META_DIR, gm.name + ".json"), record)
      _write_folder(os.path.join(out_dir, GMS_DIR, gm.name), images)
    bar.close()


def _finish(cfg: ml_collections.ConfigDict, out_dir: str, plan: list[P.GMPlan], start: float):
  """Writes the shared files (every GM is there), unless a process we waited for did."""
  with _lock(out_dir, "finish"):
    if not is_complete(out_dir, cfg):
      _print_summary(_finalize(cfg, plan, out_dir, time.time() - start), out_dir)

