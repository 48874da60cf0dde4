r"""Model parsing on the published RED116 set with the paper's settings.

For users who have the images: `IMAGE_DIR/<GM_NAME>/*.png|jpg|jpeg|bmp`, one folder per GM named
as in the GM index, and a label directory with the published ground-truth tables (where to get
them: docs/labels.md#getting-the-tables; the GM index ships with the package).

  python train.py --config configs/red116.py \
      --config.data.image_dir=/data/RED116 --config.data.labels_dir=/data/red116_labels \
      --config.data.test_set=1 --workdir /ckpt/red116_set1

Settings: images resized to 64 x 64, FEN 17 x 64, batch 16, Adam lr 1e-4 with PyTorch-style
weight decay 1e-4 (the 116 scripts), 20 epochs (about 104 GMs x 1000 images / 16 = 6,500
steps per epoch on the full set), low-frequency radius 25, MSE on the continuous head (the
official code's; configs/default.py uses "bce") from PyTorch's initial bias (configs/default.py
starts it at the training mean). Model selection on 8 held-out
training GMs (not on the test GMs as the official eval script does). Run the four leave-out
sets with --config.data.test_set=1..4, each in its own workdir. The recipe and the protocol:
docs/protocol.md.
"""

import os

import ml_collections

from revgm_jax import config_utils

_DEFAULT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "default.py")

# What this config changes in configs/default.py.
RED116 = {
    "data.source": "folder",
    "data.space": "red116",
    "data.num_val_gms": 8,
    "image_size": 64,
    "batch_size": 16,
    "eval_batch_size": 256,
    "model.fen_depth": 17,
    "model.fen_width": 64,
    "loss.low_freq_radius": 25,
    "loss.continuous": "mse",  # the official code's loss (docs/official_code.md#d7-continuous-loss)
    "model.cont_bias_init": "torch",  # the official code's init
    "optim.weight_decay": 1e-4,
    "num_epochs": 20,
    "num_train_steps": -1,
    "log_every_steps": 100,
    "eval_every_steps": 6500,  # about once per epoch, as the official per-epoch selection
    "checkpoint_every_steps": 1000,
    "keep_checkpoints": 3,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  if arg:
    raise ValueError(f"configs/red116.py takes no argument (got {arg!r}); override fields "
                     "with --config.<field>=<value>")
  return config_utils.load_config(_DEFAULT, RED116)
