r"""Evaluates trained workdirs and writes their reports (the work is in
revgm_jax/evaluation/run.py, dispatched on config.task: parsing.py, and classification.py for
detection and attribution, docs/tasks.md#metrics).

  python eval.py --workdir ./workdir                  # -> ./workdir/report/
  python eval.py --workdir W --checkpoint W/latest/1500 --split val --out_dir /tmp/r
  python eval.py --workdir W --random_gt_workdir W_rgt   # adds the random-ground-truth row
  python eval.py --workdir set1 --workdir set2 --workdir set3 --workdir set4 \
      --summary_dir ./summary                          # + mean ± std over the leave-out sets

Each workdir is evaluated with the config it was trained with (its config.json) unless
--config is given (then it must describe the same model and data); --config.<field>=<value>
overrides fields of that file as in train.py. The report (metrics.json, report.md, figures)
goes to WORKDIR/report unless --out_dir is given (one workdir only). The console shows each
report's table; log lines go to WORKDIR/eval.INFO of the first workdir (warnings also to
stderr; --alsologtostderr brings everything back to the terminal).

Exit status: 0 done; 1 bad flags or a config value that cannot work (one line); 2 a checkpoint
that does not restore (each failed step named; the newest intact step of the manager is used when
there is one) or a --config of another run.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up lines

from absl import app, flags, logging  # noqa: E402

from revgm_jax import config_utils  # noqa: E402
from revgm_jax.cli import cli_flags  # noqa: E402

_CONFIG = cli_flags.define_config_file(
    "config", None, "Config file (default: each workdir's config.json).", lock_config=True)
_WORKDIR = flags.DEFINE_multi_string("workdir", None, "Training workdir(s) to evaluate.",
                                     required=True)
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "", "WORKDIR/best[/STEP] or WORKDIR/latest[/STEP] (default: the workdir's "
    "config.eval.which manager).")
_SPLIT = flags.DEFINE_enum("split", "test", ["test", "val"], "GM split to evaluate.")
_RANDOM_GT = flags.DEFINE_string(
    "random_gt_workdir", None, "Workdir of the same run trained with "
    "config.data.shuffle_labels=True (overrides config.eval.random_gt_workdir).")
_OUT_DIR = flags.DEFINE_string("out_dir", "", "Report directory (default WORKDIR/report).")
_SUMMARY_DIR = flags.DEFINE_string(
    "summary_dir", "", "With several workdirs: where summary.md / summary.json go.")
_SUMMARY_ONLY = flags.DEFINE_bool(
    "summary_only", False, "Combine the workdirs' existing report/metrics.json, evaluate nothing.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
  workdirs = [os.path.abspath(w) for w in _WORKDIR.value]
  if len(workdirs) > 1 and not _SUMMARY_DIR.value:
    raise app.UsageError("several --workdir need --summary_dir for the combined table")
  if len(workdirs) > 1 and (_OUT_DIR.value or _CHECKPOINT.value):
    raise app.UsageError("--out_dir and --checkpoint apply to a single --workdir")
  # Imported after the flags are checked: a bad flag answers at once (start-up time).
  from revgm_jax.data import prepare  # pylint: disable=g-import-not-at-top
  prepare.keep_tf_off_accelerators()
  from revgm_jax import checkpointing, tasks  # pylint: disable=g-import-not-at-top
  from revgm_jax.runtime import distributed  # pylint: disable=g-import-not-at-top
  from revgm_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from revgm_jax.evaluation import parsing, run  # pylint: disable=g-import-not-at-top

  # A multi-process evaluation joins its job from --config's distributed fields or from the
  # environment launch_local sets (not from a workdir's config: its job has ended).
  distributed.initialize(_CONFIG.value.distributed if _CONFIG.value else None)

  for workdir in workdirs:
    if not workdir_lib.is_workdir(workdir):
      raise app.UsageError(f"--workdir {workdir} is not a training workdir (no "
                           f"{workdir_lib.CONFIG_FILE})")
  logging.get_absl_handler().use_absl_log_file("eval", workdirs[0])
  print(f"log: {os.path.join(workdirs[0], 'eval.INFO')}", flush=True)
  per_set = {}
  for workdir in workdirs:
    if _SUMMARY_ONLY.value:
      path = workdir_lib.metrics_path(workdir)
      if not os.path.exists(path):
        raise app.UsageError(f"--summary_only: {path} does not exist; evaluate {workdir} first")
      with open(path) as f:
        results = json.load(f)
    else:
      config = _CONFIG.value or workdir_lib.load_config(workdir)
      if _RANDOM_GT.value is not None:
        config.eval.random_gt_workdir = _RANDOM_GT.value
      try:
        results = run.evaluate_checkpoint(config, _CHECKPOINT.value or workdir,
                                          split=_SPLIT.value, out_dir=_OUT_DIR.value)
      except config_utils.ConfigError as e:
        sys.stderr.write(f"eval.py: {e}\n")
        sys.exit(1)
      except (FileNotFoundError, workdir_lib.WorkdirError, checkpointing.CheckpointError) as e:
        sys.stderr.write(f"eval.py: {e}\n")
        sys.exit(2)
      out = _OUT_DIR.value or workdir_lib.report_dir(workdir)
      print(f"{workdir}: {results['name']}, report in {out}\n\n"
            f"{run.report_table(tasks.name(config), results)}\n", flush=True)
    name = results["name"]
    per_set[name if name not in per_set else f"{name} ({os.path.basename(workdir)})"] = results
  if len(workdirs) > 1:
    parsing.write_summary(_SUMMARY_DIR.value, per_set)
    print(f"summary of {len(per_set)} sets in {_SUMMARY_DIR.value}", flush=True)
  logging.info("done")


if __name__ == "__main__":
  flags.FLAGS.set_default("stderrthreshold", "warning")
  app.run(main, flags_parser=cli_flags.parse_flags)
