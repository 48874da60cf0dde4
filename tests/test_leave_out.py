"""experiments/leave_out.py: one run per leave-out set, the summary over the sets, resumption."""

import json
import os
import subprocess
import sys

import gm_folders
import tiny_run

SCRIPT = os.path.join(tiny_run.REPO, "experiments", "leave_out.py")


def _leave_out(tmp_path, red116_dir, *extra):
  root = tmp_path / "data"
  if not (root / "images").is_dir():
    gm_folders.write_layout(root / "images", tiny_run.GMS, tiny_run.IMAGES_PER_GM)
  overrides = {"data.source": "folder", "data.image_dir": root / "images",
               "data.labels_dir": red116_dir, "data.tfds_dir": root / "tfds",
               "data.space": "red116", "data.shards_per_gm": 1, "data.num_val_gms": 1,
               "data.shuffle_buffer": 32, "image_size": 16, "num_train_steps": 2,
               "eval_every_steps": 2, "checkpoint_every_steps": 2, "log_every_steps": 2,
               "eval.retrieval_images_per_gm": 4, "eval.figures": False}
  cmd = [sys.executable, SCRIPT, f"--config={tiny_run.TINY}", "--sets=1,2",
         f"--out_dir={tmp_path / 'out'}", *(f"--config.{k}={v}" for k, v in overrides.items()),
         *extra]
  return subprocess.run(cmd, cwd=tiny_run.REPO, capture_output=True, text=True, timeout=600)


def test_leave_out_summarises_the_sets_and_reuses_finished_runs(tmp_path, red116_dir):
  first = _leave_out(tmp_path, red116_dir)
  assert first.returncode == 0, first.stderr
  assert "=== test set 1" in first.stdout and "=== test set 2" in first.stdout
  out = tmp_path / "out"
  summary = json.loads((out / "summary.json").read_text())
  assert list(summary["sets"]) == ["test set 1", "test set 2"]
  assert summary["sets"]["test set 1"]["gms"] == list(tiny_run.TEST_GMS)
  model = summary["mean_std"]["model"]["cont_l1"]
  per_set = [s["methods"]["model"]["cont_l1"] for s in summary["sets"].values()]
  assert model["n"] == 2 and abs(model["mean"] - sum(per_set) / 2) < 1e-9
  assert set(summary["k_images_mean_std"]["model"]) == {"1", "2", "5"}
  assert "mean ± std (2 sets)" in (out / "summary.md").read_text()
  assert (out / "summary_k_images.png").stat().st_size > 0

  again = _leave_out(tmp_path, red116_dir)  # a finished protocol is reused, not retrained
  assert again.returncode == 0, again.stderr
  assert "=== test set" not in again.stdout and "mean ± std (2 sets)" in again.stdout

  changed = _leave_out(tmp_path, red116_dir, "--config.optim.lr=0.01")
  assert changed.returncode == 1
  assert "holds a finished run of another config" in changed.stderr
  assert "Traceback" not in changed.stderr
