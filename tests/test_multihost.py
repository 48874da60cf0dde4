"""Multi-process JAX jobs: the settings that start one."""

import pytest

from revgm_jax import distributed
import tiny_run


def test_half_given_distributed_settings_name_the_missing_fields(monkeypatch):
  for var in distributed.ENV.values():
    monkeypatch.delenv(var, raising=False)
  cfg = tiny_run.default.get_config().distributed
  assert not distributed.initialize(cfg)  # the defaults: a single-process run
  cfg.coordinator_address = "10.0.0.1:1234"
  with pytest.raises(ValueError, match=r"coordinator_address set but not num_processes, "
                     "process_id"):
    distributed.initialize(cfg)
  monkeypatch.setenv(distributed.ENV["process_id"], "1")
  with pytest.raises(ValueError, match=r"REVGM_PROCESS_ID.*process_id set but not "
                     "coordinator_address, num_processes"):
    distributed.initialize()
