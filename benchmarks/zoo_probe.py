r"""Does the zoo carry fingerprints? A linear probe on the spectra of its images.

Features: log-magnitude spectrum (rfft2) of the high-pass residual of each image (grey image
minus its 3x3 box blur), standardised; probe: multinomial logistic regression (scikit-learn).
Prints, on the zoo of a preset (the default zoo unless --zoo is given; built or reused):
  - attribution: which GM made an image (first half of each GM's images train, second half test);
  - leave-GM-out parsing of the up-sampling type (4 native kinds and the 2 label classes), the
    normalisation type (4), trained vs random-init, and the loss groups (trained GMs only, one
    binary task per group): GroupKFold over GMs, so test GMs are never seen in training; the
    loss groups also over cohorts (GMs of one architecture), so a test GM's architecture is
    unseen;
each beside chance: the accuracy of always answering the most frequent class (1 / number of
GMs for attribution). With --unit=gm the parsing tasks classify GMs, one mean spectrum per GM
(less noise per example, far fewer examples; minutes instead of hours on the large zoo).

  python benchmarks/zoo_probe.py                      # default zoo (cached after the 1st build)
  python benchmarks/zoo_probe.py --zoo DIR          # a finished zoo of any config
  python benchmarks/zoo_probe.py --zoo DIR --unit=gm
"""

import csv
import os
import time
import warnings

from absl import app, flags
import numpy as np
from PIL import Image
from scipy import ndimage
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from revgm_jax import labels
from revgm_jax.cli import cli_flags
from revgm_jax.zoo import build, presets

_PRESET = flags.DEFINE_enum("preset", "default", presets.PRESETS, "Zoo preset (built or reused "
                            "in its cache directory) when --zoo is not given.")
_ZOO = flags.DEFINE_string("zoo", "", "A finished zoo of any config.")
_IMAGES_PER_GM = flags.DEFINE_integer("images_per_gm", 100, "Images read per GM.", lower_bound=2)
_UNIT = flags.DEFINE_enum("unit", "image", ["image", "gm"], "What the parsing tasks classify: "
                          "single images, or GMs by their mean spectrum.")
_FOLDS = flags.DEFINE_integer("folds", 6, "GroupKFold folds over GMs (or cohorts).",
                              lower_bound=2)


def spectrum_features(images: np.ndarray) -> np.ndarray:
  """uint8 [N, S, S, 3] -> [N, S * (S // 2 + 1)] log |rfft2| of the high-pass grey residual."""
  grey = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32) / 255.0
  residual = grey - ndimage.uniform_filter(grey, size=(1, 3, 3), mode="reflect")
  mag = np.abs(np.fft.rfft2(residual, axes=(1, 2)))
  return np.log(mag + 1e-4).reshape(len(images), -1)


def load_zoo(out_dir: str, per_gm: int) -> tuple[labels.GroundTruth, np.ndarray, np.ndarray]:
  """Ground truth, features [N, F] and GM rows [N] of the first `per_gm` images of each GM."""
  gt = labels.load_ground_truth(out_dir, "zoo")
  feats, rows = [], []
  for r, name in enumerate(gt.names):
    folder = os.path.join(out_dir, "gms", name)
    files = sorted(os.listdir(folder))[:per_gm]
    imgs = np.stack([np.asarray(Image.open(os.path.join(folder, f)).convert("RGB"))
                     for f in files])
    feats.append(spectrum_features(imgs))
    rows += [r] * len(files)
  return gt, np.concatenate(feats), np.array(rows)


def _read_index(out: str) -> dict[str, list[str]]:
  with open(os.path.join(out, labels.INDEX_FILE), newline="") as f:
    recs = list(csv.DictReader(f))
  return {k: [r[k] for r in recs] for k in recs[0]}


def _probe():
  # A probe, not a tuned classifier: a loose tolerance keeps it at ~10 s instead of ~100 s
  # for the 60-way attribution, at the same accuracy (measured on the default zoo).
  return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=100, tol=1e-3))


def attribution(x: np.ndarray, rows: np.ndarray) -> tuple[float, float, int]:
  """Closed-set GM attribution: (accuracy, chance, number of GMs)."""
  first = np.zeros(len(rows), bool)
  for r in np.unique(rows):
    idx = np.flatnonzero(rows == r)
    first[idx[:len(idx) // 2]] = True
  model = _probe().fit(x[first], rows[first])
  k = len(np.unique(rows))
  return float(np.mean(model.predict(x[~first]) == rows[~first])), 1.0 / k, k


def leave_gm_out(x: np.ndarray, y: np.ndarray, rows: np.ndarray, folds: int) -> float:
  """Accuracy of the probe on the images of GMs held out of its training (GroupKFold)."""
  hits = 0
  for train, test in GroupKFold(n_splits=folds).split(x, y, rows):
    classes = np.unique(y[train])
    if len(classes) == 1:
      hits += np.sum(y[test] == classes[0])
    else:
      hits += np.sum(_probe().fit(x[train], y[train]).predict(x[test]) == y[test])
  return hits / len(y)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
  warnings.filterwarnings("ignore", category=ConvergenceWarning)
  if _ZOO.value:
    if not os.path.exists(os.path.join(_ZOO.value, build.SUMMARY_FILE)):
      raise app.UsageError(f"--zoo {_ZOO.value}: not a finished zoo (no {build.SUMMARY_FILE}); build it "
                   "with python -m revgm_jax.zoo build")
    out = _ZOO.value
  else:
    cfg = presets.get_preset(_PRESET.value)
    out = build.build_zoo(cfg, build.default_zoo_dir(cfg))
  start = time.time()
  gt, x, rows = load_zoo(out, _IMAGES_PER_GM.value)
  index = _read_index(out)
  print(f"zoo {out}: {len(gt)} GMs, {len(rows)} images, {x.shape[1]} spectral features")
  print(f"{'task':60s} {'classes':>7s} {'probe':>6s} {'chance':>6s}")
  acc, chance, k = attribution(x, rows)
  print(f"{'attribution over GMs (held-out images of each GM)':60s} {k:7d} {acc:6.3f} "
        f"{chance:6.3f}")

  print(f"parsing tasks classify {'GMs by their mean spectrum' if _UNIT.value == 'gm' else 'images'}")
  every, each_gm = np.ones(len(gt), bool), np.arange(len(gt))
  trained = gt.loss.sum(1) > 0
  # (task, label per GM, GMs of the task, CV group per GM)
  tasks = [("up-sampling kind (4 native kinds), leave-GM-out", np.array(index["upsampling"]),
            every, each_gm),
           ("up-sampling type (learned / interp.), leave-GM-out", gt.net[:, 12].astype(int),
            every, each_gm),
           ("normalisation type (4), leave-GM-out", gt.net[:, 9].astype(int), every, each_gm),
           ("trained (any loss) vs random-init, leave-GM-out", trained.astype(int), every,
            each_gm)]
  # GMs of one cohort share an architecture: leave-cohort-out holds them out together.
  cohort = np.array([int(c) if c else -1 - r for r, c in enumerate(index.get("cohort", []))]
                    if "cohort" in index else -1 - each_gm)
  for g, name in enumerate(gt.space.group_names):
    for by, groups in (("GM", each_gm), ("cohort", cohort)):
      tasks.append((f"loss group '{name}' (trained GMs, leave-{by}-out)", gt.loss_group[:, g],
                    trained, groups))
  if _UNIT.value == "gm":  # [GMs, F]: one mean spectrum per GM
    x = np.stack([x[rows == r].mean(0) for r in each_gm])
    rows = each_gm
  for name, y_all, gms, groups_all in tasks:
    sel = gms[rows]
    y = np.asarray(y_all)[rows[sel]]
    groups = groups_all[rows[sel]]
    _, counts = np.unique(y, return_counts=True)
    if len(np.unique(groups)) < 2:
      print(f"{name:60s} {len(counts):7d}    n/a (one group: nothing to hold out)")
      continue
    acc = leave_gm_out(x[sel], y, groups, min(_FOLDS.value, len(np.unique(groups))))
    print(f"{name:60s} {len(counts):7d} {acc:6.3f} {counts.max() / len(y):6.3f}")
  print(f"probe time {time.time() - start:.0f} s")


if __name__ == "__main__":
  app.run(main, flags_parser=cli_flags.parse_flags)
