r"""The paper's protocol as one command: one model per leave-out test set, then mean ± std.

  python experiments/leave_out.py --out_dir ./leave_out                 # embedded default zoo
  python experiments/leave_out.py --random_gt --out_dir ./leave_out     # + random-GT per set
  python experiments/leave_out.py --random_gt_sets 1 --out_dir ./leave_out  # ... of set 1 only
  python experiments/leave_out.py --config configs/red116.py --config.data.image_dir=/data/RED116 \
      --config.data.labels_dir=/data/red116_labels --out_dir /ckpt/red116_protocol

For each set s of --sets, trains the config with config.data.test_set=s into OUT_DIR/set<s>
(and, with --random_gt or for the sets of --random_gt_sets, the same with shuffled training
labels into OUT_DIR/set<s>_random_gt first, whose predictions become the report's
random-ground-truth row), evaluates it on its held-out GMs, and writes OUT_DIR/summary.md, summary.json and summary_k_images.png: the
paper's table per set beside random GT, mean/majority and nearest training GM, mean ± std over
the sets, and the k-image curve (docs/protocol.md#gm-splits). Resumable: start the same
command again and finished sets are reused, an interrupted one resumes from its checkpoint.
"""

import os
import sys

from absl import app, flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:  # `python experiments/leave_out.py` puts only experiments/ there
  sys.path.insert(0, _REPO)

from experiments import runs  # noqa: E402
from revgm_jax import config_utils  # noqa: E402
from revgm_jax.cli import cli_flags  # noqa: E402

_CONFIG = runs.define_config_flag("Config of every set's run.")
_OUT_DIR = flags.DEFINE_string("out_dir", "./leave_out", "One workdir per set here.")
_SETS = flags.DEFINE_list("sets", ["1", "2", "3", "4"], "Leave-out test sets to run.")
_RANDOM_GT = flags.DEFINE_bool("random_gt", False, "Also train the random-ground-truth model "
                               "of each set (twice the training time).")
_RANDOM_GT_SETS = flags.DEFINE_list("random_gt_sets", [], "Train the random-ground-truth model "
                                    "of these sets only (without --random_gt).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
  try:
    sets = [int(s) for s in _SETS.value]
  except ValueError:
    raise app.UsageError(f"--sets={','.join(_SETS.value)}: expected set numbers such as 1,2,3,4")
  if not sets or any(s < 1 for s in sets):
    raise app.UsageError(f"--sets={','.join(_SETS.value)}: expected set numbers >= 1")
  bad_rgt = app.UsageError(f"--random_gt_sets={','.join(_RANDOM_GT_SETS.value)}: expected "
                           "set numbers among --sets")
  try:
    rgt_sets = set(sets) if _RANDOM_GT.value else {int(s) for s in _RANDOM_GT_SETS.value}
  except ValueError:
    raise bad_rgt from None
  if not rgt_sets <= set(sets):
    raise bad_rgt
  from revgm_jax.data import prepare  # pylint: disable=g-import-not-at-top (after the flags)
  prepare.keep_tf_off_accelerators()
  from revgm_jax.evaluation import parsing  # pylint: disable=g-import-not-at-top

  out_dir = os.path.abspath(_OUT_DIR.value)
  per_set = {}
  try:
    for s in sets:
      config = config_utils.with_overrides(_CONFIG.value, {"data.test_set": s})
      if s in rgt_sets:
        rgt = os.path.join(out_dir, f"set{s}_random_gt")
        runs.train_or_reuse(config_utils.with_overrides(config, {"data.shuffle_labels": True}),
                            rgt, f"test set {s}, random ground truth")
        config = config_utils.with_overrides(config, {"eval.random_gt_workdir": rgt})
      results = runs.train_or_reuse(config, os.path.join(out_dir, f"set{s}"), f"test set {s}")
      per_set[f"test set {s}"] = results["report"]
  except runs.ConfigChanged as e:
    raise app.UsageError(str(e)) from None
  parsing.write_summary(out_dir, per_set)
  with open(os.path.join(out_dir, "summary.md")) as f:
    print(f.read(), flush=True)
  print(f"summary of {len(per_set)} sets in {out_dir} (summary.md, summary.json, "
        "summary_k_images.png)", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli_flags.parse_flags)
