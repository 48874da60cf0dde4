r"""`revgm parse`: the hyperparameters of the generator that made a set of images.

  revgm parse --checkpoint WORKDIR IMAGE_OR_FOLDER...          # a table on stdout
  revgm parse --checkpoint WORKDIR/checkpoints/1500 imgs/ --json
  python -m revgm_jax.parse --checkpoint WORKDIR a.png b.png   # the same, without `revgm`

The images are assumed to come from ONE generator: the per-image outputs are averaged
(continuous values, class probabilities, gated loss-type probabilities; `--aggregate fingerprint`
averages the fingerprints instead and parses the mean). Folders are read one level deep, files
with an image extension (.png .jpg .jpeg .bmp); a file named on the command line is read
whatever its extension. Each image is preprocessed as in training (`revgm_jax.inference`): the
whole image resized bilinearly to the model's config.image_size square (a large image is
therefore downscaled, aspect ratio not kept), then normalised. Continuous values are printed in
the units of the training labels (via the raw ranges saved in the workdir; normalised values
only if the run had none).

Flags (absl, as train.py; `--help` lists them) and image paths may come in any order.
Exit status: 0 parsed; 1 no readable image (each skipped file is listed with the reason);
2 bad arguments or checkpoint; 3 the result cannot be written (stdout on a full disk). With
--json, a failure after the flags still prints one JSON object: {"error", "exit_status", ...}.
A checkpoint step that fails to restore is named on stderr and the manager's previous step used.
"""

from __future__ import annotations

import json
import os
import sys
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from absl import flags, logging  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

from revgm_jax import cli_flags, inference  # noqa: E402
from revgm_jax.data import images as images_lib  # noqa: E402
from revgm_jax.labels import NUM_CONTINUOUS  # noqa: E402


def collect_files(inputs: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """(files to read, [(path, reason)] skipped) from files and folders named by the user."""
  files, skipped = [], []
  for arg in inputs:
    if os.path.isdir(arg):
      for name in sorted(os.listdir(arg)):
        path = os.path.join(arg, name)
        if os.path.isdir(path):
          skipped.append((path, "a folder inside a folder (folders are read one level deep)"))
        elif images_lib.is_image_file(name):
          files.append(path)
        else:
          skipped.append((path, "not an image file name (" +
                          ", ".join(images_lib.IMAGE_EXTENSIONS) + ")"))
    elif os.path.isfile(arg):
      files.append(arg)
    else:
      skipped.append((arg, "no such file or folder"))
  return files, skipped


def summarize(loaded: inference.Loaded, pred: dict) -> dict:
  """Per-image predictions [N, ...] -> their mean, with names, classes and raw units."""
  space, gt = loaded.space, loaded.gt
  mean = jax.tree.map(lambda a: np.asarray(a).mean(0), pred)
  cont = mean["cont"]
  raw = gt.denormalize(cont) if gt.cont_min is not None else [None] * NUM_CONTINUOUS
  out = {"continuous": [], "discrete": [], "loss_types": [], "loss_groups": []}
  for i, name in enumerate(space.continuous_names):
    out["continuous"].append({
        "name": name, "value": None if raw[i] is None else float(raw[i]),
        "normalized": float(cont[i]),
        "range": None if gt.cont_min is None else [float(gt.cont_min[i]), float(gt.cont_max[i])]})
  for j, name in enumerate(space.discrete_names):
    p = mean["disc"][j]
    out["discrete"].append({"name": name, "prediction": space.class_names[j][int(p.argmax())],
                            "probability": float(p.max()),
                            "probabilities": dict(zip(space.class_names[j], map(float, p)))})
  for i, name in enumerate(space.loss_names):
    p = float(mean["loss"][i])
    out["loss_types"].append({"name": name, "group": space.group_names[space.group_of_loss[i]],
                              "probability": p, "predicted": p > 0.5})
  for g, name in enumerate(space.group_names):
    p = float(mean["group"][g])
    out["loss_groups"].append({"name": name, "probability": p, "predicted": p > 0.5})
  return out


def format_text(result: dict) -> str:
  ck = result["checkpoint"]
  lines = [f"Parsed {result['num_images']} image(s) as one generator "
           f"(mean of {result['aggregate']}), checkpoint {ck['workdir']} ({ck['which']}, "
           f"step {ck['step']}), space {result['space']}.", "", "Architecture, continuous:"]
  for c in result["continuous"]:
    value = "" if c["value"] is None else f"{c['value']:14.4g}"
    lines.append(f"  {c['name']:24s}{value}  (normalised {c['normalized']:.3f})")
  lines += ["", "Architecture, discrete (probability):"]
  for d in result["discrete"]:
    others = ", ".join(f"{k} {v:.2f}" for k, v in d["probabilities"].items())
    lines.append(f"  {d['name']:24s}{d['prediction']:>14s} {d['probability']:.2f}   [{others}]")
  lines += ["", "Loss types (P(yes), gated by the group):"]
  for t in result["loss_types"]:
    lines.append(f"  {t['name']:28s}{t['probability']:.2f}  {'yes' if t['predicted'] else 'no'}"
                 f"   ({t['group']})")
  lines += ["", "Loss groups (P(yes)):"]
  for g in result["loss_groups"]:
    lines.append(f"  {g['name']:28s}{g['probability']:.2f}  {'yes' if g['predicted'] else 'no'}")
  return "\n".join(lines)


DESCRIPTION = __doc__.split("\n\n")[0].strip()
USAGE = "usage: {prog} --checkpoint PATH IMAGE_OR_FOLDER... [--json] [--aggregate fingerprint]"


def run(args: types.SimpleNamespace) -> int:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], "GPU")  # docs/jax_notes.md#tensorflow-off-the-gpu
  logging.set_verbosity(logging.ERROR)
  try:
    loaded = inference.load(args.checkpoint)
  except (FileNotFoundError, ValueError) as e:
    return _fail(args, 2, f"cannot load checkpoint: {e}")
  for problem in loaded.skipped:
    print(f"warning: checkpoint {problem}; used step {loaded.step}", file=sys.stderr)
  files, skipped = collect_files(args.images)
  images, used, unreadable = inference.load_images(files, loaded.config)
  skipped += unreadable
  for path, reason in skipped:
    print(f"skipped {path}: {reason}", file=sys.stderr)
  if not used:
    return _fail(args, 1, f"no readable image among {len(files)} file(s) ({len(skipped)} "
                 "skipped)", skipped=[{"path": p, "reason": r} for p, r in skipped])
  out = inference.predict(loaded, images, args.batch_size)
  pred = out["pred"]
  if args.aggregate == "fingerprint":
    mean_f = jax.device_put(out["fingerprint"].mean(0, keepdims=True))
    pred = jax.tree.map(np.asarray, inference.make_parse_fingerprint_fn(loaded)(
        loaded.variables, mean_f))
  result = {"checkpoint": {"workdir": loaded.workdir, "which": loaded.which, "step": loaded.step,
                          "skipped_steps": list(loaded.skipped)},
            "space": loaded.space.name, "aggregate": args.aggregate, "num_images": len(used),
            "images": used, "skipped": [{"path": p, "reason": r} for p, r in skipped],
            **summarize(loaded, pred)}
  return _write(json.dumps(result, indent=1) if args.json else format_text(result))


def _fail(args: types.SimpleNamespace, status: int, message: str, **details) -> int:
  """One line on stderr; with --json also the error as a JSON object on stdout."""
  print(f"revgm parse: {message}", file=sys.stderr)
  if args.json:
    return _write(json.dumps({"error": message, "exit_status": status, **details}, indent=1),
                  status)
  return status


def _write(text: str, status: int = 0) -> int:
  """Prints `text` on stdout; a failed write (full disk, closed pipe) is named, exit status 3."""
  try:
    print(text)
    sys.stdout.flush()
  except OSError as e:
    print(f"revgm parse: cannot write the result to stdout: {e.strerror or e}", file=sys.stderr)
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no 2nd failure at exit
    return 3
  return status


def main(argv: list[str] | None = None, prog: str = "python -m revgm_jax.parse") -> int:
  """`python -m revgm_jax.parse ARGS` (argv: ARGS); flags and image paths in any order."""
  fv = flags.FlagValues()
  flags.DEFINE_string("checkpoint", None, "Training workdir, WORKDIR/best or "
                      "WORKDIR/checkpoints[/STEP].", required=True, flag_values=fv)
  flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.", flag_values=fv)
  flags.DEFINE_enum("aggregate", "outputs", ["outputs", "fingerprint"], "Average the per-image "
                    "outputs (default) or the fingerprints.", flag_values=fv)
  flags.DEFINE_integer("batch_size", 64, "Images per forward pass.", lower_bound=1,
                       flag_values=fv)
  usage = USAGE.format(prog=prog)
  images = cli_flags.parse_command(fv, [prog, *(sys.argv[1:] if argv is None else argv)],
                                   f"{usage}\n\n{__doc__}", status=2)
  if not images:
    cli_flags.fail(f"no image file or folder given; {usage}", status=2)
  return run(types.SimpleNamespace(images=images, **fv.flag_values_dict()))


if __name__ == "__main__":
  sys.exit(main())
