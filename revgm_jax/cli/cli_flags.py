"""absl flags for every command line of revgm_jax, with errors that name the flag.

absl reports a wrong-typed override (`--config.batch_size=abc`) as a flags error naming the flag,
but an override of a field the config does not have (`--config.data.nonexistent=1`) escapes
ml_collections as a bare `AttributeError: 'nonexistent'` traceback. And when `--config` is not
given, ml_collections applies the overrides to the default config already inside
`DEFINE_config_file`, at import time, before `app.run` could report anything. Use:

  _CONFIG = cli_flags.define_config_file("config", DEFAULT_CONFIG_PATH, "...")
  app.run(main, flags_parser=cli_flags.parse_flags)

Commands that take argv as an argument (`revgm parse`, `python -m revgm_jax.zoo build`) define
their flags on their own `flags.FlagValues` and call `parse_command`.

All end a bad override or flag as absl does: "FATAL Flags parsing error: <flag>: <problem>" on
stderr, exit status 1 (or the command's own status for bad arguments).
"""

from __future__ import annotations

import sys

from absl import flags
from ml_collections import config_flags

HELP = ("-h", "--help", "--helpshort", "--helpfull")


def _message(error: Exception, argv: list[str]) -> str:
  """The problem of a failed config parse, naming the offending override flag."""
  if isinstance(error, flags.Error):
    return str(error)
  detail = str(error.args[0] if error.args else error).strip("'\"")
  overrides = [a for a in argv[1:] if a.startswith("-") and "." in a.split("=", 1)[0]]
  named = [a for a in overrides if detail in a.lstrip("-").split("=", 1)[0].split(".")[1:]]
  field = f"no field {detail!r}" if named else f"no such field ({detail})"
  return (f"{' '.join(named or overrides)}: the config has {field}; check the spelling and "
          "nesting of the field")


def fail(message: str, status: int = 1):
  """As absl's own flags parser does on a flags error: one line on stderr, exit `status`."""
  sys.stderr.write(f"FATAL Flags parsing error: {message}\n"
                   "Pass --helpshort or --helpfull to see help on flags.\n")
  sys.exit(status)


def _define(define, name: str, default, help_string: str, **kwargs) -> flags.FlagHolder:
  try:
    return define(name, default, help_string, **kwargs)
  except (flags.Error, AttributeError, KeyError) as e:
    fail(_message(e, kwargs.get("sys_argv") or sys.argv))


def define_config_file(name: str, default: str | None = None, help_string: str = "",
                       **kwargs) -> flags.FlagHolder:
  """`config_flags.DEFINE_config_file`; a bad override of the default config exits."""
  return _define(config_flags.DEFINE_config_file, name, default, help_string, **kwargs)


def define_config_dict(name: str, config, help_string: str = "", **kwargs) -> flags.FlagHolder:
  """`config_flags.DEFINE_config_dict`; a bad override exits."""
  return _define(config_flags.DEFINE_config_dict, name, config, help_string, **kwargs)


def _tuple_problem(flag_values: flags.FlagValues) -> str | None:
  """ml_collections takes any text for a tuple field (`--config.model.parser_widths=abc` gives
  ('abc',)); its elements must have the type of the default's (an int may stand for a float)."""
  for name in flag_values:
    flag = flag_values[name]
    default = flag.default
    if not (flag.present and "." in name and isinstance(default, (tuple, list)) and default):
      continue
    kinds = {type(v) for v in default}
    kind = float if kinds == {int, float} else kinds.pop() if len(kinds) == 1 else None
    ok = (lambda v: type(v) in (int, float)) if kind is float else (lambda v: type(v) is kind)
    if kind is not None and not all(ok(v) for v in flag.value):
      return (f"--{name}={','.join(map(str, flag.value))}: expected a tuple of {kind.__name__} "
              f"such as {tuple(default)}, got {tuple(flag.value)}")
  return None


def define_checkpoint_flags(fv: flags.FlagValues, checkpoint_help: str) -> None:
  """The flags of every `revgm` command that reads a checkpoint: --checkpoint, --json and
  --batch_size."""
  flags.DEFINE_string("checkpoint", None, checkpoint_help, required=True, flag_values=fv)
  flags.DEFINE_bool("json", False, "Print one JSON object instead of a table.", flag_values=fv)
  flags.DEFINE_integer("batch_size", 64, "Images per forward pass.", lower_bound=1,
                       flag_values=fv)


def parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS,
                status: int = 1) -> list[str]:
  """absl `flags_parser`: parses `argv`; returns the remaining positional arguments."""
  try:
    rest = flag_values(argv)
  except (flags.Error, AttributeError, KeyError) as e:
    fail(_message(e, argv), status)
  problem = _tuple_problem(flag_values)
  if problem:
    fail(problem, status)
  return rest


def parse_command(flag_values: flags.FlagValues, argv: list[str], usage: str,
                  status: int = 1) -> list[str]:
  """Parses a command's own flags from `argv` (argv[0]: the command); returns its positional
  arguments, which may come before, between or after the flags.

  -h/--help prints `usage` and the flags (exit status 0); a bad flag exits with `status`.
  """
  if set(HELP) & set(argv[1:argv.index("--") if "--" in argv else None]):
    print(f"{usage}\n\nflags:{flag_values.get_help(include_special_flags=False)}")
    sys.exit(0)
  return parse_flags(argv, flag_values, status)[1:]
