"""The evaluation report: metrics.json, a Markdown table in the paper's layout, figures.

`results` (what `parsing.evaluate` returns and `metrics.json` holds):
  {"name": test-set label, "split": "test", "step": checkpoint step, "space": space name,
   "gms": test GM names, "num_images": int,
   "methods": {method: metrics.parsing_metrics dict}   (model, random_gt, majority, retrieval),
   "k_images": {method: {k: metrics dict}},            (docs/protocol.md#k-image-evaluation)
   "confusion": 6 x [k, k] lists (the model's discrete heads, k = 1),
   "calibration": `calibration.py`'s dict (temperatures fitted on the validation GMs, ECE
                  before/after per head family), or None without validation GMs}
Figures need arrays that do not belong in JSON; `fingerprints` maps a GM name to
{"image": [H, W, 3] in [0, 1], "fingerprint": [H, W, 3], "spectrum": [H, W] mean |FFT|}.
"""

from __future__ import annotations

import json
import os
from typing import Mapping

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from revgm_jax import workdir as workdir_lib  # noqa: E402
from revgm_jax.labels import Space  # noqa: E402

METHOD_NAMES = {"model": "deep parser (ours)",
                "model_mean_fingerprint": "deep, mean of fingerprints",
                "spectral": "spectral features + linear heads", "parser": "revgm parse answer",
                "random_gt": "random ground truth", "majority": "mean / majority",
                "retrieval": "nearest training GM (fingerprint)",
                "retrieval_features": "nearest training GM (features)"}
# (column header, metrics key) of the headline table; arrows say which direction is better.
COLUMNS = (("L1 cont. ↓", "cont_l1"), ("acc net ↑", "net_acc"), ("F1 net ↑", "net_f1"),
           ("acc loss ↑", "loss_acc"), ("F1 loss ↑", "loss_f1"), ("AUC loss ↑", "loss_auc"),
           ("F1 group ↑", "group_f1"))


def fmt(v, digits: int = 3) -> str:
  return "N/A" if v is None else f"{v:.{digits}f}"


def _row(cells) -> str:
  return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header, rows) -> list[str]:
  return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def headline_table(methods: Mapping[str, Mapping]) -> list[str]:
  """One row per method, the paper's columns."""
  return _table(["method", *(c for c, _ in COLUMNS)],
                [[METHOD_NAMES.get(m, m), *(fmt(r.get(key)) for _, key in COLUMNS)]
                 for m, r in methods.items()])


def per_head_tables(methods: Mapping[str, Mapping], space: Space) -> list[str]:
  names = list(methods)
  header = ["hyperparameter", *(METHOD_NAMES.get(m, m) for m in names)]
  lines = ["Continuous, L1 on normalised values (lower is better):", ""]
  lines += _table(header, [[n, *(fmt(methods[m].get(f"cont_l1/{n}")) for m in names)]
                           for n in space.continuous_names])
  lines += ["", "Discrete architecture, accuracy / macro-F1:", ""]
  lines += _table(header, [[n, *(f"{fmt(methods[m].get(f'net_acc/{n}'), 2)} / "
                                 f"{fmt(methods[m].get(f'net_f1/{n}'), 2)}" for m in names)]
                           for n in space.discrete_names])
  lines += ["", "Loss types (gated prediction), accuracy / macro-F1 / AUC:", ""]
  rows = []
  families = (("loss", "", space.loss_names), ("group", "group: ", space.group_names))
  for fam, prefix, heads in families:
    for n in heads:
      rows.append([prefix + n, *(" / ".join(fmt(methods[m].get(f"{fam}_{s}/{n}"), 2)
                                            for s in ("acc", "f1", "auc")) for m in names)])
  lines += _table(header, rows)
  return lines


def k_table(k_images: Mapping[str, Mapping]) -> list[str]:
  rows = []
  for m, curve in k_images.items():
    for k, r in sorted(curve.items(), key=lambda kv: int(kv[0])):
      rows.append([METHOD_NAMES.get(m, m), k, r["num_samples"], fmt(r["cont_l1"]),
                   fmt(r["net_f1"]), fmt(r["loss_f1"]), fmt(r["loss_auc"])])
  return _table(["method", "k images", "groups", "L1 cont. ↓", "F1 net ↑", "F1 loss ↑",
                 "AUC loss ↑"], rows)


FAMILY_NAMES = {"disc": "discrete architecture", "group": "loss groups",
                "loss": "loss types (gated)"}


def calibration_table(calib: Mapping) -> list[str]:
  """ECE per head family of the deep parser's raw output ("deep") and of the decided answer
  ("answer"), on every split measured."""
  splits = list(calib["ece"])
  names = {"before": "deep", "after": "answer"}
  header = ["head family", *(f"ECE {s} {names[w]}" for s in splits for w in ("before", "after"))]
  return _table(header, [[FAMILY_NAMES.get(fam, fam),
                          *(fmt(calib["ece"][s][w][fam]) for s in splits
                            for w in ("before", "after"))]
                         for fam in calib["ece"][splits[0]]["before"]])


def decisions_table(d: Mapping, space: Space) -> list[str]:
  """Per head: the source chosen on the validation GMs and its shrinkage or threshold."""
  src = d.get("sources") or {}
  rows = [[n, (src.get("cont") or ["deep"] * 9)[i], fmt(d["cont_alpha"][i], 1)]
          for i, n in enumerate(space.continuous_names)]
  rows += [[n, (src.get("disc") or ["deep"] * 6)[j], fmt(d["disc_alpha"][j], 1)]
           for j, n in enumerate(space.discrete_names)]
  rows += [[f"group: {n}", src.get("group", "deep"), f"t = {d['group_threshold'][g]:.2f}"]
           for g, n in enumerate(space.group_names)]
  rows += [[n, src.get("loss", "deep"), f"t = {d['loss_threshold'][i]:.2f}"]
           for i, n in enumerate(space.loss_names)]
  return _table(["head", "source", "alpha / threshold"], rows)


def markdown(results: Mapping, space: Space) -> str:
  lines = [f"# Model parsing: {results['name']}", "",
           f"Split `{results['split']}`: {len(results['gms'])} GMs never seen in training "
           f"({', '.join(results['gms'])}), {results['num_images']} images; checkpoint step "
           f"{results['step']}; space `{results['space']}`. Per single image (k = 1). F1 is "
           "macro-F1; AUC is N/A where a loss type has one class only among the test GMs, and "
           "its mean is over the defined ones.", ""]
  lines += headline_table(results["methods"])
  if results.get("calibration"):
    d = results["calibration"]
    lines += ["", "## The answer of `revgm parse`", "",
              f"Each head's source and decision were fitted on the {d['num_images']} images of "
              f"the validation GMs ({d['num_cohorts']} cohorts), never on these GMs "
              "(docs/protocol.md#the-parsers-answer): alpha shrinks the answer towards the "
              "training median / class frequencies (0 = the baseline), a threshold is the "
              "P(yes) that answers yes.", ""]
    lines += decisions_table(d, space)
    kept = [FAMILY_NAMES.get(f, f) for f, k in d.get("calibration_kept", {}).items() if k]
    lines += ["", "Temperature scaling kept where it lowered the ECE of held-out validation "
              f"cohorts: {', '.join(kept) or 'none'}. Top-label ECE, 10 bins, mean over the "
              "heads of a family:", ""]
    lines += calibration_table(d)
  lines += ["", "## Per hyperparameter", ""] + per_head_tables(results["methods"], space)
  if results.get("k_images"):
    lines += ["", "## Multi-image parsing (mean of k images of one GM, disjoint groups)", ""]
    lines += k_table(results["k_images"])
  return "\n".join(lines) + "\n"


def results_table(results: Mapping) -> str:
  """What `python train.py` prints: validation metrics of the last and the selected step, the
  evaluated test step, then the report's table of the model against the baselines."""
  cols = (("L1 cont. ↓", "cont_l1"), ("F1 net ↑", "net_f1"), ("F1 loss ↑", "loss_f1"),
          ("AUC loss ↑", "loss_auc"), ("score ↑", "score"), ("loss", "loss"))
  report = results["report"]
  rows = [("val", f"last ({results['last_step']})", results["val_last"]),
          ("val", f"selected ({results['selected_step']})", results["val_selected"]),
          ("test", f"{report['checkpoint']} ({report['step']})", report["methods"]["model"])]
  lines = _table(["GMs", "step", *(c for c, _ in cols)],
                 [[split, step, *(fmt((m or {}).get(k)) for _, k in cols)]
                  for split, step, m in rows])
  lines += ["", f"{report['name']} ({report['num_images']} images of {len(report['gms'])} GMs):",
            "", *headline_table(report["methods"])]
  return "\n".join(lines)


def _mean_std(stats: Mapping) -> str:
  return "N/A" if stats["mean"] is None else f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def summary_markdown(per_set: Mapping[str, Mapping], combined: Mapping[str, Mapping],
                     k_images: Mapping[str, Mapping] | None = None) -> str:
  """Several leave-out sets: one row per (set, method), then mean ± std over the sets, and the
  k-image curve's mean ± std."""
  header = ["test set", "method", *(c for c, _ in COLUMNS)]
  rows = [[name, METHOD_NAMES.get(m, m), *(fmt(r.get(key)) for _, key in COLUMNS)]
          for name, res in per_set.items() for m, r in res["methods"].items()]
  for m, stats in combined.items():
    rows.append([f"mean ± std ({stats['cont_l1']['n']} sets)", METHOD_NAMES.get(m, m),
                 *(_mean_std(stats[key]) for _, key in COLUMNS)])
  lines = ["# Model parsing over leave-out test sets", "", *_table(header, rows)]
  if k_images:
    keys = (("L1 cont. ↓", "cont_l1"), ("F1 net ↑", "net_f1"), ("F1 loss ↑", "loss_f1"),
            ("AUC loss ↑", "loss_auc"))
    lines += ["", "## Multi-image parsing, mean ± std over the sets", "",
              *_table(["method", "k images", *(c for c, _ in keys)],
                      [[METHOD_NAMES.get(m, m), k, *(_mean_std(s[key]) for _, key in keys)]
                       for m, curve in k_images.items() for k, s in curve.items()])]
  return "\n".join(lines) + "\n"


def _bar_figure(methods: Mapping[str, Mapping], space: Space, path: str):
  panels = (("cont_l1", space.continuous_names, "L1 (normalised) ↓"),
            ("net_f1", space.discrete_names, "macro-F1 ↑"),
            ("loss_f1", space.loss_names, "macro-F1 ↑"))
  fig, axes = plt.subplots(3, 1, figsize=(11, 10))
  width = 0.8 / max(len(methods), 1)
  for ax, (key, names, ylabel) in zip(axes, panels):
    x = np.arange(len(names))
    for i, (m, r) in enumerate(methods.items()):
      vals = [r.get(f"{key}/{n}") for n in names]
      ax.bar(x + i * width, [np.nan if v is None else v for v in vals], width,
             label=METHOD_NAMES.get(m, m))
    ax.set_xticks(x + width * (len(methods) - 1) / 2, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
  axes[0].legend(fontsize=8)
  axes[0].set_title("Per hyperparameter, model vs baselines")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def curves_figure(curves: Mapping[str, Mapping], path: str, xlabel: str,
                  solid: tuple[str, ...] = ()):
  """One panel per head family, one line per method over x (a log axis): curves is
  {method: {x: metrics dict}}; methods in `solid` are drawn solid, the others dashed (all solid
  when `solid` is empty)."""
  keys = (("cont_l1", "L1 cont. ↓"), ("net_f1", "F1 net ↑"), ("loss_f1", "F1 loss ↑"),
          ("loss_auc", "AUC loss ↑"))
  fig, axes = plt.subplots(1, 4, figsize=(15, 3.5))
  all_xs = sorted({int(x) for curve in curves.values() for x in curve})
  for ax, (key, title) in zip(axes, keys):
    for m, curve in curves.items():
      xs = sorted(curve, key=int)
      vals = [np.nan if curve[x].get(key) is None else curve[x][key] for x in xs]
      style = "o-" if not solid or m in solid else "s--"
      ax.plot([int(x) for x in xs], vals, style, label=METHOD_NAMES.get(m, m))
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(all_xs, [str(x) for x in all_xs])
    ax.set_xlabel(xlabel)
    ax.set_title(title)
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def k_figure(k_images: Mapping[str, Mapping], path: str):
  curves_figure(k_images, path, "k images per GM")


def _confusion_figure(confusion, space: Space, path: str):
  fig, axes = plt.subplots(2, 3, figsize=(11, 7))
  for ax, cm, name, classes in zip(axes.ravel(), confusion, space.discrete_names,
                                   space.class_names):
    cm = np.asarray(cm)
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
      ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
              color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=30, fontsize=7)
    ax.set_yticks(range(len(classes)), classes, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(name, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _fingerprint_figure(fingerprints: Mapping[str, Mapping], path: str):
  fig, axes = plt.subplots(len(fingerprints), 3, figsize=(7.5, 2.5 * len(fingerprints)),
                           squeeze=False)
  for row, (gm, d) in zip(axes, fingerprints.items()):
    f = np.asarray(d["fingerprint"])
    lim = np.abs(f).max() + 1e-12
    row[0].imshow(np.clip(d["image"], 0, 1))
    row[1].imshow(f / (2 * lim) + 0.5)  # zero -> grey
    row[2].imshow(np.log1p(np.asarray(d["spectrum"])), cmap="magma")
    row[0].set_ylabel(gm, fontsize=8)
    for ax, title in zip(row, ("image", "fingerprint F", "log(1 + |FFT F_gray|), mean")):
      ax.set_xticks([])
      ax.set_yticks([])
      ax.set_title(title, fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def write_report(out_dir: str, results: Mapping, space: Space, figures: bool = True,
                 fingerprints: Mapping[str, Mapping] | None = None) -> list[str]:
  """Writes metrics.json, report.md and (optionally) PNG figures; returns the written paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = [os.path.join(out_dir, workdir_lib.METRICS_FILE), os.path.join(out_dir, "report.md")]
  with open(paths[0], "w") as f:
    json.dump(results, f, indent=1)
  with open(paths[1], "w") as f:
    f.write(markdown(results, space))
  if figures:
    paths.append(os.path.join(out_dir, "per_hyperparameter.png"))
    _bar_figure(results["methods"], space, paths[-1])
    if results.get("k_images"):
      paths.append(os.path.join(out_dir, "k_images.png"))
      k_figure(results["k_images"], paths[-1])
    paths.append(os.path.join(out_dir, "confusion.png"))
    _confusion_figure(results["confusion"], space, paths[-1])
    if fingerprints:
      paths.append(os.path.join(out_dir, "fingerprints.png"))
      _fingerprint_figure(fingerprints, paths[-1])
  return paths
