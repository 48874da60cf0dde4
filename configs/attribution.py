r"""Image attribution (which known source made an image?) with open-set scores, on the zoo.

  python train.py --config configs/attribution.py --workdir ./workdir_attribution
  python train.py --config configs/attribution.py:paper --config.data.source=folder \
      --config.data.image_dir=/data/images --config.data.labels_dir=/data/labels
  python train.py --config configs/attribution.py:tiny --workdir /tmp/attr_tiny    # tests

K classes: the training GMs of leave-out set `data.test_set` plus real. The FEN and a classifier
on the centred magnitude spectrum of the fingerprint, trained jointly with the constraint losses
at the attribution coefficients plus 10 x the weighted cross-entropy (docs/tasks.md). The set's
GMs are the unknowns of the open-set evaluation; `eval.open_set_score` (msp | cosine |
mahalanobis) is the score `revgm attribute` decides "unknown" with, at the threshold that
accepts 95 % of the validation images of the known classes.

Everything else as configs/detection.py (same presets: default, paper, tiny); the paper's
attribution classifier: two 5 x 5 conv blocks of 32 and 64, FC 512; FEN depth 17, batch 16,
2 epochs.
"""

import os

import ml_collections

from revgm_jax import config_utils

_DETECTION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "detection.py")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  preset = config_utils.parse_arg(arg, preset="default").preset
  changes = {"task": "attribution", "model.classifier_input": "spectrum",
             "model.classifier_widths": (32, 64), "model.classifier_kernels": (5, 5),
             "loss.w_ce": 10.0}
  if preset == "paper":
    changes.update({"model.fen_depth": 17, "model.fc_width": 512, "batch_size": 16,
                    "num_epochs": 2})
  elif preset == "tiny":
    changes.update({"model.classifier_widths": (8, 8)})
  return config_utils.load_config(f"{_DETECTION}:{preset}", changes)
