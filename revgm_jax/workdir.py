"""Every path name of a training workdir, and the run metadata written beside the weights.

  WORKDIR/config.json         the run's full ConfigDict
  WORKDIR/labels.json         label space, train/val/test GM names, class weights of the run
  WORKDIR/labels/             ground truth of the run's GMs (`labels.write_ground_truth` format)
  WORKDIR/latest/<step>/      orbax: the newest train states, for resuming ("latest")
  WORKDIR/best/<step>/        orbax: the step that scored best on the validation GMs ("best")
  WORKDIR/results.json        what `train_and_evaluate` returned
  WORKDIR/report/             the evaluation report (metrics.json, report.md, figures)
  WORKDIR/calibration.json    temperatures of the probability heads for the reported step
  WORKDIR/lock                pid and host of the run writing the workdir (`workdir_lock`)
  WORKDIR/corrupt/            checkpoint steps that failed to restore, moved aside

"best" and "latest" are the only names of the two checkpoint managers, as folders and as
values of `config.eval.which`. Inference, evaluation and `revgm parse` need nothing but these.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil

import ml_collections
import numpy as np

from revgm_jax import labels

CONFIG_FILE = "config.json"
LABELS_FILE = "labels.json"
LABELS_DIR = "labels"
LATEST = "latest"
BEST = "best"
MANAGERS = (BEST, LATEST)
RESULTS_FILE = "results.json"
REPORT_DIR = "report"
METRICS_FILE = "metrics.json"  # in REPORT_DIR
CALIBRATION_FILE = "calibration.json"
SPECTRAL_FILE = "spectral_parser.npz"  # the spectral parser `revgm parse` applies
LOCK_FILE = "lock"
CORRUPT_DIR = "corrupt"
EVENTS_GLOB = "events.out.tfevents.*"


class WorkdirError(ValueError):
  """A workdir that cannot be used as asked; the message names it and the way out."""


class WriteError(Exception):
  """A file of the workdir cannot be written (disk full, read-only, a file where a folder
  belongs); the message names the path and the problem."""


@contextlib.contextmanager
def writing(path: str):
  """Turns an OSError inside into a WriteError naming the file (a failed write() or close()
  names none: then `path`, the file or folder being written)."""
  try:
    yield
  except OSError as e:
    raise WriteError(f"cannot write {e.filename or path}: {e.strerror or e}") from e


def make(workdir: str) -> None:
  """Creates the workdir (and its parents); a WriteError if that fails."""
  with writing(workdir):
    os.makedirs(workdir, exist_ok=True)


def checkpoint_dir(workdir: str, which: str) -> str:
  """The folder of the `which` ("best" | "latest") checkpoint manager."""
  if which not in MANAGERS:
    raise ValueError(f"which must be one of {MANAGERS}, got {which!r}")
  return os.path.join(workdir, which)


def results_path(workdir: str) -> str:
  return os.path.join(workdir, RESULTS_FILE)


def report_dir(workdir: str) -> str:
  return os.path.join(workdir, REPORT_DIR)


def metrics_path(workdir: str) -> str:
  return os.path.join(report_dir(workdir), METRICS_FILE)


def calibration_path(workdir: str) -> str:
  return os.path.join(workdir, CALIBRATION_FILE)


def spectral_path(workdir: str) -> str:
  return os.path.join(workdir, SPECTRAL_FILE)


def write_json(path: str, obj) -> None:
  with writing(path), open(path, "w") as f:
    json.dump(obj, f, indent=1)


def read_json(path: str) -> dict | None:
  """A JSON file of the workdir, or None if it does not exist (an older run)."""
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def is_workdir(path: str) -> bool:
  return os.path.isfile(os.path.join(path, CONFIG_FILE))


def write_run_info(workdir: str, config: ml_collections.ConfigDict, gt: labels.GroundTruth,
                   split: dict, class_weights: dict) -> None:
  """Everything besides the weights that inference needs to rebuild and read the model."""
  info = {"space": gt.space.name, "split": {k: list(v) for k, v in split.items()},
          "class_weights": {k: [np.asarray(w).tolist() for w in ws]
                            for k, ws in class_weights.items()}}
  path = os.path.join(workdir, CONFIG_FILE)
  with writing(path), open(path, "w") as f:
    f.write(config.to_json(indent=2))
  write_json(os.path.join(workdir, LABELS_FILE), info)
  with writing(os.path.join(workdir, LABELS_DIR)):
    labels.write_ground_truth(os.path.join(workdir, LABELS_DIR), gt)


def write_results(workdir: str, results: dict) -> None:
  write_json(results_path(workdir), results)


# Fields that make a run what it is: its data, split (the seed draws the validation GMs and the
# data order), labels, model and state shapes. A workdir resumes or re-evaluates only under the
# same values; where the data lives may change.
_RUN_FIELDS = ("seed", "task", "image_size", "data.", "model.", "optim.weight_decay")
_WHERE_FIELDS = ("data.zoo_dir", "data.image_dir", "data.labels_dir", "data.tfds_dir",
                 "data.max_image_pixels")


def _flatten(config: dict, prefix: str = "") -> dict:
  out = {}
  for k, v in config.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[prefix + k] = v
  return out


def run_fields_diff(old: dict, new: dict) -> list[str]:
  """["field: old -> new"] of the run fields (data, labels, model) in which two configs differ."""
  a, b = _flatten(old), _flatten(new)
  sections = tuple(f for f in _RUN_FIELDS if f.endswith("."))
  keys = sorted(k for k in set(a) | set(b) if (k in _RUN_FIELDS or k.startswith(sections))
                and k not in _WHERE_FIELDS and a.get(k) != b.get(k))
  return [f"{k}: {a.get(k)} -> {b.get(k)}" for k in keys]


def check_same_run(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Raises WorkdirError if `workdir` holds a run of another data, label or model config."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    old = json.load(f)
  diff = run_fields_diff(old, json.loads(config.to_json()))
  if diff:
    raise WorkdirError(
        f"workdir {workdir} holds a run of another config ({'; '.join(diff)}); rerun it with its "
        "own config.json, train in a new --workdir, or pass --overwrite to delete that run")


def split_change(workdir: str, split: dict) -> str | None:
  """Why resuming `workdir` with `split` would train on other GMs than its run did, or None.

  The config alone does not fix the split: the code draws it, and its rule can change (whole
  cohorts in validation since 2026-11-29, docs/protocol.md#gm-splits)."""
  path = os.path.join(workdir, LABELS_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    old = json.load(f).get("split", {})
  parts = [p for p in sorted(set(old) & set(split)) if sorted(old[p]) != sorted(split[p])]
  if not parts:
    return None
  return (f"workdir {workdir} holds a run of other {'/'.join(parts)} GMs than this code draws "
          "for its config (the split rule changed since it started); finish it with that "
          "code, train in a new --workdir, or pass --overwrite to delete that run")


def clear(workdir: str) -> None:
  """Deletes the run a workdir holds (train.py --overwrite): metadata, checkpoints, results."""
  names = (CONFIG_FILE, LABELS_FILE, LABELS_DIR, LATEST, BEST, RESULTS_FILE, REPORT_DIR,
           CALIBRATION_FILE, SPECTRAL_FILE, CORRUPT_DIR)
  for path in [os.path.join(workdir, n) for n in names] + glob.glob(
      os.path.join(workdir, EVENTS_GLOB)):
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a workdir was trained with (lists where the original had tuples)."""
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: {workdir} is not a training workdir")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_run_info(workdir: str) -> tuple[dict, labels.GroundTruth]:
  """(labels.json contents, ground truth of the run's GMs) of a training workdir."""
  path = os.path.join(workdir, LABELS_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist: {workdir} is not a training workdir")
  with open(path) as f:
    info = json.load(f)
  return info, labels.load_ground_truth(os.path.join(workdir, LABELS_DIR), info["space"])


def _has_steps(path: str) -> bool:
  return os.path.isdir(path) and any(d.isdigit() for d in os.listdir(path))


def resolve_checkpoint(path: str) -> tuple[str, str, int | None]:
  """(workdir, "best" | "latest", step or None for the newest) of a checkpoint path.

  A path is a workdir (its best step, or its latest if no best step was saved), one of its
  manager folders (WORKDIR/best, WORKDIR/latest: that manager's newest step) or one step of
  them (WORKDIR/latest/1500).
  """
  path = os.path.abspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"checkpoint path {path} does not exist")
  name, parent = os.path.basename(path), os.path.dirname(path)
  if name.isdigit() and os.path.basename(parent) in MANAGERS and is_workdir(
      os.path.dirname(parent)):
    return os.path.dirname(parent), os.path.basename(parent), int(name)
  if name in MANAGERS and is_workdir(parent):
    return parent, name, None
  if not is_workdir(path):
    raise FileNotFoundError(
        f"{path} is neither a training workdir (no {CONFIG_FILE}) nor one of its checkpoints "
        f"(WORKDIR/{BEST}[/STEP], WORKDIR/{LATEST}[/STEP])")
  return path, BEST if _has_steps(os.path.join(path, BEST)) else LATEST, None
