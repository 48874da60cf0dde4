r"""`revgm detect` and `revgm attribute`: real or generated, and which known source, per image.

  revgm detect --checkpoint WORKDIR IMAGE_OR_FOLDER...        # P(generated) per image, summary
  revgm attribute --checkpoint WORKDIR imgs/ --top 3 --json  # top sources + open-set decision

The checkpoint must come from a run of that task (configs/detection.py, configs/attribution.py;
config.task in its config.json). Each image is judged on its own (unlike `revgm parse`),
preprocessed as in training (`revgm_jax.inference`). `attribute` prints the most probable known
sources (the run's known GMs and real) and the open-set score of config.eval.open_set_score;
an image scoring below the threshold chosen on validation images (accepting 95 % of the known
classes' validation images) is called "unknown": made by none of the known sources. The
thresholds belong to the evaluated checkpoint step (WORKDIR/openset/); a step that was never
evaluated has none, and the open-set decision is then left out (null).

Folders are read one level deep; unreadable files are listed with the reason and skipped, as
in `revgm parse`. Exit status: 0 done; 1 no readable image; 2 bad flags or checkpoint,
including a checkpoint of another task (docs/tasks.md#commands).
"""

from __future__ import annotations

import json
import os
import sys
import types

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported

from absl import flags, logging  # noqa: E402
import numpy as np  # noqa: E402

from revgm_jax import inference  # noqa: E402
from revgm_jax.cli import cli_flags, parse  # noqa: E402
from revgm_jax.data import splits  # noqa: E402
from revgm_jax.evaluation import openset  # noqa: E402

DESCRIPTIONS = {"detect": "Real or generated: P(generated) of each image (a detection model).",
                "attribute": "Which known source made each image, or none of them (an "
                             "attribution model)."}
TASK_OF = {"detect": "detection", "attribute": "attribution"}
USAGE = "usage: {prog} --checkpoint PATH IMAGE_OR_FOLDER... [--json]"


def detect_results(prob: np.ndarray, paths: list[str]) -> tuple[list[dict], dict]:
  """Per-image P(generated) with the decision at 0.5, and the summary."""
  p = prob[:, 1]
  per = [{"path": path, "p_generated": float(q), "prediction": "generated" if q >= 0.5 else "real"}
         for path, q in zip(paths, p)]
  summary = {"num_generated": int(np.sum(p >= 0.5)), "num_real": int(np.sum(p < 0.5)),
             "mean_p_generated": float(p.mean())}
  return per, summary


def attribute_results(pred: dict, paths: list[str], names: list[str], top: int,
                      kind: str, saved) -> tuple[list[dict], dict]:
  """Per-image top sources and open-set decision (None without saved thresholds), summary."""
  prob = pred["prob"]
  score = threshold = None
  if saved is not None:
    stats, thresholds = saved
    score, threshold = openset.score(kind, prob, pred["embedding"], stats), thresholds[kind]
  per = []
  for i, path in enumerate(paths):
    order = np.argsort(-prob[i])[:top]
    entry = {"path": path, "top": [{"source": names[k], "probability": float(prob[i, k])}
                                   for k in order], "open_set": None,
             "prediction": names[order[0]]}
    if score is not None:
      unknown = bool(score[i] < threshold)
      entry["open_set"] = {"score": kind, "value": float(score[i]), "threshold": threshold,
                           "unknown": unknown}
      entry["prediction"] = "unknown" if unknown else entry["prediction"]
    per.append(entry)
  counts = {}
  for e in per:
    counts[e["prediction"]] = counts.get(e["prediction"], 0) + 1
  return per, {"predictions": dict(sorted(counts.items(), key=lambda kv: -kv[1]))}


def format_text(result: dict) -> str:
  ck = result["checkpoint"]
  lines = [f"{result['task'].capitalize()} of {result['num_images']} image(s), checkpoint "
           f"{ck['workdir']} ({ck['which']}, step {ck['step']}).", ""]
  for e in result["images"]:
    if result["task"] == "detection":
      lines.append(f"  {e['prediction']:10s} P(generated) {e['p_generated']:.3f}  {e['path']}")
    else:
      tops = ", ".join(f"{t['source']} {t['probability']:.2f}" for t in e["top"])
      o = e["open_set"]
      extra = "" if o is None else f"  [{o['score']} {o['value']:.3g} vs {o['threshold']:.3g}]"
      lines.append(f"  {e['prediction']:12s} {tops}{extra}  {e['path']}")
  s = result["summary"]
  if result["task"] == "detection":
    lines += ["", f"Summary: {s['num_generated']} generated, {s['num_real']} real "
              f"(mean P(generated) {s['mean_p_generated']:.3f}; decision at 0.5)."]
  else:
    lines += ["", "Summary: " + ", ".join(f"{k} {v}" for k, v in s["predictions"].items())]
    if result["open_set_note"]:
      lines.append(result["open_set_note"])
  return "\n".join(lines)


def run(command: str, args: types.SimpleNamespace) -> int:
  logging.set_verbosity(logging.ERROR)
  task = TASK_OF[command]
  try:
    loaded = inference.load(args.checkpoint, task=task)
  except inference.WrongTaskError as e:
    print(f"revgm {command}: {e}; use `revgm {_command_for(e.task)}` on it", file=sys.stderr)
    return 2
  except (FileNotFoundError, ValueError) as e:
    print(f"revgm {command}: cannot load checkpoint: {e}", file=sys.stderr)
    return 2
  files, skipped = parse.collect_files(args.images)
  images, used, unreadable = inference.load_images(files, loaded.config)
  skipped += unreadable
  for path, reason in skipped:
    print(f"skipped {path}: {reason}", file=sys.stderr)
  if not used:
    print(f"revgm {command}: no readable image among {len(files)} file(s) "
          f"({len(skipped)} skipped)", file=sys.stderr)
    return 1
  predict_fn = inference.make_predict_fn(loaded, fingerprints=False)
  pred = inference.predict(loaded, images, args.batch_size, predict_fn)["pred"]
  result = {"task": task, "checkpoint": {"workdir": loaded.workdir, "which": loaded.which,
                                         "step": loaded.step},
            "num_images": len(used), "skipped": [{"path": p, "reason": r} for p, r in skipped]}
  if task == "detection":
    result["images"], result["summary"] = detect_results(pred["prob"], used)
  else:
    saved = openset.load(loaded.workdir, loaded.which, loaded.step)
    kind = loaded.config.eval.open_set_score
    result["images"], result["summary"] = attribute_results(
        pred, used, splits.class_names(task, loaded.split), args.top, kind, saved)
    result["classes"] = splits.class_names(task, loaded.split)
    result["open_set_note"] = None if saved is not None else (
        f"no open-set thresholds for {loaded.which} step {loaded.step} (never evaluated); "
        f"run `python eval.py --workdir {loaded.workdir}` to add them")
  print(json.dumps(result, indent=1) if args.json else format_text(result))
  return 0


def _command_for(task: str) -> str:
  return {v: k for k, v in TASK_OF.items()}.get(task, "parse")


def main(command: str, argv: list[str] | None = None, prog: str | None = None) -> int:
  """`revgm detect ARGS` / `revgm attribute ARGS` (argv: ARGS); flags and paths in any order."""
  prog = prog or f"revgm {command}"
  fv = flags.FlagValues()
  cli_flags.define_checkpoint_flags(
      fv, "Training workdir of the task, WORKDIR/best or WORKDIR/latest[/STEP].")
  if command == "attribute":
    flags.DEFINE_integer("top", 3, "Known sources listed per image.", lower_bound=1,
                         flag_values=fv)
  usage = USAGE.format(prog=prog)
  images = cli_flags.parse_command(fv, [prog, *(sys.argv[1:] if argv is None else argv)],
                                   f"{usage}\n\n{DESCRIPTIONS[command]}\n\n{__doc__}", status=2)
  if not images:
    cli_flags.fail(f"no image file or folder given; {usage}", status=2)
  values = fv.flag_values_dict()
  values.setdefault("top", 1)
  return run(command, types.SimpleNamespace(images=images, **values))


def detect_main(argv: list[str] | None = None, prog: str = "revgm detect") -> int:
  return main("detect", argv, prog)


def attribute_main(argv: list[str] | None = None, prog: str = "revgm attribute") -> int:
  return main("attribute", argv, prog)
