r"""Builds (or finishes, or reuses) a labelled zoo of small generators.

  python -m revgm_jax.zoo build --preset default --out DIR
  python -m revgm_jax.zoo build --preset tiny --zoo.images_per_gm=100 --zoo.widths=8 \
      --zoo.widths=16                       # any preset field, as --config.<field> in train.py

Without --out the zoo goes to $REVGM_CACHE/zoo/<preset>-<config hash>. The fields and what they
mean are in revgm_jax/zoo/presets.py; the build is revgm_jax/zoo/build.py.
"""

from __future__ import annotations

import sys

from absl import flags
import ml_collections
from ml_collections import config_flags

from revgm_jax import config_utils
from revgm_jax.cli import cli_flags
from revgm_jax.zoo import presets

PROG = "python -m revgm_jax.zoo"
USAGE = f"usage: {PROG} build [--preset tiny|default|full] [--out DIR] [--zoo.<field>=<value> ...]"


def build_config(args: list[str]) -> tuple[flags.FlagValues, ml_collections.ConfigDict]:
  """The parsed flags of the arguments `args` and the zoo config they describe."""
  argv = [PROG, *args]
  fv = flags.FlagValues()
  flags.DEFINE_enum("preset", "default", presets.PRESETS, "Zoo preset the --zoo.* fields "
                    "override.", flag_values=fv)
  flags.DEFINE_string("out", "", "Output directory (default: the cache directory "
                      "$REVGM_CACHE/zoo/<preset>-<config hash>).", flag_values=fv)
  flags.DEFINE_integer("process_index", None, "This host's share of the GMs (default: JAX's).",
                       lower_bound=0, flag_values=fv)
  flags.DEFINE_integer("process_count", None, "Hosts sharing the build (default: JAX's).",
                       lower_bound=1, flag_values=fv)
  cli_flags.define_config_dict(
      "zoo", presets.get_preset("default"), "Zoo fields, overridden as --zoo.<field>=<value> "
      "on the --preset.", flag_values=fv, sys_argv=argv, lock_config=True)
  command = cli_flags.parse_command(fv, argv, f"{USAGE}\n\n{__doc__}")
  if command != ["build"]:
    cli_flags.fail(f"expected the command build, got {' '.join(command) or 'none'}; {USAGE}")
  overrides = config_flags.get_override_values(fv["zoo"])
  if "preset" in overrides:
    cli_flags.fail("--zoo.preset: choose the preset with --preset")
  return fv, config_utils.with_overrides(presets.get_preset(fv.preset), overrides, "--zoo")


def main(args: list[str] | None = None):
  """`python -m revgm_jax.zoo build ARGS`; bad flags, fields or values end in one line."""
  fv, cfg = build_config(sys.argv[1:] if args is None else args)
  from revgm_jax.zoo import build  # pylint: disable=g-import-not-at-top (imports JAX)
  try:
    build.validate(cfg)
  except ValueError as e:
    cli_flags.fail(str(e))
  out = fv.out or build.default_zoo_dir(cfg)
  try:
    build.build_zoo(cfg, out, fv.process_index, fv.process_count)
  except ValueError as e:  # --out holds another zoo, or a GM folder was changed by hand
    sys.exit(f"zoo build: {e}")
  print(out)


if __name__ == "__main__":
  main()
