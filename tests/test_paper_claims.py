"""experiments/claims.py: the rows of experiments/paper_claims.py and their table."""

import json

from support import tiny_run
from experiments import claims
from revgm_jax import config_utils
from test_evaluation import _results


def test_paper_claims_rows_and_table(red116_dir):
  base = config_utils.load_config(tiny_run.TINY)
  rows = claims.row_overrides(base)
  assert list(rows)[:3] == ["random_gt", "default", "plain_ce"]  # random GT trains first
  assert rows["no_spec"] == {"loss.fen_terms": "mag,rep,sym"}
  assert rows["no_constraints"] == {"loss.fen_terms": ""}
  config = claims.make_config(base, rows["random_gt"], seed=7)
  assert config.data.shuffle_labels and config.seed == 7 and not base.data.shuffle_labels
  assert claims.make_config(base, rows["no_constraints"], seed=1).loss.fen_terms == ""
  res = _results(red116_dir)
  worse = json.loads(json.dumps(res))  # a "plain CE" run that predicts like the majority
  worse["methods"]["model"] = res["methods"]["majority"]
  collected = claims.collect({"default": [res, res], "plain_ce": [worse]}, rows, [1, 2])
  assert collected["rows"]["default"]["stats"]["cont_l1"] == {"mean": 0.0, "std": 0.0, "n": 2}
  assert list(collected["baselines"]) == ["majority"]  # the only baseline _results has
  md = claims.markdown(collected)
  maj = res["methods"]["majority"]
  assert (f"| weighted CE beats plain CE | default vs plain_ce | {maj['cont_l1']:+.3f} | "
          f"{1 - maj['net_acc']:+.3f} | {1 - maj['net_f1']:+.3f} |") in md
  assert "| parser beats mean / majority | default vs majority |" in md
  assert "| 2 | 0.000 ± 0.000 | 1.000 ± 0.000 |" in md  # the k-image curve over 2 seeds
