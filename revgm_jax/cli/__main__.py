"""`python -m revgm_jax.cli COMMAND ...`, the same as `revgm COMMAND ...`."""

import sys

from revgm_jax.cli import main

sys.exit(main.main())
