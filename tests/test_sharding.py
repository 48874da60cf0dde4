"""The mesh module: batch-size checks and host <-> mesh transfers on 8 simulated devices."""

import os

import jax
import numpy as np
import pytest

from revgm_jax import config_check, config_utils, sharding

DEFAULT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs",
                       "default.py")


def test_mesh_spans_every_device_on_one_axis():
  mesh = sharding.make_mesh()
  assert mesh.axis_names == (sharding.AXIS,) and sharding.num_devices(mesh) == 8
  assert sharding.num_devices(sharding.make_mesh(jax.devices()[:2])) == 2


def test_batch_size_must_split_over_the_devices():
  config = config_utils.load_config(DEFAULT, {"batch_size": 16, "eval_batch_size": 16})
  config_check.check_config(config, 8)
  for bad in (12, 0):
    config.eval_batch_size = bad
    with pytest.raises(config_utils.ConfigError, match=rf"config.eval_batch_size={bad} is not "
                                                       "divisible by the 8 devices"):
      config_check.check_config(config, 8)


def test_host_batch_round_trip_keeps_rows_in_order():
  mesh = sharding.make_mesh()
  batch = {"image": np.arange(16 * 3, dtype=np.float32).reshape(16, 3),
           "mask": np.arange(16) % 3 > 0}
  arrays = sharding.host_batch_to_global(batch, mesh)
  assert arrays["image"].sharding.spec == jax.sharding.PartitionSpec(sharding.AXIS)
  assert len(arrays["image"].addressable_shards) == 8
  back = sharding.gather_to_host(arrays)
  for k in batch:
    np.testing.assert_array_equal(back[k], batch[k])


def test_replicated_values_and_keys_equal_their_host_versions():
  mesh = sharding.make_mesh()
  tree = {"w": np.ones((2, 3), np.float32), "step": np.int32(5)}
  out = sharding.replicate(tree, mesh)
  assert out["w"].sharding.is_fully_replicated
  np.testing.assert_array_equal(sharding.to_host(out)["w"], tree["w"])
  data = np.asarray(jax.random.key_data(jax.random.split(jax.random.key(7))))
  keys = sharding.replicated_key(data, mesh)
  assert keys.sharding.is_fully_replicated
  np.testing.assert_array_equal(jax.random.key_data(keys), data)
