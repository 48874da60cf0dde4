r"""The fixed-feature parser ("spectral features + linear heads") on the 4 leave-out sets.

  python experiments/spectral_parser.py                                  # default zoo, cached
  python experiments/spectral_parser.py --config configs/default.py:large
  python experiments/spectral_parser.py --zoo DIR --sets 1,2 --out_json /tmp/spectral.json

For each leave-out set: the product's split (`splits.split_gms` with the config's
num_val_gms and seed, GMs without an image folder left out as the input pipeline does), the
heads fitted on the training GMs' images (`revgm_jax.features`), scored per image (the unit of
the deep parser's main table, k = 1) on the test GMs and on the validation GMs beside the
nearest training GM in feature space (standardised Euclidean and cosine) and the mean /
majority. Prints markdown tables per set and mean ± std over the sets, with wall times.
Reads the zoo's PNGs; builds the zoo only with --build (the default zoo takes ~9 min).
"""

import json
import os
import sys
import time

# Small linear fits: one BLAS thread each is faster than several fighting over a shared CPU.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
  os.environ.setdefault(_var, "1")

from absl import app, flags
import numpy as np
from PIL import Image

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:  # `python experiments/spectral_parser.py` puts only experiments/ there
  sys.path.insert(0, _REPO)

from revgm_jax import labels  # noqa: E402
from revgm_jax.data import splits  # noqa: E402
from revgm_jax.cli import cli_flags  # noqa: E402
from revgm_jax.evaluation import baselines, metrics  # noqa: E402
from revgm_jax.features import fitting, linear, spectral  # noqa: E402
from revgm_jax.zoo import build  # noqa: E402

_CONFIG = cli_flags.define_config_file(
    "config", os.path.join(_REPO, "configs", "default.py"),
    "Config whose zoo, num_val_gms and seed give the split.", lock_config=True)
_ZOO = flags.DEFINE_string("zoo", "", "A finished zoo folder (default: the config's cached zoo).")
_BUILD = flags.DEFINE_bool("build", False, "Build the config's zoo if it is not cached.")
_SETS = flags.DEFINE_list("sets", ["1", "2", "3", "4"], "Leave-out test sets.")
_UNIT = flags.DEFINE_enum("unit", "image", ["image", "gm"], "Fit on images or on GM means.")
_FIT_IMAGES = flags.DEFINE_integer("fit_images_per_gm", 10, "Training images per GM the heads "
                                   "are fitted on (0 = all); scoring uses every image.")
_PCA = flags.DEFINE_integer("pca_dims", 32, "Principal components the heads are fitted on "
                           "(0 = all features).", lower_bound=0)
_CLASS_WEIGHT = flags.DEFINE_enum("class_weight", "none", ["balanced", "none"],
                                  "Class weights of the logistic heads.")
_OUT_JSON = flags.DEFINE_string("out_json", "", "Also write every metric here.")

ROWS = {"spectral": linear.NAME, "nearest_euclidean": "nearest training GM by features "
        "(standardised Euclidean)", "nearest_cosine": "nearest training GM by features "
        "(standardised cosine)", "majority": "mean / majority"}
COLUMNS = (("L1 cont. ↓", "cont_l1"), ("acc net ↑", "net_acc"), ("F1 net ↑", "net_f1"),
           ("F1 loss ↑", "loss_f1"), ("AUC loss ↑", "loss_auc"), ("F1 group ↑", "group_f1"))


def read_zoo(zoo_dir: str) -> tuple[labels.GroundTruth, np.ndarray, np.ndarray]:
  """(ground truth, features [N, D], GM row [N]) of every image of the zoo's GMs."""
  gt = labels.load_ground_truth(zoo_dir, "zoo")
  feats, rows = [], []
  for r, name in enumerate(gt.names):
    folder = os.path.join(zoo_dir, build.GMS_DIR, name)
    if not os.path.isdir(folder):
      continue
    files = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
    imgs = np.stack([np.asarray(Image.open(os.path.join(folder, f)).convert("RGB"))
                     for f in files])  # [n, S, S, 3] uint8
    feats.append(spectral.image_features(imgs))
    rows.append(np.full(len(files), r))
  return gt, np.concatenate(feats), np.concatenate(rows)


def _target(gt, rows):
  return {"net": gt.net[rows], "loss": gt.loss[rows], "loss_group": gt.loss_group[rows]}


def evaluate_set(gt, x, rows, split, config) -> dict:
  """{"test": {row: metrics}, "val": {row: metrics}, "fit_s": seconds, "chosen": ...}."""
  train_rows = gt.rows(split["train"])
  start = time.time()
  parser = fitting.fit(x, rows, gt, train_rows, unit=_UNIT.value,
                      images_per_gm=_FIT_IMAGES.value, pca_dims=_PCA.value,
                      class_weight=None if _CLASS_WEIGHT.value == "none" else "balanced",
                      seed=config.seed)
  fit_s = time.time() - start
  # The retrieval bank: the mean features of at most retrieval_images_per_gm images per GM.
  cap = config.eval.retrieval_images_per_gm or len(rows)
  in_bank = np.zeros(len(rows), bool)
  for r in train_rows:
    in_bank[np.flatnonzero(rows == r)[:cap]] = True
  bank_rows, bank = spectral.gm_mean_features(x[in_bank], rows[in_bank])
  out = {"fit_s": fit_s, "cont_alpha": parser.cont_alpha.tolist(),
         "family_c": dict(zip(("disc", "group", "loss"), parser.family_c.tolist()))}
  for part in ("test", "val"):
    sel = np.isin(rows, gt.rows(split[part]))
    q, target = x[sel], _target(gt, rows[sel])
    preds = {"spectral": parser.predict(q),
             "nearest_euclidean": baselines.feature_retrieval_predictions(gt, bank_rows, bank, q),
             "nearest_cosine": baselines.feature_retrieval_predictions(gt, bank_rows, bank, q,
                                                                       "cosine"),
             "majority": baselines.majority_predictions(gt, train_rows, len(q))}
    out[part] = {m: metrics.parsing_metrics(p, target, gt.space) for m, p in preds.items()}
    out[part]["num_images"] = int(sel.sum())
  return out


def _fmt(v):
  return "N/A" if v is None else f"{v:.3f}"


def table(per_set: dict, part: str) -> str:
  lines = ["| set | row | " + " | ".join(c for c, _ in COLUMNS) + " |",
           "|---|---|" + "---|" * len(COLUMNS)]
  for s, res in per_set.items():
    for m, name in ROWS.items():
      lines.append(f"| {s} | {name} | " + " | ".join(_fmt(res[part][m].get(k))
                                                      for _, k in COLUMNS) + " |")
  for m, name in ROWS.items():
    comb = metrics.combine({s: res[part][m] for s, res in per_set.items()})
    cells = [f"{comb[k]['mean']:.3f} ± {comb[k]['std']:.3f}" if comb[k]["mean"] is not None
             else "N/A" for _, k in COLUMNS]
    lines.append(f"| mean ± std | {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
  config = _CONFIG.value
  try:
    sets = [int(s) for s in _SETS.value]
  except ValueError:
    raise app.UsageError(f"--sets={','.join(_SETS.value)}: expected set numbers") from None
  zoo_dir = _ZOO.value or config.data.zoo_dir or build.default_zoo_dir(config.data.zoo)
  if not os.path.exists(os.path.join(zoo_dir, build.SUMMARY_FILE)):
    if _ZOO.value or not _BUILD.value:
      raise app.UsageError(f"{zoo_dir}: not a finished zoo (no {build.SUMMARY_FILE}); build it "
                           "(python -m revgm_jax.zoo build, or --build) or wait for its build")
    build.build_zoo(config.data.zoo, zoo_dir)
  t0 = time.time()
  gt, x, rows = read_zoo(zoo_dir)
  read_s = time.time() - t0
  print(f"zoo {zoo_dir}: {len(np.unique(rows))} GMs, {len(rows)} images, {x.shape[1]} features "
        f"({read_s:.1f} s to read and featurise)", flush=True)
  present = [gt.names[r] for r in np.unique(rows)]
  per_set = {}
  for s in sets:
    split = splits.split_gms(gt.subset(present), s, (), config.data.num_val_gms, config.seed,
                             config.data.max_train_gms)
    res = evaluate_set(gt, x, rows, split, config)
    res["gms"] = {k: len(v) for k, v in split.items()}
    per_set[s] = res
    print(f"set {s}: {res['gms']} GMs; fit {res['fit_s']:.1f} s; chosen alpha per column "
          f"{res['cont_alpha']}, C per family {res['family_c']}", flush=True)
  total_s = time.time() - t0
  print(f"\n### Test GMs (per image; {linear.NAME}, fit unit {_UNIT.value}, "
        f"{_FIT_IMAGES.value or 'all'} images per training GM, {_PCA.value or 'all'} PCA dims, "
        f"class_weight "
        f"{_CLASS_WEIGHT.value})\n\n{table(per_set, 'test')}")
  print(f"\n### Validation GMs (per image)\n\n{table(per_set, 'val')}")
  print(f"\nwall time {total_s:.1f} s (read + features {read_s:.1f} s, fits "
        f"{sum(r['fit_s'] for r in per_set.values()):.1f} s)")
  if _OUT_JSON.value:
    with open(_OUT_JSON.value, "w") as f:
      json.dump({"zoo": zoo_dir, "flags": {"unit": _UNIT.value,
                                           "fit_images_per_gm": _FIT_IMAGES.value,
                                           "pca_dims": _PCA.value,
                                           "class_weight": _CLASS_WEIGHT.value},
                 "wall_s": total_s, "sets": per_set}, f, indent=1)


if __name__ == "__main__":
  app.run(main, flags_parser=cli_flags.parse_flags)
