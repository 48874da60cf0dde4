r"""`revgm parse`: the hyperparameters of the generator that made a set of images.

  revgm parse --checkpoint WORKDIR IMAGE_OR_FOLDER...          # a table on stdout
  revgm parse --checkpoint WORKDIR/latest/1500 imgs/ --json
  revgm parse --checkpoint WORKDIR --each CASES/ --json        # one generator per subfolder
  revgm parse --checkpoint WORKDIR imgs/ --report parse.html    # + a one-page visual report
  python -m revgm_jax.cli.parse --checkpoint WORKDIR a.png b.png   # the same, without `revgm`

The images are assumed to come from ONE generator: the per-image outputs are averaged
(continuous values, class probabilities, gated loss-type probabilities; `--aggregate fingerprint`
averages the fingerprints instead and parses the mean). Folders are read one level deep, files
with an image extension (.png .jpg .jpeg .bmp); a file named on the command line is read
whatever its extension. Each image is preprocessed as in training (`revgm_jax.inference`): the
whole image resized bilinearly to the model's config.image_size square (a large image is
therefore downscaled, aspect ratio not kept), then normalised. Continuous values are printed in
the units of the training labels (via the raw ranges saved in the workdir; normalised values
only if the run had none); a column whose training labels are all integers (a count) as an
integer with the 10th-90th percentile over the images. Each head answers as the workdir's
decisions say (fitted on the validation GMs: the deep parser, the spectral parser or their
mean, shrunk towards the training baseline, thresholded, temperature-scaled where that helped;
docs/protocol.md#the-parsers-answer); beside every head stands its held-out score from the
workdir's evaluation report, with the baselines', and a head that the report measured no
better than mean / majority gives the baseline's answer, marked so (`parse_result.py`).

--each DIR...: every subfolder of DIR is parsed as its own generator with one model load; the
text blocks, or one JSON document per line (JSON Lines), come in the folders' sorted order; an
empty subfolder gives a document with num_images 0 and an "error". Compiled programs are kept
in the persistent JAX cache under the user's cache folder, so a second call starts fast.

Flags (absl, as train.py; `--help` lists them) and image paths may come in any order.
Exit status: 0 parsed; 1 no readable image (with --each: in no subfolder; each skipped file is
listed with the reason); 2 bad arguments or checkpoint; 3 the result cannot be written (stdout on
a full disk). With --json, a failure after the flags still prints a JSON document with its
"error". A checkpoint step that fails to restore is named on stderr and the previous step used.
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

from revgm_jax import config_utils, inference  # noqa: E402
from revgm_jax import workdir as workdir_lib  # noqa: E402
from revgm_jax.cli import cli_flags, parse_result  # noqa: E402
from revgm_jax.data import images as images_lib  # noqa: E402
from revgm_jax.evaluation import decisions  # noqa: E402
from revgm_jax.features import linear, spectral  # noqa: E402


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


DESCRIPTION = __doc__.split("\n\n")[0].strip()
USAGE = ("usage: {prog} --checkpoint PATH IMAGE_OR_FOLDER... [--json] [--aggregate fingerprint] "
         "[--each] [--report OUT.html]")


def use_compilation_cache() -> None:
  """JAX's persistent compilation cache in the user's cache folder (unless one is set)."""
  if jax.config.jax_compilation_cache_dir is None:
    jax.config.update("jax_compilation_cache_dir",
                      os.path.join(config_utils.cache_root(), "jax_cache"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def load_spectral(loaded, calib: dict | None) -> linear.SpectralParser | None:
  """The run's spectral parser where its decisions use it (None otherwise)."""
  path = workdir_lib.spectral_path(loaded.workdir)
  if not calib or not calib.get("spectral"):
    return None
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} is missing: the workdir's decisions need its spectral "
                            "parser (run eval.py on the workdir to write both again)")
  return linear.SpectralParser.load(path)


def _answers(loaded, out: dict, images: np.ndarray, spectral_parser, calib, aggregate: str,
             pred: dict) -> tuple[dict, np.ndarray]:
  """(the answer of the set: one row per image, or one for the mean fingerprint; the
  continuous answer of each image, for the count intervals)."""
  spec_per_image = spec = None
  if spectral_parser is not None:
    c = loaded.config.data
    features = spectral.image_features(spectral.unit_images(images, c.mean, c.std))
    spec_per_image = spectral_parser.predict(features)
    spec = (spectral_parser.predict(features.mean(0, keepdims=True))
            if aggregate == "fingerprint" else spec_per_image)
  group_of_loss = loaded.space.group_of_loss
  per_image = parse_result.answer(decisions.candidates(out["pred"], spec_per_image), calib,
                                  group_of_loss)
  return (parse_result.answer(decisions.candidates(pred, spec), calib, group_of_loss),
          per_image["cont"])


def parse_set(loaded, predict_fn, files: list[str], skipped: list, args, context: dict,
              calib: dict | None, spectral_parser, metrics: dict | None
              ) -> tuple[dict, dict | None]:
  """(the JSON document of one set of image files, the arrays of its visual report or None);
  context: the document's fields shared by every set."""
  images, used, unreadable = inference.load_images(files, loaded.config)
  skipped = skipped + unreadable
  doc = {**context, "num_images": len(used), "images": used,
         "skipped": [{"path": p, "reason": r} for p, r in skipped]}
  if not used:
    doc["error"] = f"no readable image among {len(files)} file(s) ({len(skipped)} skipped)"
    return doc, None
  out = inference.predict(loaded, images, args.batch_size, predict_fn)
  pred = out["pred"]
  if args.aggregate == "fingerprint":
    mean_f = jax.device_put(out["fingerprint"].mean(0, keepdims=True))
    pred = jax.tree.map(np.asarray, inference.make_parse_fingerprint_fn(loaded)(
        loaded.variables, mean_f))
  pred, per_image_cont = _answers(loaded, out, images, spectral_parser, calib, args.aggregate,
                                  pred)
  doc.update(parse_result.summarize(loaded, pred, per_image_cont, calib, metrics))
  arrays = {"images": images * loaded.config.data.std + loaded.config.data.mean,
            "fingerprints": out["fingerprint"], "spectrum": out["spectrum"].mean(0)}
  return doc, arrays


def _sets(args) -> tuple[list[tuple[str | None, list[str], list]], list]:
  """[(folder or None, files, skipped)] to parse, and [(path, reason)] of unusable arguments."""
  if not args.each:
    files, skipped = collect_files(args.images)
    return [(None, files, skipped)], []
  sets, bad = [], []
  for root in args.images:
    if not os.path.isdir(root):
      bad.append((root, "not a folder (--each reads the subfolders of folders)"))
      continue
    for name in sorted(os.listdir(root)):
      if os.path.isdir(os.path.join(root, name)):
        sets.append((os.path.join(root, name), *collect_files([os.path.join(root, name)])))
  return sets, bad


def run(args: types.SimpleNamespace) -> int:
  logging.set_verbosity(logging.ERROR)
  use_compilation_cache()
  try:
    loaded = inference.load(args.checkpoint, task="parsing")
  except (FileNotFoundError, ValueError) as e:
    return _fail(args, 2, f"cannot load checkpoint: {e}")
  for problem in loaded.skipped:
    print(f"warning: checkpoint {problem}; used step {loaded.step}", file=sys.stderr)
  sets, bad = _sets(args)
  for path, reason in bad:
    print(f"skipped {path}: {reason}", file=sys.stderr)
  if not sets:
    return _fail(args, 1, "--each found no subfolder to parse")
  calib, note = parse_result.load_calibration(loaded)
  try:
    spectral_parser = load_spectral(loaded, calib)
  except (OSError, ValueError) as e:
    return _fail(args, 2, f"cannot load the spectral parser: {e}")
  metrics, source = parse_result.reliability_source(loaded.workdir)
  context = {"checkpoint": {"workdir": loaded.workdir, "which": loaded.which,
                            "step": loaded.step, "skipped_steps": list(loaded.skipped)},
             "space": loaded.space.name, "aggregate": args.aggregate,
             "calibration": {"applied": calib is not None, "note": note},
             "reliability_source": source}
  predict_fn = inference.make_predict_fn(loaded)
  parsed = 0
  for n, (folder, files, skipped) in enumerate(sets):
    doc, arrays = parse_set(loaded, predict_fn, files, skipped, args,
                            {**context, "folder": folder}, calib, spectral_parser, metrics)
    for skip in doc["skipped"]:
      print(f"skipped {skip['path']}: {skip['reason']}", file=sys.stderr)
    if "error" in doc:
      print(f"revgm parse: {folder + ': ' if folder else ''}{doc['error']}", file=sys.stderr)
      if args.json and _write(json.dumps(doc) if args.each else json.dumps(doc, indent=1)):
        return 3
      continue
    parsed += 1
    if args.report:
      # Imported for --report only: matplotlib would slow every other parse's start.
      from revgm_jax.cli import parse_html  # pylint: disable=g-import-not-at-top
      path = (os.path.join(args.report, os.path.basename(folder) + ".html") if args.each
              else args.report)
      doc["report"] = os.path.abspath(parse_html.write(path, doc, arrays))
    text = ((json.dumps(doc) if args.each else json.dumps(doc, indent=1)) if args.json
            else ("\n" if n else "") + parse_result.format_text(doc))
    if _write(text):
      return 3
  return 0 if parsed else 1


def _fail(args: types.SimpleNamespace, status: int, message: str) -> int:
  """One line on stderr; with --json also {"error", "exit_status"} on stdout."""
  print(f"revgm parse: {message}", file=sys.stderr)
  if args.json and _write(json.dumps({"error": message, "exit_status": status}, indent=1)):
    return 3
  return status


def _write(text: str) -> int:
  """Prints `text` on stdout: 0, or 3 after naming a failed write (full disk, closed pipe)."""
  try:
    print(text, flush=True)
  except OSError as e:
    print(f"revgm parse: cannot write the result to stdout: {e.strerror or e}", file=sys.stderr)
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no 2nd failure at exit
    return 3
  return 0


def main(argv: list[str] | None = None, prog: str = "python -m revgm_jax.cli.parse") -> int:
  """`python -m revgm_jax.cli.parse ARGS` (argv: ARGS); flags and image paths in any order."""
  fv = flags.FlagValues()
  cli_flags.define_checkpoint_flags(
      fv, "Training workdir, WORKDIR/best or WORKDIR/latest[/STEP].")
  flags.DEFINE_enum("aggregate", "outputs", ["outputs", "fingerprint"], "Average the per-image "
                    "outputs (default) or the fingerprints.", flag_values=fv)
  flags.DEFINE_bool("each", False, "Parse every subfolder of the given folders as its own "
                    "generator (one model load; JSON Lines with --json).", flag_values=fv)
  flags.DEFINE_string("report", None, "Write a one-page HTML report (mean fingerprint, "
                      "spectrum, inputs, the parse with its reliability) to this file; with "
                      "--each, into this folder, one file per subfolder.", flag_values=fv)
  usage = USAGE.format(prog=prog)
  images = cli_flags.parse_command(fv, [prog, *(sys.argv[1:] if argv is None else argv)],
                                   f"{usage}\n\n{__doc__}", status=2)
  if not images:
    cli_flags.fail(f"no image file or folder given; {usage}", status=2)
  return run(types.SimpleNamespace(images=images, **fv.flag_values_dict()))


if __name__ == "__main__":
  sys.exit(main())
