"""Config flags for the absl entry points, with override errors that name the flag.

absl reports a wrong-typed override (`--config.batch_size=abc`) as a flags error naming the flag,
but an override of a field the config does not have (`--config.data.nonexistent=1`) escapes
ml_collections as a bare `AttributeError: 'nonexistent'` traceback. And when `--config` is not
given, ml_collections applies the overrides to the default config already inside
`DEFINE_config_file`, at import time, before `app.run` could report anything. Use:

  _CONFIG = cli_flags.define_config_file("config", DEFAULT_CONFIG_PATH, "...")
  app.run(main, flags_parser=cli_flags.parse_flags)

Both end a bad override or flag as absl does: "FATAL Flags parsing error: <flag>: <problem>" on
stderr, exit status 1.
"""

from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags


def _message(error: Exception, argv: list[str]) -> str:
  """The problem of a failed config parse, naming the offending override flag."""
  if isinstance(error, flags.Error):
    return str(error)
  detail = str(error.args[0] if error.args else error).strip("'\"")
  overrides = [a for a in argv[1:] if a.startswith("-") and "." in a.split("=", 1)[0]]
  named = [a for a in overrides if detail in a.lstrip("-").split("=", 1)[0].split(".")[1:]]
  field = f"no field {detail!r}" if named else f"no such field ({detail})"
  return (f"{' '.join(named or overrides)}: the config has {field}; check the spelling and "
          "nesting against the config file")


def _exit(error: Exception, argv: list[str]):
  """As absl's own flags parser does on a flags error: one line on stderr, exit status 1."""
  sys.stderr.write(f"FATAL Flags parsing error: {_message(error, argv)}\n"
                   "Pass --helpshort or --helpfull to see help on flags.\n")
  sys.exit(1)


def define_config_file(name: str, default: str | None = None, help_string: str = "",
                       **kwargs) -> flags.FlagHolder:
  """`config_flags.DEFINE_config_file`; a bad override of the default config exits."""
  try:
    return config_flags.DEFINE_config_file(name, default, help_string, **kwargs)
  except (flags.Error, AttributeError, KeyError) as e:
    _exit(e, kwargs.get("sys_argv") or sys.argv)


def parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """absl `flags_parser`: parses `argv`; returns the remaining positional arguments."""
  try:
    return flag_values(argv)
  except (flags.Error, AttributeError, KeyError) as e:
    _exit(e, argv)
