"""`revgm COMMAND ...`, the console script: one entry per command in COMMANDS.

A command is a function `main(argv, prog) -> exit status` (argv: the arguments after the
command) that parses its own absl flags with `cli_flags.parse_command`, so every command takes
flags and positional arguments in any order, `--help`, and ends bad flags in one line.
"""

from __future__ import annotations

import sys

from revgm_jax.cli import classify, parse


def _prepare(argv: list[str], prog: str) -> int:
  # Imported when run: TensorFlow and the zoo would slow every other command's start.
  from revgm_jax.cli import prepare  # pylint: disable=g-import-not-at-top
  return prepare.main(argv, prog)


COMMANDS = {  # name: (main, one-line description)
    "parse": (parse.main, parse.DESCRIPTION),
    "detect": (classify.detect_main, classify.DESCRIPTIONS["detect"]),
    "attribute": (classify.attribute_main, classify.DESCRIPTIONS["attribute"]),
    "prepare": (_prepare, "Build (or find) the TFRecords of a config's data: the zoo or an "
                "image folder."),
}


def main(argv: list[str] | None = None) -> int:
  """`revgm COMMAND ARGS` (argv: COMMAND ARGS); no or an unknown command prints the usage."""
  argv = sys.argv[1:] if argv is None else argv
  if argv and argv[0] in COMMANDS:
    return COMMANDS[argv[0]][0](argv[1:], prog=f"revgm {argv[0]}")
  asked = argv[:1] in (["-h"], ["--help"])
  unknown = f"revgm: unknown command {argv[0]!r}\n" if argv and not asked else ""
  print(f"{unknown}usage: revgm COMMAND [FLAGS] [ARGS]   (revgm COMMAND --help: its flags)\n\n"
        "commands:\n" + "".join(f"  {name:11s}{about}\n" for name, (_, about) in COMMANDS.items()),
        file=sys.stdout if asked else sys.stderr, end="")
  return 0 if asked else 2


if __name__ == "__main__":
  sys.exit(main())
