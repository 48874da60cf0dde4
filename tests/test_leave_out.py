"""experiments/leave_out.py: one run per leave-out set, the summary over the sets, resumption."""

import json
import subprocess

import pytest

from support import tiny_run

pytestmark = pytest.mark.e2e  # every test trains or starts processes


def _leave_out(tmp_path, red116_dir, *extra):
  cmd = tiny_run.experiment_cmd("leave_out.py", tmp_path, red116_dir, "--sets=1,2",
                                f"--out_dir={tmp_path / 'out'}", *extra)
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

  outside = _leave_out(tmp_path, red116_dir, "--random_gt_sets=3")  # not among --sets=1,2
  assert outside.returncode == 1 and "expected set numbers among --sets" in outside.stderr
