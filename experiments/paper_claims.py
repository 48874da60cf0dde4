r"""The paper's qualitative claims as measured rows: one training run per row.

  python experiments/paper_claims.py --out_dir ./paper_claims            # embedded default
  python experiments/paper_claims.py --config configs/default.py:tiny --out_dir /tmp/claims
  python experiments/paper_claims.py --rows default,random_gt,plain_ce --seeds 1,2,3 \
      --config.num_train_steps=2000

Rows (every other setting, the seed and the GM split are the same in all of them):
  default          the config as given (weighted cross-entropy, every constraint loss);
  plain_ce         config.loss.weighted_ce=False: is weighted CE better on imbalanced heads?
  no_<term>        one constraint loss left out of config.loss.fen_terms: does it help?
  no_constraints   none of them (the FEN learns from the parsing losses alone);
  random_gt        config.data.shuffle_labels=True: training GMs get each other's labels, so
                   the parser can only learn label statistics (the paper's baseline).
Each row trains with `train_lib.train_and_evaluate` into OUT_DIR/<row>/seed<seed> (a finished
run of the same config — its results.json exists — is reused; one of another config is an
error) and is evaluated on the test GMs; the default row's
report also gets the random-GT row, the majority and retrieval baselines and the k-image curve.
The collected table goes to OUT_DIR/claims.md and OUT_DIR/claims.json.
"""

import json
import os
import sys

from absl import app, flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:  # `python experiments/paper_claims.py` puts only experiments/ there
  sys.path.insert(0, _REPO)

from experiments import claims, runs  # noqa: E402
from revgm_jax.cli import cli_flags  # noqa: E402

_CONFIG = runs.define_config_flag("Base config of every row.")
_OUT_DIR = flags.DEFINE_string("out_dir", "./paper_claims", "One workdir per row and seed here.")
_ROWS = flags.DEFINE_list("rows", [], "Rows to run (default: all).")
_SEEDS = flags.DEFINE_list("seeds", [], "Seeds (default: the config's); every row uses each.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
  from revgm_jax.data import prepare  # pylint: disable=g-import-not-at-top (after the flags)
  prepare.keep_tf_off_accelerators()

  base = _CONFIG.value
  overrides = claims.row_overrides(base)
  unknown = [r for r in _ROWS.value if r not in overrides]
  if unknown:
    raise app.UsageError(f"--rows: unknown row(s) {unknown}; known: {list(overrides)}")
  names = [r for r in overrides if not _ROWS.value or r in _ROWS.value]  # random_gt first
  seeds = [int(s) for s in _SEEDS.value] or [base.seed]
  out_dir = os.path.abspath(_OUT_DIR.value)
  reports = {name: [] for name in names}
  for seed in seeds:
    for name in names:
      workdir = os.path.join(out_dir, name, f"seed{seed}")
      config = claims.make_config(base, overrides[name], seed)
      if name == "default" and "random_gt" in names:
        config.eval.random_gt_workdir = os.path.join(out_dir, "random_gt", f"seed{seed}")
      try:
        results = runs.train_or_reuse(
            config, workdir, f"row {name}, seed {seed}: {overrides[name] or 'base config'}")
      except runs.ConfigChanged as e:
        raise app.UsageError(str(e)) from None
      reports[name].append(results["report"])
  collected = claims.collect(reports, overrides, seeds)
  with open(os.path.join(out_dir, "claims.json"), "w") as f:
    json.dump(collected, f, indent=1)
  md = claims.markdown(collected)
  with open(os.path.join(out_dir, "claims.md"), "w") as f:
    f.write(md)
  print(md, flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli_flags.parse_flags)
