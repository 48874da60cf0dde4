r"""`revgm prepare`: a config's data prepared ahead of a job (`revgm_jax.data.prepare`).

  revgm prepare --config configs/default.py:tiny
  python -m revgm_jax.cli.prepare --config configs/red116.py \
      --config.data.image_dir=/data/RED116 --config.data.labels_dir=/data/red116_labels

The zoo (or the image folder) becomes cached TFRecords; a second run finds the build and
returns at once. A config or data folder that cannot work ends in one line, exit 1.
"""

from __future__ import annotations

import sys

from absl import flags

from revgm_jax import config_check
from revgm_jax.cli import cli_flags
from revgm_jax.data import prepare
from revgm_jax.runtime import distributed

PROG = "python -m revgm_jax.cli.prepare"


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
  """`revgm prepare --config FILE[:ARG] [--config.<field>=<value> ...]`; prints the build."""
  argv = sys.argv[1:] if argv is None else argv
  fv = flags.FlagValues()
  config = cli_flags.define_config_file(
      "config", None, "Config file, optionally with `:arg` (e.g. configs/default.py:tiny).",
      flag_values=fv, lock_config=True, sys_argv=[prog, *argv])
  rest = cli_flags.parse_command(fv, [prog, *argv], f"usage: {prog} --config FILE[:ARG]\n\n"
                                 f"{__doc__}")
  if rest:
    cli_flags.fail(f"unexpected arguments: {' '.join(rest)}")
  if config.value is None:
    cli_flags.fail("--config is required (e.g. --config configs/default.py:tiny)")
  try:
    config_check.check_config(config.value)
    distributed.initialize(config.value.distributed)
    data = prepare.prepare(config.value)
  except ValueError as e:  # a ConfigError, a DataError (folders, labels), the zoo's refusals
    sys.stderr.write(f"{prog}: {e}\n")
    return 1
  print(f"{data.builder.data_dir}: {len(data.gm_info)} image folders of {data.image_dir}, "
        f"{sum(i['num_images'] for i in data.gm_info.values())} images", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
