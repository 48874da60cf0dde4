"""The PyTorch peer of benchmarks/ computes the same losses as ours (same work is compared)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax.numpy as jnp  # noqa: E402

from support import tiny_run  # noqa: E402
from benchmarks import torch_step  # noqa: E402
from revgm_jax import config_utils, labels  # noqa: E402
from revgm_jax.losses import constraints, parsing  # noqa: E402


@pytest.mark.parametrize("rep_clip", [1e4, 0.5])  # 0.5 < the high-band max: the clamp acts
def test_constraint_terms_match(rep_clip):
  rng = np.random.default_rng(0)
  fp = rng.normal(scale=0.05, size=(3, 64, 64, 3)).astype(np.float32)  # [B, H, W, 3]
  ours = constraints.constraint_terms(jnp.asarray(fp), 25, rep_clip)
  peer = torch_step.constraint_terms(torch.from_numpy(fp).permute(0, 3, 1, 2), 25, rep_clip)
  for k in ("mag", "spec", "sym", "rep", "rep_unclamped"):
    np.testing.assert_allclose(float(peer[k]), float(ours[k]), rtol=1e-5, err_msg=k)
  assert float(ours["rep"]) == pytest.approx(min(rep_clip, float(ours["rep_unclamped"])))
  cfg = config_utils.load_config(tiny_run.DEFAULT, {"loss.fen_terms": "mag,sym,rep"}).loss
  np.testing.assert_allclose(float(torch_step.fen_loss(peer, cfg)),
                             float(constraints.fen_loss(ours, cfg)), rtol=1e-5)


def test_parsing_loss_matches():
  space = labels.get_space("red116")
  b, rng = 8, np.random.default_rng(1)
  outputs = {
      "cont": rng.normal(size=(b, 9)), "group": rng.normal(size=(b, space.num_groups, 2)),
      "loss": rng.normal(size=(b, space.num_loss_types, 2)),
      "disc": tuple(rng.normal(size=(b, k)) for k in space.discrete_classes)}
  targets = torch_step.random_batch(space, b, 8, seed=2)
  weights = {"disc": [rng.uniform(0.5, 3, k) for k in space.discrete_classes],
             "group": [rng.uniform(0.5, 3, 2) for _ in range(space.num_groups)],
             "loss": [rng.uniform(0.5, 3, 2) for _ in range(space.num_loss_types)]}
  cfg = config_utils.load_config(tiny_run.DEFAULT).loss
  ours, _ = parsing.parsing_loss(
      {k: (tuple(jnp.asarray(z, jnp.float32) for z in v) if k == "disc"
           else jnp.asarray(v, jnp.float32)) for k, v in outputs.items()},
      {k: jnp.asarray(targets[k].numpy()) for k in ("net", "loss", "loss_group")},
      weights, cfg, space, "logits")
  peer = torch_step.parsing_loss(
      {k: (tuple(torch.tensor(z, dtype=torch.float32) for z in v) if k == "disc"
           else torch.tensor(v, dtype=torch.float32)) for k, v in outputs.items()},
      targets, torch_step.class_weights_tensors(weights), cfg, space)
  np.testing.assert_allclose(float(peer), float(ours), rtol=1e-5)
