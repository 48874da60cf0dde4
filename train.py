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
3 stopped by SIGTERM or SIGINT, the step saved (rerun the same command to continue); 4 a file
of the workdir cannot be written (disk full, read-only), one line naming it (the traceback goes
to WORKDIR/train.INFO when that can be written).
"""

import logging as py_logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up lines

from absl import app, flags, logging  # noqa: E402

from revgm_jax.cli import cli_flags  # noqa: E402

_DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", "default.py")

_CONFIG = cli_flags.define_config_file(
    "config", _DEFAULT_CONFIG, "Config file, optionally with `:arg` (e.g. configs/default.py:tiny).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "./workdir", "Checkpoints, logs and reports go here.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Delete the run the workdir holds (config, "
                               "checkpoints, results, report) and train afresh.")


EXIT_WRITE = 4  # a file of the workdir cannot be written


def _fail(status: int, error: Exception, alone: bool = False):
  """One line and the exit status. `alone`: only this process may have failed; in a
  multi-process job it exits at once instead of waiting for the others in JAX's shutdown
  barrier (revgm_jax/runtime/distributed.py)."""
  sys.stderr.write(f"train.py: {error}\n")
  if alone:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # pylint: disable=protected-access
  sys.exit(status)


def _tracebacks_to_the_log_file_only(handler: py_logging.StreamHandler) -> None:
  """Records logged with a traceback (orbax logs its failed background save with three) reach
  the console as their one line; WORKDIR/train.INFO keeps the traceback."""
  file_format = handler.format

  def format_(record):
    if handler.stream is sys.stderr and (record.exc_info or record.stack_info):
      record = py_logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None,
                                         "stack_info": None})
    return file_format(record)

  handler.format = format_


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
  from revgm_jax import workdir as workdir_lib
  workdir = os.path.abspath(_WORKDIR.value)
  # A quiet console: log lines go to WORKDIR/train.INFO (warnings also to stderr; --logtostderr
  # or --alsologtostderr bring everything back to the terminal). A log line that cannot be
  # written (a full disk) is dropped: the error that stops the run is the one on the console.
  try:
    workdir_lib.make(workdir)
    with workdir_lib.writing(workdir):
      logging.get_absl_handler().use_absl_log_file("train", workdir)
  except workdir_lib.WriteError as e:
    _fail(EXIT_WRITE, e)
  py_logging.raiseExceptions = False
  _tracebacks_to_the_log_file_only(logging.get_absl_handler().python_handler)
  logging.info("workdir: %s", workdir)
  print(f"workdir: {workdir} (log: {os.path.join(workdir, 'train.INFO')})", flush=True)
  from revgm_jax.data import prepare
  prepare.keep_tf_off_accelerators()
  import jax
  from revgm_jax import checkpointing, config_utils, tasks, train_lib
  from revgm_jax.runtime import stop_signal
  from revgm_jax.evaluation import run as evaluation

  try:
    results = train_lib.train_and_evaluate(_CONFIG.value, workdir, overwrite=_OVERWRITE.value)
  except config_utils.ConfigError as e:
    _fail(1, e)
  except (workdir_lib.WorkdirError, checkpointing.CheckpointError) as e:
    _fail(2, e)
  except workdir_lib.WriteError as e:
    logging.info("write error", exc_info=True)  # the traceback, in WORKDIR/train.INFO only
    logging.flush()
    _fail(EXIT_WRITE, e, alone=jax.process_count() > 1)
  if results["preempted_at"] is not None:
    if jax.process_index() == 0:
      print(f"stopped by {results['signal']}: saved step {results['preempted_at']} in "
            f"{workdir}; rerun the same command to continue", flush=True)
    sys.exit(stop_signal.EXIT_STOPPED)
  if jax.process_index() != 0:  # one console per job
    return
  print(evaluation.results_table(tasks.name(_CONFIG.value), results), flush=True)
  print(f"\nworkdir: {workdir} (results.json, report/, latest/, best/, TensorBoard events)",
        flush=True)


if __name__ == "__main__":
  flags.FLAGS.set_default("stderrthreshold", "warning")
  app.run(main, flags_parser=cli_flags.parse_flags)
