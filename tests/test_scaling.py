"""experiments/scaling.py: nested training-GM subsets, the same test GMs, the table and figure."""

import json
import subprocess

import pytest

from support import tiny_run

pytestmark = pytest.mark.e2e  # every test trains or starts processes


def _scaling(tmp_path, red116_dir, *extra):
  cmd = tiny_run.experiment_cmd("scaling.py", tmp_path, red116_dir, "--steps=2",
                                f"--out_dir={tmp_path / 'out'}", *extra)
  return subprocess.run(cmd, cwd=tiny_run.REPO, capture_output=True, text=True, timeout=600)


def test_scaling_trains_nested_subsets_on_the_same_test_gms(tmp_path, red116_dir):
  done = _scaling(tmp_path, red116_dir, "--num_gms=2,all")
  assert done.returncode == 0, done.stderr
  out = tmp_path / "out"
  study = json.loads((out / "scaling.json").read_text())
  assert list(study) == ["2", "5"]  # 8 GMs: 2 test, 1 validation, 5 training
  splits = [json.loads((out / d / "labels.json").read_text())["split"]
            for d in ("n2", "n_all")]
  assert set(splits[0]["train"]) < set(splits[1]["train"])
  assert splits[0]["test"] == splits[1]["test"] == list(tiny_run.TEST_GMS)
  assert splits[0]["val"] == splits[1]["val"]
  for row in study.values():
    assert {"model", "majority", "retrieval"} <= set(row["methods"])
    assert 0 <= row["methods"]["model"]["cont_l1"] <= 1
  assert "| 5 | deep parser (ours) |" in (out / "scaling.md").read_text()
  assert (out / "scaling.png").stat().st_size > 0


def test_scaling_names_a_bad_count(tmp_path, red116_dir):
  for bad, says in (("--num_gms=all,2", "'all' last"), ("--num_gms=x", "integers or 'all'")):
    done = _scaling(tmp_path, red116_dir, bad)
    assert done.returncode == 1 and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
