"""Config files: loading them, overriding their fields, and the cache their empty paths mean.

Configs are Python files with `get_config(arg=None) -> ConfigDict`, named by a big_vision-style
spec `path/to/config.py[:arg]`. The absl entry points (train.py, eval.py, experiments/) read
the spec from `--config` with `ml_collections.config_flags`; everything else (configs built
on another config, benchmarks, tests) calls `load_config`. Both lock the config and override
dotted fields through `ConfigDict.update_from_flattened_dict`, so a misspelt field is an error.
"""

from __future__ import annotations

import copy
import importlib.util
import os
from typing import Any, Mapping

import ml_collections


class ConfigError(ValueError):
  """A config value that cannot work (it names the field); train.py says it in one line."""


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
  """The config argument: `python train.py --config configs/default.py:tiny` passes "tiny",
  the `preset`; no argument keeps the defaults."""
  out = ml_collections.ConfigDict(defaults)
  if arg:
    out.preset = arg
  return out


def load_config(spec: str, overrides: Mapping[str, Any] | None = None
                ) -> ml_collections.ConfigDict:
  """`path/to/config.py[:arg]` -> its locked `get_config(arg)` with dotted `overrides` set.

  The spec means what it means to `--config` (a relative path is taken from the working
  directory; no `:` calls `get_config()`); `overrides` are `--config.<field>=<value>` as a
  dict, e.g. {"data.test_set": 2}.
  """
  path, *arg = spec.split(":", 1)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"config file {path} does not exist (from {spec!r})")
  module_spec = importlib.util.spec_from_file_location(
      f"config_{os.path.splitext(os.path.basename(path))[0]}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return with_overrides(module.get_config(*arg), overrides or {}, source=spec)


def with_overrides(config: ml_collections.ConfigDict, overrides: Mapping[str, Any],
                   source: str = "config") -> ml_collections.ConfigDict:
  """A locked copy of `config` with dotted `overrides` set; only existing fields, each with a
  value of its type. `source` names the config in the error."""
  config = copy.deepcopy(config)
  config.lock()
  for key, value in overrides.items():
    try:
      config.update_from_flattened_dict({key: value})
    except KeyError:
      raise ValueError(f"{source}: no field {key!r} to override; check the spelling and "
                       "nesting of the field") from None
    except TypeError as e:
      raise ValueError(f"{source}: {key}={value!r}: {e}") from None
  return config


def cache_root() -> str:
  """Where built zoos and TFRecord shards are cached: $REVGM_CACHE, or ~/.cache/revgm_jax when
  it is unset or empty (an empty variable is taken as unset, as `${REVGM_CACHE:-...}` in sh)."""
  return os.path.expanduser(os.environ.get("REVGM_CACHE") or "~/.cache/revgm_jax")
