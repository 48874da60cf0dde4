"""The settings both contenders' steps are built from, so that they time the same work."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bench_config(image_size: int, batch_size: int, dtype: str):
  """The paper's settings (configs/red116.py) at another image/batch size."""
  from revgm_jax import config_utils
  return config_utils.load_config(os.path.join(REPO, "configs", "red116.py"), {
      "image_size": image_size, "batch_size": batch_size, "model.dtype": dtype})


def synthetic_class_weights(space):
  """Unequal class weights with the layout of `labels.class_weights` (values set no speed)."""
  import numpy as np
  ramp = lambda k: np.linspace(1.0, 2.0, k, dtype=np.float32)  # noqa: E731
  return {"disc": [ramp(k) for k in space.discrete_classes],
          "group": [ramp(2)] * space.num_groups, "loss": [ramp(2)] * space.num_loss_types}
