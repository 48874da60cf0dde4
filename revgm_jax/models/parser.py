"""Parsing network (PN): the CNN encoder and the multi-head MLP of docs/model.md#parser."""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from revgm_jax.labels import Space
from revgm_jax.models.layers import TORCH_DEFAULT_KERNEL, Conv3x3, torch_bias_init


def encoder_output_size(image_size: int, num_blocks: int = 5) -> int:
  """Side of the encoder's last feature map: each block pads by 2 (+2) then max-pools (floor)."""
  for _ in range(num_blocks):
    image_size = (image_size + 2) // 2
  return image_size


def _dense(x, features: int, dtype: Any, name: str, bias: Sequence[float] | None = None):
  """nn.Dense with PyTorch's default nn.Linear init, as in the official parsing network, or
  the given initial bias.

  Called inside a compact method, so the layer becomes a child of that module.
  """
  bias_init = (torch_bias_init(x.shape[-1]) if bias is None else
               lambda key, shape, dtype=jnp.float32: jnp.asarray(bias, dtype).reshape(shape))
  return nn.Dense(features, kernel_init=TORCH_DEFAULT_KERNEL, bias_init=bias_init, dtype=dtype,
                  param_dtype=jnp.float32, name=name)(x)


class Parser(nn.Module):
  """Encoder (conv 3x3 pad 2 -> ReLU -> maxpool 2x2, per width) -> dropout -> FC -> heads.

  Branches (FC -> ReLU per `branch_widths`) feed the heads: branch 0 the architecture heads,
  branch 1 the coarse loss-group heads, branch 2 the fine loss-type heads; with
  `share_branch` every head reads branch 0, as the official code does
  (docs/official_code.md#d1-shared-branch).
  Head sizes come from `space`. Outputs are raw logits; the head activation (gating, the
  official sigmoid-then-CE) lives in `revgm_jax.losses.parsing`. Dropout needs the
  "dropout" rng when `train` is True. `cont_bias` ([9] or None: PyTorch's init) is the initial
  bias of the continuous head (`models.model.cont_bias`).
  """
  space: Space
  widths: Sequence[int] = (32, 64, 128, 256, 512)
  fc_width: int = 512
  branch_widths: Sequence[int] = (256, 64)
  dropout: float = 0.5
  share_branch: bool = False
  cont_bias: Sequence[float] | None = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, f, train: bool):  # f: [B, H, W, 3] fingerprint
    x = f
    for i, width in enumerate(self.widths):
      x = nn.relu(Conv3x3(width, pad=2, kernel_init=TORCH_DEFAULT_KERNEL, dtype=self.dtype,
                          name=f"conv_{i}")(x))
      x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
    x = x.reshape(x.shape[0], -1)  # [B, encoder_output_size ** 2 * widths[-1]]
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.relu(_dense(x, self.fc_width, self.dtype, "fc"))  # [B, fc_width]

    def branch(b):  # [B, fc_width] -> [B, branch_widths[-1]]
      h = x
      for i, width in enumerate(self.branch_widths):
        h = nn.relu(_dense(h, width, self.dtype, f"branch_{b}_fc{i}"))
      return h

    def logits(h, n, name, bias=None):
      return _dense(h, n, self.dtype, name, bias).astype(jnp.float32)

    h_net = branch(0)
    h_group = h_net if self.share_branch else branch(1)
    h_loss = h_net if self.share_branch else branch(2)
    s = self.space
    # The G group heads (L loss-type heads) of 2 logits each are one Dense of 2G (2L) outputs:
    # the same maths and init as separate layers, in one matmul.
    return {
        "cont": logits(h_net, s.num_continuous, "cont_head", self.cont_bias),  # [B, 9]
        "disc": tuple(logits(h_net, k, f"disc_head_{j}")  # 6 x [B, k]
                      for j, k in enumerate(s.discrete_classes)),
        "group": logits(h_group, 2 * s.num_groups, "group_head").reshape(-1, s.num_groups, 2),
        "loss": logits(h_loss, 2 * s.num_loss_types, "loss_head").reshape(
            -1, s.num_loss_types, 2),
    }
