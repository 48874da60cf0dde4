"""What the host gives a contender and what it takes: CPU threads, peak RSS (Linux /proc)."""

import os


def cpu_threads() -> int:
  """Cores XLA:CPU's thread pool uses (the process's CPU affinity), also given to torch."""
  return len(os.sched_getaffinity(0))


def _status_bytes(field: str) -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field):
        return int(line.split()[1]) * 1024
  return 0


def reset_peak_rss() -> int:
  """Resets the high-water mark of this process's RSS (Linux clear_refs 5); returns the RSS."""
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
  return _status_bytes("VmRSS:")


def peak_rss_growth(baseline: int) -> int:
  """Peak RSS since `reset_peak_rss` above the RSS it returned: what a contender added."""
  return _status_bytes("VmHWM:") - baseline
