"""`revgm parse --report OUT.html`: the page a forensic reader looks at first.

One self-contained HTML file (the PNG figures embedded, so it can be mailed or archived as is):
the mean fingerprint and its spectrum, a few input images with their fingerprints, and the
parse table with each head's held-out reliability beside its answer (`parse_result.py`).
"""

from __future__ import annotations

import base64
import html
import io
import os

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from revgm_jax.cli import parse_result  # noqa: E402

NUM_EXAMPLES = 4  # input images shown with their fingerprints


def _png(fig) -> str:
  buf = io.BytesIO()
  fig.savefig(buf, format="png", dpi=100)
  plt.close(fig)
  return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _grey_centred(f: np.ndarray) -> np.ndarray:
  return f / (2 * (np.abs(f).max() + 1e-12)) + 0.5  # zero -> grey


def _mean_figure(fingerprints: np.ndarray, spectrum: np.ndarray) -> str:
  fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
  axes[0].imshow(_grey_centred(fingerprints.mean(0)))
  axes[0].set_title(f"mean fingerprint ({len(fingerprints)} images)", fontsize=9)
  im = axes[1].imshow(np.log1p(spectrum), cmap="magma")
  axes[1].set_title("mean log(1 + |FFT of fingerprint luma|)", fontsize=9)
  fig.colorbar(im, ax=axes[1], fraction=0.046)
  for ax in axes:
    ax.set_xticks([])
    ax.set_yticks([])
  fig.tight_layout()
  return _png(fig)


def _examples_figure(images: np.ndarray, fingerprints: np.ndarray, names: list[str]) -> str:
  n = min(NUM_EXAMPLES, len(images))
  fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.6), squeeze=False)
  for i in range(n):
    axes[0, i].imshow(np.clip(images[i], 0, 1))
    axes[0, i].set_title(os.path.basename(names[i])[:22], fontsize=7)
    axes[1, i].imshow(_grey_centred(fingerprints[i]))
    for ax in axes[:, i]:
      ax.set_xticks([])
      ax.set_yticks([])
  axes[0, 0].set_ylabel("input (as the model sees it)", fontsize=7)
  axes[1, 0].set_ylabel("fingerprint", fontsize=7)
  fig.tight_layout()
  return _png(fig)


def _rows(doc: dict) -> list[tuple[str, str, str, dict]]:
  """(head, answer, detail, reliability) per row of the parse table, loss groups first."""
  rows = []
  for c in doc["continuous"]:
    rows.append((c["name"], parse_result.format_count(c), "count" if c["integer"] else "continuous", c["reliability"]))
  for d in doc["discrete"]:
    rows.append((d["name"], f"{d['prediction']} ({d['probability']:.2f})",
                 ", ".join(f"{k} {v:.2f}" for k, v in d["probabilities"].items()),
                 d["reliability"]))
  for g in doc["loss_groups"]:
    yes = lambda e: "yes" if e["predicted"] else "no"
    rows.append((f"group: {g['name']}", f"{yes(g)} ({g['probability']:.2f})", "loss group",
                 g["reliability"]))
    for t in g["loss_types"]:
      rows.append((f"&nbsp;&nbsp;{html.escape(t['name'])}", f"{yes(t)} ({t['probability']:.2f})",
                   f"loss type in {g['name']}", t["reliability"]))
  return rows


_STYLE = """body{font-family:sans-serif;max-width:1000px;margin:1em auto;font-size:14px}
table{border-collapse:collapse;width:100%}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:left}tr.weak td{background:#fde8e8}tr.unmeasured td{color:#777}
.note{color:#444}"""


def render(doc: dict, arrays: dict) -> str:
  ck = doc["checkpoint"]
  title = "Model parsing of " + (doc.get("folder") or f"{doc['num_images']} images")
  mean_png = _mean_figure(arrays["fingerprints"], arrays["spectrum"])
  examples_png = _examples_figure(arrays["images"], arrays["fingerprints"], doc["images"])
  lines = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
           f"</title><style>{_STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
           f"<p class='note'>{doc['num_images']} image(s) taken to come from one generator "
           f"(mean of {doc['aggregate']}); checkpoint {html.escape(ck['workdir'])} "
           f"({ck['which']}, step {ck['step']}), label space {doc['space']}. Probabilities: "
           f"{html.escape(doc['calibration']['note'])}. Reliability: "
           + (f"held-out test-GM scores from {html.escape(doc['reliability_source'])}"
              if doc["reliability_source"] else "not measured (no evaluation report)")
           + f". {html.escape(doc['gating'])} Rows in red are not better than a baseline.</p>",
           f"<img alt='mean fingerprint and spectrum' src='{mean_png}'>",
           f"<img alt='inputs and fingerprints' src='{examples_png}'>",
           "<h2>Parse</h2><table><tr><th>hyperparameter</th><th>answer</th><th>detail</th>"
           "<th>reliability (held-out)</th></tr>"]
  for head, answer, detail, rel in _rows(doc):
    cls = ("unmeasured" if not rel["measured"] else
           "" if rel["better_than_baselines"] else "weak")
    lines.append(f"<tr class='{cls}'><td>{head}</td><td>{html.escape(answer)}</td>"
                 f"<td>{html.escape(detail)}</td><td>{html.escape(rel['text'])}</td></tr>")
  lines.append("</table>")
  if doc["skipped"]:
    lines.append(f"<p class='note'>{len(doc['skipped'])} file(s) skipped: " + "; ".join(
        html.escape(f"{s['path']}: {s['reason']}") for s in doc["skipped"]) + "</p>")
  lines.append("</body></html>")
  return "\n".join(lines)


def write(path: str, doc: dict, arrays: dict) -> str:
  """Writes the report of one parsed set to `path` (folders created); returns the path."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    f.write(render(doc, arrays))
  return path
