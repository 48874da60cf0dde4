"""The trainer's data steps for the tests of the data: prepare -> split -> datasets."""

import jax

from revgm_jax import input_pipeline
from revgm_jax.data import prepare, splits


def datasets(config, mesh: jax.sharding.Mesh) -> input_pipeline.Datasets:
  """The `input_pipeline.Datasets` that `train_lib.train_and_evaluate` builds for `config`
  (after `config_check.check_config`, which the tests of refusals call themselves)."""
  prepared = prepare.prepare(config)
  return input_pipeline.get_datasets(config, prepared, splits.draw(config, prepared), mesh)
