"""Test-wide settings: 8 simulated CPU devices, TF kept off accelerators, the label tables.

Most tests need *some* RED116 labels and get seeded random tables in the published layout
(`red116_dir`), so a clone of the repository runs them as is. Tests of the published values
read the tables from $REVGM_RED116_DIR (default ../shared/red116 beside the clone, as in CI)
and are skipped where that folder does not exist (docs/labels.md#getting-the-tables).
"""

import os

# Must happen before jax is imported anywhere: tests of data parallelism use 8 CPU devices;
# single-device tests build their mesh over jax.devices()[:1].
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pathlib  # noqa: E402

import pytest  # noqa: E402

from support import gm_folders  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
RED116_ENV = "REVGM_RED116_DIR"


def published_red116_path() -> pathlib.Path:
  return pathlib.Path(os.environ.get(RED116_ENV) or REPO.parent / "shared" / "red116")


# Fixtures that train a run or build a zoo: every test using one is end to end (`e2e`), as is
# every test that starts a subprocess (marked where it is defined). `pytest -m "not e2e"` is the
# fast loop.
E2E_FIXTURES = {"tiny", "trained", "evaluated", "interrupted", "parity", "runs", "tiny_zoo"}


def pytest_collection_modifyitems(items):
  for item in items:
    if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
      item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def published_red116() -> pathlib.Path:
  """The published RED116 tables, for tests of their values; a skip where they are absent."""
  path = published_red116_path()
  if not path.is_dir():
    pytest.skip(
        f"published RED116 tables not found at {path}: put the .npy files of the dataset/ folder "
        "of github.com/vishal3477/Reverse_Engineering_GMs and the raw tables of "
        "github.com/CHELSEA234/LGPN (as red140_*_raw.csv, see docs/labels.md#getting-the-tables) "
        f"in one folder and set {RED116_ENV} to it")
  return path


@pytest.fixture(scope="session")
def red116_dir(tmp_path_factory) -> pathlib.Path:
  """Labels in the RED116 layout: the shipped GM index with seeded random red116 / v1 tables."""
  return gm_folders.write_red116_labels(tmp_path_factory.mktemp("red116_labels"))
