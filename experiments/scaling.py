r"""How parsing grows with the number of training GMs: one model per N, same test GMs.

  python experiments/scaling.py --config configs/default.py:large --out_dir ./scaling  # study
  python experiments/scaling.py --num_gms=25,50,all --steps=3000 --out_dir ./scaling

For each N of --num_gms ("all" = every training GM), trains the config with
config.data.max_train_gms=N (nested subsets: N GMs are a prefix of one fixed order of the
training GMs, docs/protocol.md#gm-count-scaling) and the same --steps, seed, validation and test
GMs, into OUT_DIR/n<N>; then writes OUT_DIR/scaling.md, scaling.json and scaling.png: each head
family's test score against N, the model beside mean/majority and the nearest training GM (which
also depend on the training GMs). Resumable like experiments/leave_out.py.
"""

import json
import os
import sys

from absl import app, flags

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:  # `python experiments/scaling.py` puts only experiments/ there
  sys.path.insert(0, _REPO)

from experiments import runs  # noqa: E402
from revgm_jax import config_utils  # noqa: E402
from revgm_jax.cli import cli_flags  # noqa: E402

_CONFIG = runs.define_config_flag("Config of every run (its zoo, test set and model).")
_OUT_DIR = flags.DEFINE_string("out_dir", "./scaling", "One workdir per N here.")
_NUM_GMS = flags.DEFINE_list("num_gms", ["25", "50", "100", "200", "all"],
                             "Training-GM counts N (integers or 'all').")
_STEPS = flags.DEFINE_integer("steps", 3000, "Training steps of every run (the same for "
                              "every N, so that N is the only difference).", lower_bound=1)

# (metrics key, column title) of the table.
PANELS = (("cont_l1", "L1 cont. ↓"), ("net_f1", "F1 net ↑"), ("loss_f1", "F1 loss ↑"),
          ("loss_auc", "AUC loss ↑"))


def parse_counts(values: list[str]) -> list[int]:
  """--num_gms values as counts, 'all' as 0 (config.data.max_train_gms's 'every GM')."""
  try:
    counts = [0 if v == "all" else int(v) for v in values]
  except ValueError:
    raise app.UsageError(f"--num_gms={','.join(values)}: expected integers or 'all'") from None
  if not counts or any(c < 0 for c in counts) or 0 in counts[:-1]:
    raise app.UsageError(f"--num_gms={','.join(values)}: expected positive counts, 'all' last")
  return counts


def table(rows: dict[int, dict]) -> str:
  """Markdown: one row per N and method, the panels' metrics."""
  from revgm_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  lines = ["| training GMs | method | " + " | ".join(t for _, t in PANELS) + " |",
           "|---|---|" + "---|" * len(PANELS)]
  for n, row in rows.items():
    for method, m in row["methods"].items():
      cells = ["N/A" if m.get(k) is None else f"{m[k]:.3f}" for k, _ in PANELS]
      name = report.METHOD_NAMES.get(method, method)
      lines.append(f"| {n} | {name} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def figure(rows: dict[int, dict], path: str):
  from revgm_jax.evaluation import report  # pylint: disable=g-import-not-at-top
  methods = rows[next(iter(rows))]["methods"]
  report.curves_figure({m: {n: row["methods"][m] for n, row in rows.items()} for m in methods},
                       path, "training GMs", solid=("model",))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected positional arguments: {argv[1:]}")
  counts = parse_counts(_NUM_GMS.value)
  from revgm_jax.data import prepare  # pylint: disable=g-import-not-at-top (after the flags)
  prepare.keep_tf_off_accelerators()

  out_dir = os.path.abspath(_OUT_DIR.value)
  rows = {}
  try:
    for count in counts:
      config = config_utils.with_overrides(
          _CONFIG.value, {"data.max_train_gms": count, "num_train_steps": _STEPS.value})
      name = f"n{count}" if count else "n_all"
      results = runs.train_or_reuse(config, os.path.join(out_dir, name),
                                    f"{count or 'all'} training GMs")
      with open(os.path.join(out_dir, name, "labels.json")) as f:
        n = len(json.load(f)["split"]["train"])
      rows[n] = {"workdir": results["workdir"], "methods": results["report"]["methods"]}
  except (runs.ConfigChanged, ValueError) as e:
    raise app.UsageError(str(e)) from None
  with open(os.path.join(out_dir, "scaling.json"), "w") as f:
    json.dump({str(n): r for n, r in rows.items()}, f, indent=1)
  with open(os.path.join(out_dir, "scaling.md"), "w") as f:
    f.write(table(rows))
  figure(rows, os.path.join(out_dir, "scaling.png"))
  print(table(rows), flush=True)
  print(f"scaling study of {len(rows)} runs in {out_dir} (scaling.md, scaling.json, "
        "scaling.png)", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli_flags.parse_flags)
