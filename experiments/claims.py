"""The paper's qualitative claims as measured rows (docs/protocol.md#paper-claims): row configs
and the table.

`experiments/paper_claims.py` trains one run per row and seed; this module says what each row
changes and turns the runs' evaluation reports into claims.json / claims.md. Every comparison
is a signed difference (+ = the first-named setting is better), never a verdict.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import ml_collections

from revgm_jax import config_utils
from revgm_jax.evaluation import metrics
from revgm_jax.losses import constraints

KEYS = (("L1 cont. ↓", "cont_l1"), ("acc net ↑", "net_acc"), ("F1 net ↑", "net_f1"),
        ("acc loss ↑", "loss_acc"), ("F1 loss ↑", "loss_f1"), ("AUC loss ↑", "loss_auc"))
# (claim, first setting, second setting) compared when both were measured.
COMPARISONS = (("parser beats random ground truth", "default", "random_gt"),
               ("parser beats mean / majority", "default", "majority"),
               ("parser beats nearest training GM", "default", "retrieval"),
               ("weighted CE beats plain CE", "default", "plain_ce"))


def row_overrides(base: ml_collections.ConfigDict) -> dict[str, dict]:
  """{row: {dotted config field: value}}, random_gt first (the default row's report uses it);
  each no_<term> row removes one term from the base config's constraint losses."""
  terms = constraints.active_terms(base.loss.fen_terms)
  rows = {"random_gt": {"data.shuffle_labels": True}, "default": {},
          "plain_ce": {"loss.weighted_ce": False}}
  for t in terms:
    rows[f"no_{t}"] = {"loss.fen_terms": ",".join(x for x in terms if x != t)}
  rows["no_constraints"] = {"loss.fen_terms": ""}
  return rows


def make_config(base: ml_collections.ConfigDict, overrides: Mapping,
                seed: int) -> ml_collections.ConfigDict:
  """A copy of `base` with `overrides` ({"loss.weighted_ce": False, ...}) and `seed`."""
  return config_utils.with_overrides(base, {**overrides, "seed": seed}, source="--config")


def stat(values: Sequence[Mapping]) -> dict:
  """Mean / std / n over seeds of metrics dicts, key by key."""
  return metrics.combine({str(i): v for i, v in enumerate(values)})


def collect(reports: Mapping[str, Sequence[Mapping]], overrides: Mapping[str, Mapping],
            seeds: Sequence[int]) -> dict:
  """{row: [evaluation report per seed]} -> rows, baselines and the default's k-image curve."""
  out = {"rows": {}, "baselines": {}, "k_images": {}}
  for name, reps in reports.items():
    change = ", ".join(f"{k}={v!r}" for k, v in overrides[name].items()) or "none"
    out["rows"][name] = {"change": change, "stats": stat([r["methods"]["model"] for r in reps])}
  if "default" in reports:
    default = reports["default"]
    for m in (m for m in ("majority", "retrieval") if m in default[0]["methods"]):
      out["baselines"][m] = {"change": "baseline of the default row",
                             "stats": stat([r["methods"][m] for r in default])}
    out["k_images"] = {int(k): stat([r["k_images"]["model"][k] for r in default])
                       for k in default[0]["k_images"]["model"]}
  first = next(iter(reports.values()))[0]
  out["info"] = {"name": first["name"], "gms": first["gms"],
                 "num_images": first["num_images"], "seeds": list(seeds)}
  return out


def _cell(stats: Mapping, key: str) -> str:
  s = stats[key]
  if s["mean"] is None:
    return "N/A"
  return f"{s['mean']:.3f}" + (f" ± {s['std']:.3f}" if s["n"] > 1 else "")


def _delta(a: Mapping, b: Mapping, key: str) -> str:
  """Difference of the means, signed so that + means `a` is better (lower L1, higher rest)."""
  if a[key]["mean"] is None or b[key]["mean"] is None:
    return "N/A"
  d = a[key]["mean"] - b[key]["mean"]
  d = round(-d if key == "cont_l1" else d, 3) or 0.0  # no "-0.000"
  return f"{d:+.3f}"


def markdown(collected: Mapping) -> str:
  """The measured rows, the claim comparisons and the default row's k-image curve."""
  info, every = collected["info"], {**collected["rows"], **collected["baselines"]}
  header = " | ".join(c for c, _ in KEYS)
  lines = [f"# Paper claims, measured on {info['name']} ({len(info['gms'])} test GMs, "
           f"{info['num_images']} images; seeds {info['seeds']})", "",
           f"| row | change | {header} |", "|---" * (len(KEYS) + 2) + "|"]
  lines += [f"| {name} | {r['change']} | " + " | ".join(_cell(r["stats"], k) for _, k in KEYS)
            + " |" for name, r in every.items()]
  pairs = [c for c in COMPARISONS if c[1] in every and c[2] in every]
  pairs += [("the constraint losses help" if n == "no_constraints" else
             f"constraint loss {n[3:]} helps", "default", n)
            for n in collected["rows"] if n.startswith("no_") and "default" in every]
  if pairs:
    lines += ["", "Differences of the means, + = the first setting is better:", "",
              "| claim | comparison | " + " | ".join(f"Δ {c[:-2]}" for c, _ in KEYS) + " |",
              "|---" * (len(KEYS) + 2) + "|"]
    lines += [f"| {claim} | {a} vs {b} | "
              + " | ".join(_delta(every[a]["stats"], every[b]["stats"], k) for _, k in KEYS)
              + " |" for claim, a, b in pairs]
  if collected["k_images"]:
    lines += ["", "Multi-image parsing, default row (mean of the outputs of k images of a GM):",
              "", f"| k | {header} |", "|---" * (len(KEYS) + 1) + "|"]
    lines += [f"| {k} | " + " | ".join(_cell(s, key) for _, key in KEYS) + " |"
              for k, s in sorted(collected["k_images"].items())]
  return "\n".join(lines) + "\n"
