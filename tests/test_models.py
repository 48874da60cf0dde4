"""FEN, parser and RevGM: shapes, flatten size, PyTorch-equivalent init, BatchNorm semantics."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from revgm_jax import labels
from revgm_jax.models import model as model_lib
from revgm_jax.models.fen import FEN
from revgm_jax.models.parser import Parser, encoder_output_size

# rbg keys: far cheaper to compile than threefry for the many small init shapes.
KEYS = {"params": jax.random.key(0, impl="rbg"), "dropout": jax.random.key(1, impl="rbg")}


def tiny_config(**model):
  cfg = dict(fen_depth=3, fen_width=4, bn_momentum=0.9, bn_epsilon=1e-5,
             parser_widths=(4, 4, 4, 4, 8), fc_width=8, branch_widths=(8, 4), dropout=0.5,
             share_branch=False, head_activation="logits", dtype="float32")
  cfg.update(model)
  return ml_collections.ConfigDict(dict(model=cfg))


def init(module, x):
  return module.init(KEYS, x, train=False)


def images(b, h, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(b, h, h, 3)), jnp.float32)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_output_shapes_and_encoder_output_size(size):
  space = labels.get_space("red116")
  model = model_lib.create_model(tiny_config(), space)
  x = images(2, size)
  variables = init(model, x)
  f, out = model.apply(variables, x, train=False)
  assert f.shape == x.shape and f.dtype == jnp.float32
  assert out["cont"].shape == (2, 9)
  assert [o.shape for o in out["disc"]] == [(2, 4), (2, 4), (2, 4), (2, 2), (2, 2), (2, 2)]
  assert out["group"].shape == (2, 3, 2) and out["loss"].shape == (2, 10, 2)
  fc = variables["params"]["parser"]["fc"]["kernel"]
  assert fc.shape == (encoder_output_size(size, 5) ** 2 * 8, 8)


def test_encoder_output_of_the_paper_encoder_at_64():
  assert [encoder_output_size(64, k) for k in range(6)] == [64, 33, 17, 9, 5, 3]
  assert encoder_output_size(64, 5) ** 2 * 512 == 4608
  parser = Parser(space=labels.get_space("red116"))
  shapes = jax.eval_shape(lambda x: parser.init(KEYS, x, train=False), jnp.zeros((1, 64, 64, 3)))
  assert shapes["params"]["fc"]["kernel"].shape == (4608, 512)


def test_v1_space_head_sizes():
  model = model_lib.create_model(tiny_config(), labels.get_space("v1"))
  x = images(2, 32)
  _, out = model.apply(init(model, x), x, train=False)
  assert out["group"].shape == (2, 3, 2) and out["loss"].shape == (2, 8, 2)


@pytest.mark.parametrize("share", [False, True])
def test_branches(share):
  model = model_lib.create_model(tiny_config(share_branch=share), labels.get_space("zoo"))
  params = init(model, images(1, 32))["params"]["parser"]
  branches = sorted({k.split("_fc")[0] for k in params if k.startswith("branch_")})
  assert branches == (["branch_0"] if share else ["branch_0", "branch_1", "branch_2"])
  # Every head reads a branch_widths[-1]-wide feature.
  assert params["loss_head"]["kernel"].shape == (4, 20)


def test_init_statistics_match_pytorch():
  fen = FEN(depth=3, width=64)
  params = init(fen, images(1, 8))["params"]
  w = np.asarray(params["conv_1"]["kernel"])  # [3, 3, 64, 64], fan_in 576
  std = np.sqrt(2.0 / 576)
  assert abs(w.std() / std - 1) < 0.03 and abs(w.mean()) < 0.03 * std
  assert np.abs(w).max() > 3 * std  # untruncated (Flax's he_normal stops near 2 std)
  bias = np.asarray(params["conv_1"]["bias"])
  assert np.abs(bias).max() <= 1 / np.sqrt(576) and np.abs(bias).max() > 0.5 / np.sqrt(576)
  np.testing.assert_array_equal(params["bn_1"]["scale"], 1.0)
  np.testing.assert_array_equal(params["bn_1"]["bias"], 0.0)
  # Parser layers: PyTorch's default U(+-1/sqrt(fan_in)) for weights and biases.
  parser = Parser(space=labels.get_space("zoo"), widths=(64, 64, 4, 4, 4), fc_width=8)
  p = init(parser, images(1, 8))["params"]
  k = np.asarray(p["conv_1"]["kernel"])
  bound = 1 / np.sqrt(576)
  assert np.abs(k).max() <= bound and abs(k.std() / (bound / np.sqrt(3)) - 1) < 0.03


def test_batchnorm_momentum_is_pytorch_0_1():
  fen = FEN(depth=3, width=4)
  x = images(4, 8)
  variables = init(fen, x)
  _, state = fen.apply(variables, x, train=True, mutable=["batch_stats", "intermediates"],
                       capture_intermediates=True)
  h = np.asarray(state["intermediates"]["conv_1"]["__call__"][0])  # BN input [4, 8, 8, 4]
  stats = state["batch_stats"]["bn_1"]
  # running = 0.9 running + 0.1 batch, from mean 0 / var 1 (PyTorch momentum 0.1).
  np.testing.assert_allclose(stats["mean"], 0.1 * h.mean((0, 1, 2)), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * h.var((0, 1, 2)), rtol=1e-4)
  # Eval uses the running averages and changes nothing.
  f_eval, state = fen.apply(variables, x, train=False, mutable=["batch_stats"])
  np.testing.assert_array_equal(state["batch_stats"]["bn_1"]["mean"], 0.0)
  assert not np.allclose(f_eval, fen.apply(variables, x, train=True, mutable=["batch_stats"])[0])


def test_cross_device_batchnorm_equals_one_device():
  x = images(16, 8)
  variables = init(FEN(depth=4, width=4), x)
  fen = FEN(depth=4, width=4, axis_name="data")
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))

  def step(variables, x):
    f, state = fen.apply(variables, x, train=True, mutable=["batch_stats"])
    return f, state["batch_stats"]

  sharded = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P(), P("data")),
                                  out_specs=(P("data"), P())))
  f8, stats8 = sharded(variables, x)
  f1, state1 = FEN(depth=4, width=4).apply(variables, x, train=True, mutable=["batch_stats"])
  np.testing.assert_allclose(f8, f1, rtol=1e-4, atol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               stats8, state1["batch_stats"])


def test_dropout_only_in_training():
  model = model_lib.create_model(tiny_config(dropout=0.5), labels.get_space("zoo"))
  x = images(2, 32)
  variables = init(model, x)
  apply = lambda seed: model.apply(variables, x, train=True, mutable=["batch_stats"],
                                   rngs={"dropout": jax.random.key(seed, impl="rbg")})[0][1]["cont"]
  assert not np.allclose(apply(1), apply(2))
  np.testing.assert_array_equal(model.apply(variables, x, train=False)[1]["cont"],
                                model.apply(variables, x, train=False)[1]["cont"])


def test_bfloat16_trunks_keep_float32_params_and_outputs():
  model = model_lib.create_model(tiny_config(dtype="bfloat16"), labels.get_space("zoo"))
  x = images(2, 32)
  variables = init(model, x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  f, out = model.apply(variables, x, train=False)
  assert f.dtype == jnp.float32 and all(o.dtype == jnp.float32 for o in jax.tree.leaves(out))
  f32, _ = model_lib.create_model(tiny_config(), labels.get_space("zoo")).apply(
      variables, x, train=False)
  np.testing.assert_allclose(f, f32, atol=0.05 * float(jnp.abs(f32).max()))


def test_bad_config_values_are_clear_errors():
  with pytest.raises(ValueError, match="config.model.dtype"):
    model_lib.create_model(tiny_config(dtype="float16"), labels.get_space("zoo"))
  with pytest.raises(ValueError, match="config.model.fen_depth"):
    init(FEN(depth=1), images(1, 8))


def test_continuous_head_starts_at_the_training_mean_and_red116_keeps_torch_init():
  """cont_bias_init="mean": before any step the continuous head answers the mean-value baseline
  of the training GMs (a column constant at 0 answers ~0), whatever the image."""
  space = labels.get_space("zoo")
  net = np.zeros((4, 15), np.float32)
  net[:, :9] = np.array([[0.0, 1.0, 0.2, 0, 0, 0, 0, 0, 0], [0.0, 1.0, 0.4, 0, 0, 0, 0, 0, 0],
                         [0.0, 1.0, 0.6, 0, 0, 0, 0, 0, 0], [0.0, 0.0, 0.9, 0, 0, 0, 0, 0, 0]])
  gt = labels.GroundTruth(space=space, names=("a", "b", "c", "test"), net=net,
                          loss=np.zeros((4, 10), np.int32), loss_group=np.zeros((4, 3), np.int32),
                          test_set=np.array([0, 0, 0, 1], np.int32))
  cfg = tiny_config(cont_bias_init="mean")
  bias = model_lib.cont_bias(cfg, gt, ["a", "b", "c"])  # the test GM is left out of the mean
  model = model_lib.create_model(cfg, space, cont_bias_init=bias)
  variables = init(model, images(2, 32))
  cont_head = variables["params"]["parser"]["cont_head"]
  # Zero weights isolate the bias: the output is then sigmoid(bias) for every image.
  params = jax.tree.map(lambda a: a, variables["params"])
  params["parser"]["cont_head"] = {"kernel": jnp.zeros_like(cont_head["kernel"]),
                                   "bias": cont_head["bias"]}
  _, out = model.apply({**variables, "params": params}, images(2, 32, seed=1), train=False)
  np.testing.assert_allclose(jax.nn.sigmoid(out["cont"]),
                             np.tile([1e-3, 1 - 1e-3, 0.4, *[1e-3] * 6], (2, 1)), atol=1e-6)
  assert model_lib.cont_bias(tiny_config(cont_bias_init="torch"), gt, ["a"]) is None
  from configs import red116  # pylint: disable=g-import-not-at-top
  assert red116.get_config().model.cont_bias_init == "torch"
  with pytest.raises(ValueError, match="config.model.cont_bias_init='zero'"):
    model_lib.cont_bias(tiny_config(cont_bias_init="zero"), gt, ["a"])
