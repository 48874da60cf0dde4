r"""Images per second of the training input pipeline at 64 x 64 and 128 x 128.

  python benchmarks/input_pipeline.py                    # generated folder in a temp dir
  python benchmarks/input_pipeline.py --image_dir=/data/RED116 --labels_dir=/data/red116_labels \
      --space=red116

Measures the host pipeline of `input_pipeline.train_dataset` (read shards, shuffle, decode PNG,
resize, normalise, batch) for one process after a warm-up, the build of the TFRecord shards
excluded. The generated folder mimics the published set: GM folders of smooth 256 x 256 PNG
images (noise on a blurred random field, which compresses like real generator output, not
like white noise). The rate one training step consumes is an assumption given by
--train_step_images_per_s (at 64 x 64, scaled by pixel count for other sizes); the pipeline
should deliver at least 10x that.
"""

import os
import tempfile
import time

from absl import app, flags, logging
import numpy as np
from PIL import Image

from revgm_jax import config_utils, labels, input_pipeline, sharding
from revgm_jax.data import prepare, splits

_CONFIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                       "default.py")
_IMAGE_DIR = flags.DEFINE_string("image_dir", "", "Published-layout folder; '' = generate one.")
_LABELS_DIR = flags.DEFINE_string("labels_dir", "", "Label dir of --image_dir ('' = image_dir).")
_SPACE = flags.DEFINE_string("space", "zoo", "Hyperparameter space of the labels.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "TFRecord cache; '' = a temp dir.")
_NUM_GMS = flags.DEFINE_integer("num_gms", 8, "Generated GM folders.")
_IMAGES_PER_GM = flags.DEFINE_integer("images_per_gm", 150, "Generated images per GM.")
_SOURCE_SIZE = flags.DEFINE_integer("source_size", 256, "Side of the generated images.")
_SIZES = flags.DEFINE_list("sizes", ["64", "128"], "config.image_size values to measure.")
_BATCH = flags.DEFINE_integer("batch_size", 64, "Per-host batch.")
_BATCHES = flags.DEFINE_integer("batches", 40, "Timed batches (after 5 warm-up batches).")
_STEP_RATE = flags.DEFINE_float(
    "train_step_images_per_s", 30.0,
    "Assumed images/s one training step consumes at 64 x 64 on this CPU (default config).")


def write_folder(root: str, num_gms: int, images_per_gm: int, size: int):
  """root/gms/<GM>/*.png and zoo-space labels in root (test set 1 = the last two GMs)."""
  space = labels.get_space("zoo")
  rng = np.random.default_rng(0)
  names = tuple(f"bench_gm_{k:02d}" for k in range(num_gms))
  for name in names:
    os.makedirs(os.path.join(root, "gms", name))
    for i in range(images_per_gm):
      field = Image.fromarray(rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8))
      smooth = np.asarray(field.resize((size, size), Image.BICUBIC), np.int16)
      noisy = np.clip(smooth + rng.integers(-8, 9, smooth.shape), 0, 255).astype(np.uint8)
      Image.fromarray(noisy).save(os.path.join(root, "gms", name, f"{i:04d}.png"))
  disc = np.stack([rng.integers(0, k, num_gms) for k in space.discrete_classes], 1)
  labels.write_ground_truth(root, labels.GroundTruth(
      space=space, names=names,
      net=np.concatenate([rng.uniform(size=(num_gms, 9)), disc], 1).astype(np.float32),
      loss=rng.integers(0, 2, (num_gms, space.num_loss_types)).astype(np.int32),
      loss_group=rng.integers(0, 2, (num_gms, space.num_groups)).astype(np.int32),
      test_set=np.array([0] * (num_gms - 2) + [1, 1], np.int32)))


def measure(config) -> float:
  """Host-pipeline images/s for one process, after a warm-up."""
  prepared = prepare.prepare(config)
  ds = input_pipeline.get_datasets(config, prepared, splits.draw(config, prepared),
                                   sharding.make_mesh())
  it = ds.train_dataset(0, 1).as_numpy_iterator()
  for _ in range(5):
    next(it)
  start = time.perf_counter()
  for _ in range(_BATCHES.value):
    next(it)
  return _BATCHES.value * config.batch_size / (time.perf_counter() - start)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  with tempfile.TemporaryDirectory() as tmp:
    if _IMAGE_DIR.value:
      image_dir, labels_dir, space = _IMAGE_DIR.value, _LABELS_DIR.value, _SPACE.value
    else:
      write_folder(tmp, _NUM_GMS.value, _IMAGES_PER_GM.value, _SOURCE_SIZE.value)
      image_dir, labels_dir, space = os.path.join(tmp, "gms"), tmp, "zoo"
    print(f"input pipeline, 1 process, {os.cpu_count()} CPU cores visible, batch "
          f"{_BATCH.value}, source {image_dir}")
    for size in (int(s) for s in _SIZES.value):
      config = config_utils.load_config(_CONFIG, {
          "data.source": "folder", "data.image_dir": image_dir, "data.labels_dir": labels_dir,
          "data.space": space, "data.tfds_dir": _DATA_DIR.value or os.path.join(tmp, "tfds"),
          "data.num_val_gms": 1, "image_size": size, "batch_size": _BATCH.value,
          "eval_batch_size": _BATCH.value})
      rate = measure(config)
      needed = _STEP_RATE.value * (64 / size) ** 2
      print(f"  {size:3d} x {size:<3d}: {rate:8.0f} images/s; a training step consumes ~"
            f"{needed:.1f} images/s (assumed) -> {rate / needed:.0f}x")


if __name__ == "__main__":
  app.run(main)
