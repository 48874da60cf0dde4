"""Orbax checkpoints of a workdir: keep-N, best manager, restore onto other device counts, a
failed write, the step the processes of a job agree on."""

import errno
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from etils import epath
from jax.sharding import NamedSharding, PartitionSpec as P

from revgm_jax import checkpointing, labels, sharding
from revgm_jax.runtime import distributed
from revgm_jax.data import splits
from revgm_jax import workdir as workdir_lib
from revgm_jax.sharding import make_mesh
from revgm_jax.steps import TrainState


class _Net(nn.Module):  # any module with params and batch_stats, as the FEN has
  @nn.compact
  def __call__(self, x):
    x = nn.BatchNorm(use_running_average=True)(nn.Dense(4)(x))
    return nn.Dense(2)(x)


def _state(mesh, seed=0) -> TrainState:
  v = _Net().init(jax.random.key(seed), jnp.ones((1, 3)))
  tx = optax.chain(optax.add_decayed_weights(1e-4), optax.adam(1e-3))
  # Non-trivial values everywhere, so that a wrong restore cannot pass by accident.
  params = jax.tree.map(lambda x: x + 0.5, v["params"])
  stats = jax.tree.map(lambda x: x + 0.25, v["batch_stats"])
  opt = tx.init(params)
  opt = jax.tree.map(lambda x: x + 1 if x.dtype == jnp.float32 else x + 3, opt)
  state = TrainState(step=jnp.int32(7), params=params, batch_stats=stats, opt_state=opt)
  return jax.device_put(state, NamedSharding(mesh, P()))


def _assert_same(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.parametrize("n_restore", [2, 1])
def test_restore_onto_fewer_devices(tmp_path, n_restore):
  saved = _state(make_mesh())
  assert len(jax.tree.leaves(saved)[0].sharding.device_set) == 8
  ckpt = checkpointing.Checkpoints(str(tmp_path), every_steps=1, keep=2)
  ckpt.save(saved, {"step": 7, "best": {"step": 5, "score": 0.5}})
  ckpt.close()

  mesh = make_mesh(jax.devices()[:n_restore])
  ckpt = checkpointing.Checkpoints(str(tmp_path), every_steps=1, keep=2)
  state, progress = ckpt.restore_latest(sharding.replicated_target(_state(mesh, 1), mesh))
  ckpt.close()
  _assert_same(state, saved)
  assert progress == {"step": 7, "best": {"step": 5, "score": 0.5}}
  for leaf in jax.tree.leaves(state):
    assert leaf.sharding == NamedSharding(mesh, P())


def test_periodic_keep_and_best(tmp_path):
  mesh = make_mesh(jax.devices()[:1])
  state = _state(mesh)
  ckpt = checkpointing.Checkpoints(str(tmp_path), every_steps=2, keep=2)
  assert ckpt.restore_latest(sharding.replicated_target(state, mesh)) is None
  for step in range(1, 8):
    if ckpt.should_save(step):
      ckpt.save(state.replace(step=jnp.int32(step)), {"step": step})
  ckpt.save_best(state, {"step": 3, "val": {"score": 1.0}})
  ckpt.save_best(state, {"step": 6, "val": {"score": 2.0}})
  ckpt.wait()
  assert list(ckpt.latest.all_steps()) == [4, 6]
  assert list(ckpt.best.all_steps()) == [6]
  ckpt.drop_best_after(5)  # a resumed run from step 5 reaches step 6 again
  assert list(ckpt.best.all_steps()) == []
  ckpt.close()

  target = sharding.replicated_target({"params": state.params,
                                            "batch_stats": state.batch_stats}, mesh)
  variables, progress = checkpointing.restore_variables(str(tmp_path), target, "latest")
  _assert_same(variables, {"params": state.params, "batch_stats": state.batch_stats})
  assert progress == {"step": 6}
  with pytest.raises(FileNotFoundError, match="no checkpoint"):
    checkpointing.restore_variables(str(tmp_path), target, "best")
  with pytest.raises(ValueError, match="which must be"):
    checkpointing.restore_variables(str(tmp_path), target, "first")


def test_run_info_round_trip(tmp_path, red116_dir):
  gt = labels.load_ground_truth(str(red116_dir), "red116")
  split = splits.split_gms(gt, 1, num_val_gms=4, seed=1)
  weights = labels.class_weights(gt, gt.rows(split["train"]))
  config = ml_collections.ConfigDict({"seed": 1, "model": {"parser_widths": (8, 8)}})
  workdir_lib.write_run_info(str(tmp_path), config, gt, split, weights)

  assert workdir_lib.load_config(str(tmp_path)).to_dict() == {
      "seed": 1, "model": {"parser_widths": [8, 8]}}
  workdir_lib.check_same_run(str(tmp_path), config)
  config.log_every_steps = 10  # not a data, label or model field: resuming under it is allowed
  workdir_lib.check_same_run(str(tmp_path), config)
  config.model.parser_widths = (8, 16)
  with pytest.raises(workdir_lib.WorkdirError, match=r"another config \(model.parser_widths: "
                                                  r"\[8, 8\] -> \[8, 16\]\); .* new --workdir"):
    workdir_lib.check_same_run(str(tmp_path), config)
  info, gt2 = workdir_lib.load_run_info(str(tmp_path))
  assert info["space"] == "red116" and info["split"] == split
  np.testing.assert_allclose(info["class_weights"]["disc"][0], weights["disc"][0])
  assert gt2.names == gt.names
  np.testing.assert_array_equal(gt2.net, gt.net)
  np.testing.assert_allclose(gt2.cont_max, gt.cont_max)
  with pytest.raises(FileNotFoundError, match="not a training workdir"):
    workdir_lib.load_config(str(tmp_path / "nothing"))


def test_a_write_that_fails_in_orbax_s_thread_is_named_at_the_next_save_or_wait(tmp_path,
                                                                               monkeypatch):
  """Orbax writes in a background thread and re-raises its error later: at the next save of the
  manager or at the final wait, each a WriteError naming the step that was not written."""
  path_type = type(epath.Path(str(tmp_path)))
  write_text = path_type.write_text

  def full_disk(self, *args, **kwargs):  # orbax writes the progress item with write_text
    if "progress" in str(self):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
    return write_text(self, *args, **kwargs)

  monkeypatch.setattr(path_type, "write_text", full_disk)
  state = _state(make_mesh())
  ckpt = checkpointing.Checkpoints(str(tmp_path), every_steps=1, keep=2)
  ckpt.save(state, {"step": 7})
  with pytest.raises(workdir_lib.WriteError, match=rf"^cannot write the checkpoint "
                     rf"{tmp_path}/latest/7: No space left on device$"):
    ckpt.save(state, {"step": 8})
  ckpt.save_best(state, {"step": 8})
  with pytest.raises(workdir_lib.WriteError, match=rf"{tmp_path}/best/8: No space left"):
    ckpt.wait()
  ckpt.close()
  assert not os.path.exists(tmp_path / "latest" / "7")  # nothing half-written passes for a step


def test_a_step_that_fails_on_another_process_is_given_up_by_all(tmp_path, monkeypatch):
  """Every process resumes from the same step: here another process (simulated) fails to
  restore step 4 and restores 2, so this process restores 2 as well and moves 4 aside."""
  mesh = make_mesh(jax.devices()[:1])
  ckpt = checkpointing.Checkpoints(str(tmp_path), every_steps=2, keep=3)
  for step in (2, 4):
    ckpt.save(_state(mesh).replace(step=jnp.int32(step)), {"step": step})
  ckpt.close()
  monkeypatch.setattr(distributed, "process_values", lambda v: [v, min(v, 2)])
  ckpt = checkpointing.Checkpoints(str(tmp_path), every_steps=2, keep=3)
  state, progress = ckpt.restore_latest(sharding.replicated_target(_state(mesh, 1), mesh))
  assert (progress["step"], int(state.step)) == (2, 2)
  assert list(ckpt.latest.all_steps()) == [2]
  assert os.path.isdir(tmp_path / "corrupt" / "latest-4")
  ckpt.close()
