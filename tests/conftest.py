"""Test-wide settings: 8 simulated CPU devices, TF kept off accelerators, shared data paths."""

import os

# Must happen before jax is imported anywhere: tests of data parallelism use 8 CPU devices;
# single-device tests build their mesh over jax.devices()[:1].
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pathlib  # noqa: E402

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def red116_dir() -> pathlib.Path:
  """The published ground-truth tables (../shared/red116); CI has them beside the clone."""
  path = SHARED / "red116"
  if not path.is_dir():
    raise FileNotFoundError(f"{path} is missing: the tests read the published tables from ../shared")
  return path
