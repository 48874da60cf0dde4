"""Our training step as a contender: compiled once, then timed (peer: `torch_step.py`)."""

import time

from benchmarks import step_settings


class JaxStep:
  """Our training step on a random global batch, state donated and fed back."""

  def __init__(self, config, devices, count_flops: bool = True):
    import jax
    import numpy as np
    from revgm_jax import labels, sharding, steps
    from revgm_jax import tasks
    from revgm_jax.models import model as model_lib

    self.jax = jax
    space = labels.get_space(config.data.space)
    s, b = config.image_size, config.batch_size
    self.mesh = sharding.make_mesh(devices)
    model = model_lib.create_model(config, space, axis_name=sharding.AXIS)
    tx = steps.make_optimizer(config.optim)
    task = tasks.get(config, space, step_settings.synthetic_class_weights(space))
    step = steps.make_train_step(task, model, tx, self.mesh)
    self.state = steps.create_train_state(jax.random.key(config.seed), model, tx,
                                          (s, s, 3), self.mesh)
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.normal(size=(b, s, s, 3)).astype(np.float32),
        "net": np.concatenate(
            [rng.uniform(size=(b, space.num_continuous)),
             np.stack([rng.integers(0, k, b) for k in space.discrete_classes], 1)],
            1).astype(np.float32),
        "loss": rng.integers(0, 2, (b, space.num_loss_types)).astype(np.int32),
        "loss_group": rng.integers(0, 2, (b, space.num_groups)).astype(np.int32),
        "gm_row": np.zeros((b,), np.int32),
        "mask": np.ones((b,), bool),
    }
    self.batch = sharding.host_batch_to_global(batch, self.mesh)
    self.rng = jax.random.key(1)
    t = time.perf_counter()
    lowered = step.lower(self.state, self.batch, self.rng)
    self.compiled = lowered.compile()
    self.compile_s = time.perf_counter() - t
    mem = self.compiled.memory_analysis()
    self.xla_bytes = (mem.temp_size_in_bytes + mem.argument_size_in_bytes
                      + mem.output_size_in_bytes - mem.alias_size_in_bytes) if mem else 0
    self.flops_per_device_step = float("nan")
    if not count_flops:
      return
    # Model FLOPs: XLA's cost analysis of the step's per-device program before optimisation
    # (library fusions such as YNNPACK's hide their FLOPs from the compiled program's).
    cost = lowered.cost_analysis()
    self.flops_per_device_step = float(cost["flops"])

  def run(self, n: int):
    for _ in range(n):
      self.state, metrics = self.compiled(self.state, self.batch, self.rng)
    self.jax.block_until_ready((self.state, metrics))
    return metrics
