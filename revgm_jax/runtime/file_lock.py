"""A waiting lock on a file, for processes that would build the same files at once.

Two trainings or experiments started together on one zoo must not both build it (or its
TFRecords): the second waits for the first, then finds the files there. `fcntl.flock`, so the
kernel releases the lock however its holder ends; there is never a stale lock to delete.
"""

import contextlib
import fcntl
import os


@contextlib.contextmanager
def waiting(path: str, message: str):
  """Holds an exclusive lock on `path` (created if needed); prints `message` when it must wait."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      print(message, flush=True)
      fcntl.flock(f, fcntl.LOCK_EX)
    yield
