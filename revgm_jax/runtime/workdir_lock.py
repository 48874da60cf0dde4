"""One writer per workdir: an advisory lock on WORKDIR/lock that names its holder.

Two trainings writing one workdir would interleave checkpoints (orbax fails with "Directory not
empty") and overwrite each other's metadata. The lock is `fcntl.flock` on WORKDIR/lock, so the
kernel releases it when its process ends however it ends (SIGKILL, a crash, a lost machine):
there is never a stale lock to delete by hand. The file keeps the holder's pid, host and start
time for the error the second writer gets. In a multi-process job process 0 holds it for all.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket

from revgm_jax import workdir as workdir_lib


class WorkdirBusyError(workdir_lib.WorkdirError):
  """Another run holds the workdir's lock."""


def _holder(fd: int) -> str:
  try:
    info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
  except (OSError, ValueError):
    info = {}
  return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')} "
          f"(since {info.get('since', '?')})")


@contextlib.contextmanager
def hold(workdir: str):
  """Holds WORKDIR/lock for the duration; raises WorkdirBusyError if another process holds it."""
  workdir_lib.make(workdir)
  path = os.path.join(workdir, workdir_lib.LOCK_FILE)
  with workdir_lib.writing(path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise WorkdirBusyError(
          f"workdir {workdir} is in use by another run: {_holder(fd)}; wait for it to end "
          "(or stop it) or train in another --workdir") from None
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "since": datetime.datetime.now().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    yield
  finally:
    os.close(fd)  # releases the lock
