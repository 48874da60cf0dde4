"""Parsing losses against PyTorch's definitions written out in NumPy; gating, mask, 8 devices."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from scipy.special import xlogy
import pytest
from jax.sharding import PartitionSpec as P

from revgm_jax import labels
from revgm_jax.losses import parsing

RED116 = labels.get_space("red116")


def loss_cfg(**kw):
  cfg = dict(continuous="mse", weighted_ce=True, w_cont=10.0, w_disc=10.0, w_group=10.0,
             w_loss=10.0)
  cfg.update(kw)
  return ml_collections.ConfigDict(cfg)


def random_outputs(rng, b, space, scale=2.0):
  def z(*shape):
    return (scale * rng.normal(size=shape)).astype(np.float32)
  return {"cont": z(b, 9), "disc": tuple(z(b, k) for k in space.discrete_classes),
          "group": z(b, space.num_groups, 2), "loss": z(b, space.num_loss_types, 2)}


def random_batch(rng, b, space):
  disc = np.stack([rng.integers(0, k, b) for k in space.discrete_classes], 1)
  return {"net": np.concatenate([rng.random((b, 9)), disc], 1).astype(np.float32),
          "loss": rng.integers(0, 2, (b, space.num_loss_types)).astype(np.int32),
          "loss_group": rng.integers(0, 2, (b, space.num_groups)).astype(np.int32),
          "mask": np.ones(b, bool)}


def random_weights(rng, space):
  w = lambda k: rng.uniform(0.5, 5.0, k).astype(np.float32)
  return {"disc": [w(k) for k in space.discrete_classes],
          "group": [w(2) for _ in range(space.num_groups)],
          "loss": [w(2) for _ in range(space.num_loss_types)]}


def np_log_softmax(z):
  z = np.asarray(z, np.float64)
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_sigmoid(z):
  return 1 / (1 + np.exp(-np.asarray(z, np.float64)))


def torch_weighted_ce(logits, y_true, w):
  """torch.nn.CrossEntropyLoss(weight=w, reduction="mean"): sum w[y] ce / sum w[y]."""
  ce = -np_log_softmax(logits)[np.arange(len(y_true)), y_true]
  return np.sum(w[y_true] * ce) / np.sum(w[y_true])


def numpy_loss(out, batch, cw, space, activation, weighted=True, continuous="mse"):
  """Every term of docs/losses.md#parsing-losses, one head at a time, the batch's mask applied."""
  keep = batch["mask"]
  out = jax.tree.map(lambda a: np.asarray(a, np.float64)[keep], out)
  batch = {k: v[keep] for k, v in batch.items()}
  cw = jax.tree.map(lambda a: a if weighted else np.ones_like(a), cw)
  act = np_sigmoid if activation == "official" else (lambda z: z)
  s, y = np_sigmoid(out["cont"]), batch["net"][:, :9]
  if continuous == "bce":  # KL(Bernoulli(y) || Bernoulli(s)), 0 at s = y
    kl = xlogy(y, y) - xlogy(y, s) + xlogy(1 - y, 1 - y) - xlogy(1 - y, 1 - s)
    t = {"cont": np.mean(kl)}
  else:
    t = {"cont": np.mean((s - y) ** 2 if continuous == "mse" else np.abs(s - y))}
  for j, name in enumerate(space.discrete_names):
    y_true = batch["net"][:, 9 + j].astype(int)
    t[f"disc/{name}"] = torch_weighted_ce(act(out["disc"][j]), y_true, cw["disc"][j])
  for g, name in enumerate(space.group_names):
    t[f"group/{name}"] = torch_weighted_ce(act(out["group"][:, g]), batch["loss_group"][:, g],
                                           cw["group"][g])
  for i, name in enumerate(space.loss_names):
    g = [gi for gi, members in enumerate(space.loss_groups) if i in members][0]
    y = batch["loss"][:, i]
    if activation == "official":
      gated = np_sigmoid(out["loss"][:, i]) * np_sigmoid(out["group"][:, g, 1:])
      t[f"loss/{name}"] = torch_weighted_ce(gated, y, cw["loss"][i])
    else:
      p = np.exp(np_log_softmax(out["loss"][:, i])[:, 1] + np_log_softmax(out["group"][:, g])[:, 1])
      bce = -(y * np.log(p) + (1 - y) * np.log(1 - p))
      w = cw["loss"][i][y]
      t[f"loss/{name}"] = np.sum(w * bce) / np.sum(w)
  t["disc"] = sum(t[f"disc/{n}"] for n in space.discrete_names)
  t["group"] = sum(t[f"group/{n}"] for n in space.group_names)
  t["loss"] = sum(t[f"loss/{n}"] for n in space.loss_names)
  t["parsing"] = 10 * (t["cont"] + t["disc"] + t["group"] + t["loss"])
  return t


def assert_terms_close(got, want, rtol=1e-5):
  assert set(got) == set(want)
  for k, v in want.items():
    np.testing.assert_allclose(got[k], v, rtol=rtol, atol=1e-6, err_msg=k)


def test_weighted_ce_hand_example():
  # Two examples of a 2-class head, class weights (1, 3):
  #   logits (0, 0),     target 0: ce = ln 2,     weight 1
  #   logits (0, ln 3),  target 1: ce = ln(4/3),  weight 3
  # PyTorch's weighted mean: (ln 2 + 3 ln(4/3)) / (1 + 3) = 0.3890481...
  rng = np.random.default_rng(0)
  out = random_outputs(rng, 2, RED116)
  out["disc"] = out["disc"][:3] + (np.array([[0.0, 0.0], [0.0, np.log(3.0)]], np.float32),
                                   ) + out["disc"][4:]
  batch = random_batch(rng, 2, RED116)
  batch["net"][:, 12] = [0, 1]
  cw = random_weights(rng, RED116)
  cw["disc"][3] = np.array([1.0, 3.0], np.float32)
  _, terms = parsing.parsing_loss(out, batch, cw, loss_cfg(), RED116, "logits")
  np.testing.assert_allclose(terms[f"disc/{RED116.discrete_names[3]}"], 0.3890481, rtol=1e-6)
  np.testing.assert_allclose((np.log(2) + 3 * np.log(4 / 3)) / 4, 0.3890481, rtol=1e-6)


@pytest.mark.parametrize("activation", ["logits", "official"])
@pytest.mark.parametrize("weighted,continuous", [(True, "mse"), (False, "l1"), (True, "bce")])
def test_every_term_matches_numpy(activation, weighted, continuous):
  rng = np.random.default_rng(1)
  out, batch, cw = random_outputs(rng, 6, RED116), random_batch(rng, 6, RED116), random_weights(
      rng, RED116)
  batch["net"][0, :2] = (0.0, 1.0)  # targets on the bounds, where many normalised values sit
  total, terms = parsing.parsing_loss(out, batch, cw, loss_cfg(weighted_ce=weighted,
                                                               continuous=continuous),
                                      RED116, activation)
  want = numpy_loss(out, batch, cw, RED116, activation, weighted, continuous)
  assert_terms_close(terms, want)
  np.testing.assert_allclose(total, want["parsing"], rtol=1e-5)


def test_family_weights_from_config():
  rng = np.random.default_rng(2)
  out, batch, cw = random_outputs(rng, 4, RED116), random_batch(rng, 4, RED116), random_weights(
      rng, RED116)
  total, t = parsing.parsing_loss(out, batch, cw, loss_cfg(w_cont=1.0, w_disc=2.0, w_group=0.0,
                                                           w_loss=3.0), RED116, "logits")
  np.testing.assert_allclose(total, t["cont"] + 2 * t["disc"] + 3 * t["loss"], rtol=1e-6)


def test_v1_space_groups_its_eight_loss_types():
  v1 = labels.get_space("v1")
  rng = np.random.default_rng(3)
  out, batch, cw = random_outputs(rng, 5, v1), random_batch(rng, 5, v1), random_weights(rng, v1)
  _, terms = parsing.parsing_loss(out, batch, cw, loss_cfg(), v1, "logits")
  assert_terms_close(terms, numpy_loss(out, batch, cw, v1, "logits"))
  pred = parsing.predictions(out, v1, "logits")
  assert pred["loss"].shape == (5, 8)
  # Fine type 7 (cross_entropy) is gated by group 2 alone.
  np.testing.assert_allclose(pred["loss"][:, 7], np.exp(np_log_softmax(out["loss"][:, 7])[:, 1])
                             * pred["group"][:, 2], rtol=1e-5)


def test_gated_predictions_never_exceed_their_group():
  rng = np.random.default_rng(4)
  out = random_outputs(rng, 32, RED116, scale=4.0)
  pred = parsing.predictions(out, RED116, "logits")
  group_of_fine = np.asarray(pred["group"])[:, RED116.group_of_loss]  # [B, L]
  assert np.all(np.asarray(pred["loss"]) <= group_of_fine + 1e-7)
  assert np.all((pred["cont"] >= 0) & (pred["cont"] <= 1))
  for p in pred["disc"]:
    np.testing.assert_allclose(np.sum(p, -1), 1.0, rtol=1e-6)
  # A group predicted "no" forces its fine types to "no", whatever their own heads say.
  out["group"][:, 0] = [10.0, -10.0]
  out["loss"][:, :4] = [-10.0, 10.0]
  assert np.all(np.asarray(parsing.predictions(out, RED116, "logits")["loss"])[:, :4] < 1e-8)


def test_official_activation_caps_confidence():
  # Sigmoid outputs used as logits: P(yes) of a 2-way head cannot pass e / (1 + e).
  rng = np.random.default_rng(5)
  out = random_outputs(rng, 8, RED116, scale=50.0)
  pred = parsing.predictions(out, RED116, "official")
  for p in (pred["group"], pred["loss"], *(d[:, 1] for d in pred["disc"][3:])):
    assert np.all(np.asarray(p) <= np.e / (1 + np.e) + 1e-6)
  np.testing.assert_allclose(
      pred["loss"], np.exp(np_log_softmax(np_sigmoid(out["loss"]) * np_sigmoid(
          out["group"][:, RED116.group_of_loss, 1:]))[..., 1]), rtol=1e-5)


def test_fine_loss_is_finite_at_saturated_logits():
  rng = np.random.default_rng(6)
  out, batch, cw = random_outputs(rng, 4, RED116, scale=300.0), random_batch(rng, 4, RED116), \
      random_weights(rng, RED116)
  f = lambda out: parsing.parsing_loss(out, batch, cw, loss_cfg(), RED116, "logits")[0]
  value, grads = jax.value_and_grad(f)(out)
  assert np.isfinite(value)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_mask_zeroes_padded_examples():
  rng = np.random.default_rng(7)
  out, batch, cw = random_outputs(rng, 7, RED116), random_batch(rng, 7, RED116), random_weights(
      rng, RED116)
  batch["mask"] = np.array([1, 1, 0, 1, 1, 0, 0], bool)
  for k in ("cont", "group", "loss"):
    out[k][~batch["mask"]] = 1e4  # garbage in the padding
  total, terms = parsing.parsing_loss(out, batch, cw, loss_cfg(), RED116, "logits")
  assert_terms_close(terms, numpy_loss(out, batch, cw, RED116, "logits"))
  keep = batch["mask"]
  sub = parsing.parsing_loss(jax.tree.map(lambda a: a[keep], out),
                             {k: v[keep] for k, v in batch.items()}, cw, loss_cfg(), RED116,
                             "logits")[0]
  np.testing.assert_allclose(total, sub, rtol=1e-6)


def test_class_absent_from_training_gives_zero_not_nan():
  rng = np.random.default_rng(8)
  out, batch, cw = random_outputs(rng, 4, RED116), random_batch(rng, 4, RED116), random_weights(
      rng, RED116)
  batch["loss_group"][:, 2] = 1
  cw["group"][2] = np.array([1.0, 0.0], np.float32)  # labels.class_weights' unseen class
  _, terms = parsing.parsing_loss(out, batch, cw, loss_cfg(), RED116, "logits")
  assert float(terms["group/classification"]) == 0.0 and np.isfinite(terms["parsing"])


def test_bad_flags_are_clear_errors():
  rng = np.random.default_rng(9)
  out, batch, cw = random_outputs(rng, 2, RED116), random_batch(rng, 2, RED116), random_weights(
      rng, RED116)
  with pytest.raises(ValueError, match="config.model.head_activation"):
    parsing.parsing_loss(out, batch, cw, loss_cfg(), RED116, "sigmoid")
  with pytest.raises(ValueError, match="config.loss.continuous"):
    parsing.parsing_loss(out, batch, cw, loss_cfg(continuous="huber"), RED116, "logits")
  with pytest.raises(ValueError, match="config.model.head_activation"):
    parsing.predictions(out, RED116, "softmax")


@pytest.mark.parametrize("activation", ["logits", "official"])
def test_eight_devices_equal_one_device_values_and_gradients(activation):
  """Heads from a linear map of features: loss and parameter gradients, N devices == 1."""
  rng = np.random.default_rng(10)
  b, d = 16, 5
  feats = rng.normal(size=(b, d)).astype(np.float32)
  batch = random_batch(rng, b, RED116)
  batch["mask"] = np.arange(b) < 11  # padded tail: devices hold 2, 2, 2, 2, 2, 1, 0, 0 real
  cw = random_weights(rng, RED116)
  sizes = [9, *RED116.discrete_classes, 6, 20]
  params = [jnp.asarray(rng.normal(size=(d, n)), jnp.float32) for n in sizes]

  def loss(params, feats, batch, axis_name):
    z = [feats @ w for w in params]
    out = {"cont": z[0], "disc": tuple(z[1:7]), "group": z[7].reshape(-1, 3, 2),
           "loss": z[8].reshape(-1, 10, 2)}
    return parsing.parsing_loss(out, batch, cw, loss_cfg(), RED116, activation, axis_name)

  plain = jax.value_and_grad(loss, has_aux=True)(params, feats, batch, None)
  mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
  sharded = jax.jit(jax.shard_map(
      lambda p, f, bt: jax.value_and_grad(loss, has_aux=True)(p, f, bt, "data"), mesh=mesh,
      in_specs=(P(), P("data"), P("data")), out_specs=P()))
  (total, terms), grads = sharded(params, feats, batch)
  np.testing.assert_allclose(total, plain[0][0], rtol=1e-5)
  assert_terms_close(terms, plain[0][1])
  for g8, g1 in zip(grads, plain[1]):
    np.testing.assert_allclose(g8, g1, rtol=1e-4, atol=1e-6)
