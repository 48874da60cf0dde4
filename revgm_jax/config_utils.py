"""Helpers shared by the files in configs/."""

import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """Parses a big_vision-style config argument `preset,key=value,...`.

  `python train.py --config configs/default.py:tiny` passes "tiny"; a bare word sets `preset`.
  Values are converted to the type of their default; unknown keys are an error.
  """
  out = ml_collections.ConfigDict(defaults)
  for item in (arg or "").split(","):
    if not item:
      continue
    if "=" not in item:
      out.preset = item
      continue
    key, value = item.split("=", 1)
    if key not in defaults:
      raise ValueError(f"unknown config argument {key!r} in {arg!r}; known: {sorted(defaults)}")
    default = defaults[key]
    out[key] = value.lower() in ("1", "true", "yes") if isinstance(default, bool) else type(default)(value)
  return out
