"""Where our step's time goes: a jax.profiler trace of it, XLA's ops summed by kind (--profile)."""

import collections
import glob
import os
import re
import time


def _op_kinds(hlo_text: str) -> dict:
  """Thunk name -> short description (what a fusion computes) from the compiled HLO text."""
  bodies, current = {}, None
  for line in hlo_text.splitlines():
    head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$", line)
    if head:
      current = bodies.setdefault(head.group(1), [])
    elif current is not None:
      current.append(line)
  kinds = {}
  for line in (l for body in bodies.values() for l in body):
    m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (\S+) ([\w\-]+)\(", line)
    if not m:
      continue
    name, shape, op = m.groups()
    if op == "fusion":
      body = "\n".join(bodies.get(re.search(r"calls=%([\w.\-]+)", line).group(1), []))
      conv = re.search(r"= (\S+) convolution\(.*window=\{size=(\w+)", body)
      if conv:
        op = f"convolution {conv.group(2)} window -> {conv.group(1).split('{')[0]}"
      elif " dot(" in body:
        op = "dot"
      else:
        op = "fusion " + name.rsplit(".", 1)[0]
    elif op == "convolution":
      window = re.search(r"size=(\w+)", line).group(1)
      op = f"convolution {window} window -> {shape.split('{')[0]}"
    kinds[name] = op
  return kinds


def profile_step(ours, directory: str, steps: int = 2, top: int = 25):
  """Traces `steps` steps of `ours` (a `jax_step.JaxStep`) and prints the XLA ops' summed
  thread time, largest first."""
  import jax
  kinds = _op_kinds(ours.compiled.as_text())
  with jax.profiler.trace(directory):
    t = time.perf_counter()
    ours.run(steps)
    wall = (time.perf_counter() - t) / steps
  path = sorted(glob.glob(os.path.join(directory, "**", "*.xplane.pb"), recursive=True))[-1]
  per_kind, count = collections.Counter(), collections.Counter()
  for plane in jax.profiler.ProfileData.from_file(path).planes:
    for line in plane.lines:
      if "XLAEigen" not in line.name:  # the threads that run XLA:CPU's thunks
        continue
      for event in line.events:
        if event.name.startswith("ThunkExecutor"):
          continue
        kind = kinds.get(event.name, event.name)
        per_kind[kind] += event.duration_ns / 1e6 / steps
        count[kind] += 1
  total = sum(per_kind.values())
  print(f"\nprofile ({path}): {1e3 * wall:.0f} ms per step wall, {total:.0f} ms per step of "
        f"op time summed over XLA's threads")
  for kind, ms in per_kind.most_common(top):
    print(f"  {ms:8.1f} ms {100 * ms / total:5.1f}%  {count[kind] // steps:6d}x  {kind}")

