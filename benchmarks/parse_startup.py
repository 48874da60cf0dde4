r"""Wall time of `revgm parse` as an analyst runs it: a fresh process per call.

  python benchmarks/parse_startup.py --workdir /tmp/ana_default            # 100 images
  python benchmarks/parse_startup.py --workdir W --images DIR --calls 3
  python benchmarks/parse_startup.py --workdir W --each_gms 8     # + one --each call over 8 GMs

Call 1 runs with an empty JAX compilation cache (a new temporary folder, as on a first use),
the later calls reuse it (as every later use does); each is `python -m revgm_jax.cli parse
--checkpoint WORKDIR DIR --json`, timed from process start to exit. Without --images, the first
--num_images images of the workdir's first test GM are copied into a temporary folder. With
--each_gms N, one more call parses N folders (--num_images images of each of the first N test
GMs) with `--each`, one model load, after the timed calls (warm cache).
"""

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

_WORKDIR = flags.DEFINE_string("workdir", None, "Trained workdir.", required=True)
_IMAGES = flags.DEFINE_string("images", None, "Folder of images (default: a test GM's).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 100, "Images copied without --images.")
_CALLS = flags.DEFINE_integer("calls", 2, "Calls timed; the first with an empty cache.")
_EACH_GMS = flags.DEFINE_integer("each_gms", 0, "Test GMs parsed by one --each call.")


def _test_gm_images(workdir: str, n: int, out: str, gm_index: int = 0) -> str:
  from revgm_jax import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  from revgm_jax.data import prepare  # pylint: disable=g-import-not-at-top
  config = workdir_lib.load_config(workdir)
  info, _ = workdir_lib.load_run_info(workdir)
  gm = info["split"]["test"][gm_index]
  src = os.path.join(prepare.image_folders(config.data)[0], gm)
  os.makedirs(out)
  for name in sorted(os.listdir(src))[:n]:
    shutil.copy(os.path.join(src, name), out)
  return out


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], env: dict, label: str) -> None:
  """Runs `cmd`; prints its wall time and CPU time (user + system; what other jobs on a shared
  machine do not inflate as much)."""
  cpu, start = _cpu_seconds(), time.perf_counter()
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
  wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
  if proc.returncode:
    sys.exit(f"{label} failed ({proc.returncode}): {proc.stderr[-2000:]}")
  print(f"{label}: {wall:.2f} s wall, {cpu:.2f} s CPU; load average {os.getloadavg()[0]:.1f}")


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as tmp:
    images = _IMAGES.value or _test_gm_images(_WORKDIR.value, _NUM_IMAGES.value,
                                              os.path.join(tmp, "images"))
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": os.path.join(tmp, "jax_cache"),
           "PYTHONPATH": REPO}
    cmd = [sys.executable, "-m", "revgm_jax.cli", "parse", "--checkpoint", _WORKDIR.value,
           images, "--json"]
    print(f"images: {len(os.listdir(images))} in {images}; {os.cpu_count()} CPUs")
    for call in range(1, _CALLS.value + 1):
      _timed(cmd, env, f"call {call} ({'empty' if call == 1 else 'warm'} compilation cache)")
    if _EACH_GMS.value:
      cases = os.path.join(tmp, "cases")
      for i in range(_EACH_GMS.value):
        _test_gm_images(_WORKDIR.value, _NUM_IMAGES.value, os.path.join(cases, f"gm{i}"), i)
      _timed(cmd[:-2] + ["--each", cases, "--json"], env,
             f"--each over {_EACH_GMS.value} folders of {_NUM_IMAGES.value} images, one call")


if __name__ == "__main__":
  app.run(main)
