r"""Deepfake detection (real vs generated) from the fingerprint, on the embedded zoo.

  python train.py --config configs/detection.py --workdir ./workdir_detection
  python train.py --config configs/detection.py:paper --config.data.source=folder \
      --config.data.image_dir=/data/images --config.data.labels_dir=/data/labels
  python train.py --config configs/detection.py:tiny --workdir /tmp/det_tiny      # tests

The FEN and a conv classifier on the fingerprint F, trained jointly with the constraint losses
at the detection coefficients (mag 0.01, spec 0.05, rep 0.001, sym 0.1) plus 20 x the weighted
cross-entropy (docs/tasks.md). Real images: the zoo's real/ crops, or IMAGE_DIR/real/ of a
published-layout folder. The training GMs of leave-out set `data.test_set` and the real images
are split by image into train / val / test (`data.val_fraction`, `data.test_fraction`); the
set's GMs are never trained on and give the "held-out GMs" AUC.

Presets: default (lighter FEN and classifier, 32 x 32 zoo images: minutes on a 2-core CPU),
paper (FEN depth 31, 128 x 128, the paper's classifier widths, batch 32, 10 epochs) and tiny
(tests).
"""

import os

import ml_collections

from revgm_jax import config_utils

_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.py")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = config_utils.parse_arg(arg, preset="default")
  if arg.preset not in ("default", "paper", "tiny"):
    raise ValueError(f"unknown preset {arg.preset!r} of configs/detection.py; use default, "
                     "paper or tiny")
  config = config_utils.load_config(_DEFAULT + (":tiny" if arg.preset == "tiny" else ""))
  config.unlock()
  config.task = "detection"
  config.data.val_fraction = 0.1  # of each known class's images (sorted file order)
  config.data.test_fraction = 0.1
  config.data.num_val_gms = 0  # parsing only: selection here uses the val images
  config.model.classifier_input = "fingerprint"  # "spectrum": attribution's classifier input
  config.model.classifier_widths = (16, 32, 64, 128, 128)
  config.model.classifier_kernels = (5, 5, 5, 5, 3)
  config.model.fc_width = 256
  config.loss.coef_mag = 0.01
  config.loss.coef_spec = 0.05
  config.loss.coef_rep = 0.001
  config.loss.coef_sym = 0.1
  config.loss.w_ce = 20.0
  config.batch_size = 32
  config.num_epochs = 1
  config.eval_every_steps = 200
  config.checkpoint_every_steps = 200
  # Attribution's open-set statistics (kept here so both tasks share one config shape).
  config.eval.open_set_score = "cosine"  # msp | cosine | mahalanobis (best measured: README)
  config.eval.stats_images_per_class = 100  # training images per class for the class means
  if arg.preset == "paper":
    config.image_size = 128
    config.model.fen_depth = 31
    config.model.fen_width = 64
    config.model.classifier_widths = (32, 64, 128, 256, 512)
    config.model.fc_width = 512
    config.eval_batch_size = 128
    config.num_epochs = 10
    config.eval_every_steps = 1000
    config.checkpoint_every_steps = 1000
  elif arg.preset == "tiny":
    config.model.classifier_widths = (8, 8)
    config.model.classifier_kernels = (5, 3)
    config.model.fc_width = 16
    config.batch_size = 8
    config.data.val_fraction = 0.2
    config.data.test_fraction = 0.2
    config.eval.stats_images_per_class = 0  # all
  config.lock()
  return config
