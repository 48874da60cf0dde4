"""What an unlucky user meets: a rerun under another config, a corrupt checkpoint, a locked
workdir, odd images, bad values, nothing to parse, a full disk, an unwritable workdir (the
README's catalogue)."""

import glob
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

from support import tiny_run
from revgm_jax import config_utils, inference, train_lib
from revgm_jax.cli import parse
from revgm_jax.runtime import stop_signal, workdir_lock
from revgm_jax import workdir as workdir_lib
from revgm_jax.data import images


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, red116_dir):
  return tiny_run.trained(tmp_path_factory, red116_dir)


def _copy(workdir, to) -> str:
  shutil.copytree(workdir, to)
  return str(to)


def _corrupt(step_dir: str) -> None:
  """Truncates every file of a checkpoint step's weights to half its size (a torn write)."""
  for root, _, names in os.walk(os.path.join(step_dir, "variables")):
    for name in names:
      path = os.path.join(root, name)
      os.truncate(path, os.path.getsize(path) // 2)


def _snapshot(workdir) -> dict:
  return {name: open(os.path.join(workdir, name), "rb").read()
          for name in ("config.json", "labels.json", "results.json", "report/metrics.json")}


# --- 1. a finished run is never silently overwritten -------------------------------------------

def test_rerun_under_another_split_is_refused_and_the_run_kept(tiny):
  workdir, config = tiny
  before = _snapshot(workdir)
  other = config_utils.load_config(tiny_run.TINY, {
      **tiny_run.overrides(os.path.dirname(config.data.image_dir), config.data.labels_dir),
      "data.test_set": 2})
  with pytest.raises(workdir_lib.WorkdirError,
                     match=r"another config \(data.test_set: 1 -> 2\); .*--overwrite"):
    train_lib.train_and_evaluate(other, workdir)
  assert _snapshot(workdir) == before


def test_resuming_a_run_of_another_split_rule_is_refused(tiny, tmp_path):
  """Same config, but the code now draws other validation GMs: resuming would switch GMs."""
  workdir, config = tiny
  copy = _copy(workdir, tmp_path / "w")
  path = os.path.join(copy, "labels.json")
  info = json.load(open(path))
  info["split"]["val"][0], info["split"]["train"][0] = (info["split"]["train"][0],
                                                        info["split"]["val"][0])
  with open(path, "w") as f:
    json.dump(info, f)
  before = _snapshot(copy)
  with pytest.raises(workdir_lib.WorkdirError, match=r"other train/val GMs .*--overwrite"):
    train_lib.train_and_evaluate(config, copy)
  assert _snapshot(copy) == before


@pytest.mark.parametrize("flag,message", [
    ("--config.loss.continuous=huber", "config.loss.continuous='huber'; use one of ('mse', "
     "'l1', 'bce')"),
    ("--config.data.max_train_gms=-1", "config.data.max_train_gms=-1: expected 0 (all) to"),
    ("--config.model.cont_bias_init=zero", "config.model.cont_bias_init='zero'; use one of "
     "('mean', 'torch')")])
def test_train_py_names_a_config_value_that_cannot_work_in_one_line(tiny, tmp_path, flag,
                                                                    message):
  _, config = tiny
  status, out = tiny_run.run(tiny_run.train_py(config, str(tmp_path / "w"), flag))
  assert status == 1, out
  assert f"train.py: {message}" in out and "Traceback" not in out


def test_only_run_fields_count_and_clear_removes_the_run(tiny, tmp_path):
  workdir, config = tiny
  old = json.loads(config.to_json())
  new = json.loads(config.to_json())
  new["data"]["image_dir"], new["optim"]["lr"] = "/elsewhere", 0.5  # data moved; another lr
  assert workdir_lib.run_fields_diff(old, new) == []
  new["model"]["fen_width"] = 32
  assert workdir_lib.run_fields_diff(old, new) == ["model.fen_width: 8 -> 32"]
  copy = _copy(workdir, tmp_path / "w")
  workdir_lib.clear(copy)
  assert sorted(os.listdir(copy)) == ["lock"] and not workdir_lib.is_workdir(copy)


def test_overwrite_trains_afresh_under_another_config_and_keeps_the_logs(tiny, tmp_path):
  workdir, config = tiny
  copy = _copy(workdir, tmp_path / "w")
  old_log = os.path.join(copy, "train.vm.root.log.INFO.20000101-000000.1")
  with open(old_log, "w") as f:
    f.write("the log of the first run\n")
  (old_events,) = glob.glob(os.path.join(copy, workdir_lib.EVENTS_GLOB))
  status, out = tiny_run.run(tiny_run.train_py(config, copy, "--config.seed=1",
                                               "--config.num_train_steps=2", "--overwrite"))
  assert status == 0, out
  assert workdir_lib.load_config(copy).seed == 1
  with open(workdir_lib.results_path(copy)) as f:
    assert json.load(f)["last_step"] == 2
  assert sorted(os.listdir(os.path.join(copy, "latest"))) == ["2"]  # step 4 of the old run gone
  assert not os.path.exists(old_events) and os.path.exists(old_log)


def test_evaluating_with_the_config_of_another_model_names_the_field(tiny):
  workdir, config = tiny
  other = config.copy_and_resolve_references()
  other.model.fen_width = 32
  with pytest.raises(workdir_lib.WorkdirError, match=r"model.fen_width: 8 -> 32"):
    inference.load(workdir, other)


# --- 2. a corrupt checkpoint falls back -----------------------------------------------------

def test_training_resumes_from_the_previous_intact_step(tiny, tmp_path):
  workdir, config = tiny
  copy = _copy(workdir, tmp_path / "w")
  os.remove(workdir_lib.results_path(copy))
  _corrupt(os.path.join(copy, "latest", "4"))
  results = train_lib.train_and_evaluate(config, copy)
  assert os.path.isdir(os.path.join(copy, "corrupt", "latest-4"))  # kept, out of the way
  assert results["last_step"] == 4
  with open(workdir_lib.results_path(workdir)) as f:
    assert results["report"]["methods"] == json.load(f)["report"]["methods"]


def test_parse_names_a_corrupt_step_and_uses_the_previous(tiny, tmp_path, capsys):
  workdir, config = tiny
  copy = _copy(workdir, tmp_path / "w")
  _corrupt(os.path.join(copy, "latest", "4"))
  image = os.path.join(config.data.image_dir, "STARGAN", sorted(os.listdir(
      os.path.join(config.data.image_dir, "STARGAN")))[0])
  assert parse.main(["--checkpoint", os.path.join(copy, "latest"), image, "--json"]) == 0
  out = capsys.readouterr()
  result = json.loads(out.out)
  assert result["checkpoint"]["step"] == 2
  assert result["checkpoint"]["skipped_steps"][0].startswith(os.path.join(copy, "latest", "4"))
  assert f"warning: checkpoint {os.path.join(copy, 'latest', '4')}: " in out.err
  assert "; used step 2" in out.err


def test_parse_of_a_corrupt_best_step_exits_2_in_one_line(tiny, tmp_path, capsys):
  workdir, config = tiny
  copy = _copy(workdir, tmp_path / "w")
  best = os.path.join(copy, "best")
  (step,) = os.listdir(best)
  _corrupt(os.path.join(best, step))
  assert parse.main(["--checkpoint", copy, config.data.image_dir]) == 2
  err = capsys.readouterr().err
  assert err.startswith(f"revgm parse: cannot load checkpoint: no step of {best} restores: "
                        f"{best}/{step}: ")
  assert len(err.strip().splitlines()) == 1


# --- 4. one writer per workdir ----------------------------------------------------------------

@pytest.mark.e2e
def test_lock_names_its_holder_and_dies_with_it(tmp_path):
  workdir = str(tmp_path)
  with workdir_lock.hold(workdir):
    with pytest.raises(workdir_lock.WorkdirBusyError,
                       match=rf"in use by another run: pid {os.getpid()} on host "):
      with workdir_lock.hold(workdir):
        pass
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from revgm_jax.runtime import workdir_lock\n"
       f"with workdir_lock.hold({workdir!r}):\n  print('held', flush=True); time.sleep(600)"],
      cwd=tiny_run.REPO, stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline() == "held\n"
  with pytest.raises(workdir_lock.WorkdirBusyError, match=f"pid {holder.pid} "):
    with workdir_lock.hold(workdir):
      pass
  holder.kill()  # SIGKILL: no clean-up ran, yet the kernel released the lock
  holder.wait()
  with workdir_lock.hold(workdir):
    pass


# --- 3. signals (the real-process kills are in test_kill.py) ---------------------------------

def test_ctrl_c_is_noted_once_then_acts_at_once():
  with stop_signal.catch():
    os.kill(os.getpid(), signal.SIGINT)
    assert stop_signal.received() == "SIGINT"  # the process lives on to save its step
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
  assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


# --- 5. inputs --------------------------------------------------------------------------------

def _png(path, width, height, bit_depth, pixels: bytes = b"") -> str:
  def chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff))
  ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 2, 0, 0, 0)  # colour type 2: RGB
  with open(path, "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(pixels))
            + chunk(b"IEND", b""))
  return str(path)


def test_48_bit_png_is_an_error_not_squashed(tmp_path):
  rows = np.random.default_rng(0).integers(0, 65535, (4, 5 * 3)).astype(">u2")
  path = _png(tmp_path / "deep.png", 5, 4, 16, b"".join(b"\0" + r.tobytes() for r in rows))
  with pytest.raises(images.ImageError, match=rf"image {path} has 16-bit channels"):
    images.read_image(path)


def test_pixel_limit_is_checked_from_the_header_and_names_the_file(tmp_path):
  path = _png(tmp_path / "bomb.png", 12000, 12000, 8)  # no pixel data: never decoded
  with pytest.raises(images.ImageError, match=rf"image {path} is 12000 x 12000 = 144000000 "
                                              r"pixels, over the limit of 40000000"):
    images.read_image(path)
  with pytest.raises(images.ImageError, match="over the limit of 100 "):
    images.read_image(_png(tmp_path / "small.png", 11, 10, 8), max_pixels=100)


def test_parse_json_with_nothing_readable_is_still_json(tiny, tmp_path, capsys):
  workdir, _ = tiny
  (tmp_path / "a.png").write_bytes(b"not a png")
  assert parse.main(["--checkpoint", workdir, str(tmp_path / "a.png"), "--json"]) == 1
  out = capsys.readouterr()
  doc = json.loads(out.out)
  assert doc["error"].startswith("no readable image among 1 file")
  assert doc["skipped"][0]["path"] == str(tmp_path / "a.png")
  assert parse.main(["--checkpoint", str(tmp_path), "x.png", "--json"]) == 2
  assert json.loads(capsys.readouterr().out)["error"].startswith("cannot load checkpoint: ")


def test_parse_to_a_full_disk_is_named(tiny, monkeypatch, capsys):
  workdir, config = tiny
  with open("/dev/full", "w") as full:
    monkeypatch.setattr(sys, "stdout", full)
    assert parse.main(["--checkpoint", workdir,
                       os.path.join(config.data.image_dir, "STARGAN")]) == 3
  assert capsys.readouterr().err.endswith(
      "revgm parse: cannot write the result to stdout: No space left on device\n")


def test_eval_py_of_a_corrupt_best_step_is_one_line_exit_2(tiny, tmp_path):
  workdir, _ = tiny
  copy = _copy(workdir, tmp_path / "w")
  best = os.path.join(copy, "best")
  (step,) = os.listdir(best)
  _corrupt(os.path.join(best, step))
  out = subprocess.run([sys.executable, "eval.py", f"--workdir={copy}"], cwd=tiny_run.REPO,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 2, out.stderr
  assert out.stderr.strip().splitlines()[-1].startswith(
      f"eval.py: no step of {best} restores: {best}/{step}: ")
  assert "Traceback" not in out.stderr


# --- write errors: one line naming the path, exit 4 --------------------------------------------

@pytest.mark.e2e
def test_train_py_into_a_workdir_that_cannot_be_made_is_one_line_exit_4(tmp_path):
  (tmp_path / "file").write_text("")  # a file where a folder belongs: root cannot write there
  workdir = tmp_path / "file" / "w"
  out = subprocess.run([sys.executable, "train.py", f"--workdir={workdir}"], cwd=tiny_run.REPO,
                       capture_output=True, text=True, timeout=300)
  assert (out.returncode, out.stderr) == (4, f"train.py: cannot write {workdir}: Not a directory\n")


def test_results_to_a_full_disk_is_one_line_exit_4_and_the_traceback_in_the_log(tiny, tmp_path):
  workdir, config = tiny
  copy = _copy(workdir, tmp_path / "w")
  results = workdir_lib.results_path(copy)
  os.remove(results)
  os.symlink("/dev/full", results)  # every write to it: ENOSPC, "No space left on device"
  status, out = tiny_run.run(tiny_run.train_py(config, copy))
  assert status == 4, out
  assert out.endswith(f"train.py: cannot write {results}: No space left on device\n")
  assert "Traceback" not in out
  with open(os.path.join(copy, "train.INFO")) as f:
    assert "Traceback" in f.read()
