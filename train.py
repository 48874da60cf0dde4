r"""Trains and evaluates model parsing (thin entry point; the work is in revgm_jax/train_lib.py).

  python train.py                                   # embedded default zoo, workdir ./workdir
  python train.py --config configs/default.py:tiny --workdir /tmp/revgm_tiny
  python train.py --config configs/red116.py --config.data.image_dir=/data/RED116 \
      --config.data.labels_dir=/data/red116_labels --workdir /ckpt/red116_set1

Any config field can be overridden with `--config.<field>=<value>`; an unknown field or a
value of the wrong type is an error. Rerunning with the same workdir resumes from its latest
checkpoint; a workdir that holds a run of another data, label or model config is refused
(--overwrite deletes that run first). SIGTERM or Ctrl-C saves the current step and stops.

Exit status: 0 done; 1 a bad flag or config value (one line) or an unexpected error; 2 the
workdir refuses (another config, another run holds it, no checkpoint restores), one line;
3 stopped by SIGTERM, SIGINT or a preemption notice, the step saved (rerun the same command to
continue).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up lines

from absl import app, flags, logging  # noqa: E402

from revgm_jax import cli_flags  # noqa: E402

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "default.py")

_CONFIG = cli_flags.define_config_file(
    "config", _DEFAULT_CONFIG, "Config file, optionally with `:arg` (e.g. configs/default.py:tiny).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "./workdir", "Checkpoints, logs and reports go here.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Delete the run the workdir holds (config, "
                               "checkpoints, results, report) and train afresh.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
  # TensorFlow (the input pipeline) must not take accelerator memory from JAX
  # (docs/jax_notes.md#tensorflow-off-the-gpu).
  import tensorflow as tf
  tf.config.set_visible_devices([], "GPU")
  import jax
  from revgm_jax import checkpointing, stop_signal, tasks, train_lib, workdir as workdir_lib

  workdir = os.path.abspath(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  # A quiet console: log lines go to WORKDIR/train.INFO (warnings also to stderr; --logtostderr
  # or --alsologtostderr bring everything back to the terminal).
  logging.get_absl_handler().use_absl_log_file("train", workdir)
  logging.info("workdir: %s", workdir)
  print(f"workdir: {workdir} (log: {os.path.join(workdir, 'train.INFO')})", flush=True)
  try:
    results = train_lib.train_and_evaluate(_CONFIG.value, workdir, overwrite=_OVERWRITE.value)
  except (workdir_lib.WorkdirError, checkpointing.CheckpointError) as e:
    sys.stderr.write(f"train.py: {e}\n")
    sys.exit(2)
  if "preempted_at" in results:
    if jax.process_index() == 0:
      print(f"stopped by {results['signal']}: saved step {results['preempted_at']} in "
            f"{workdir}; rerun the same command to continue", flush=True)
    sys.exit(stop_signal.EXIT_STOPPED)
  if jax.process_index() != 0:  # one console per job
    return
  print(tasks.get(_CONFIG.value, None).results_table(results), flush=True)
  print(f"\nworkdir: {workdir} (results.json, report/, latest/, best/, TensorBoard events)",
        flush=True)


if __name__ == "__main__":
  flags.FLAGS.set_default("stderrthreshold", "warning")
  app.run(main, flags_parser=cli_flags.parse_flags)
