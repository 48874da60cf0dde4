"""The data-parallel mesh and every move of values between hosts and the global mesh.

One 1-D mesh with axis `AXIS` spans every device of every process (docs/jax_notes.md#multi-host,
#global-batches). Values enter it in two ways only:
  - per-host batches, split along `AXIS` (`host_batch_to_global`): each process hands in its
    own rows, the global batch is their concatenation in process order;
  - replicated values that every process computes identically (`replicate`, `replicated_key`).
Both work when the mesh spans processes, where `jax.device_put` onto a non-addressable
sharding does not. Values leave it the same two ways (`gather_to_host`, `to_host`).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec as P
import numpy as np

AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """1-D data-parallel mesh over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else list(devices)
  return jax.make_mesh((len(devices),), (AXIS,), axis_types=(jax.sharding.AxisType.Explicit,),
                       devices=devices)


def num_devices(mesh: jax.sharding.Mesh) -> int:
  return mesh.shape[AXIS]


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def replicated_target(tree, mesh: jax.sharding.Mesh):
  """Abstract restore target: every leaf's shape and dtype, replicated over `mesh`."""
  sharding_ = replicated(mesh)
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding_), tree)


def batch_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXIS))


def host_batch_to_global(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh
                         ) -> dict[str, jax.Array]:
  """This process's rows of a batch -> global arrays sharded along `AXIS`."""
  sharding = batch_sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def replicate(tree: Any, mesh: jax.sharding.Mesh) -> Any:
  """Host values, identical on every process -> arrays replicated over the mesh."""
  sharding = replicated(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      tree)


def replicated_key(key_data: np.ndarray, mesh: jax.sharding.Mesh) -> jax.Array:
  """A random key from its raw data (`jax.random.key_data`, identical on every process),
  replicated over the mesh (typed key arrays cannot come from host data themselves)."""
  return jax.random.wrap_key_data(replicate(key_data, mesh))


def to_host(tree: Any) -> Any:
  """Replicated arrays -> NumPy on this process (its local copy; no communication)."""
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)


def gather_to_host(tree: Any) -> Any:
  """Arrays sharded along `AXIS` -> the whole global arrays as NumPy, on every process."""
  return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))
