"""Parsing losses of the heads (docs/losses.md#parsing-losses) and the matching predictions.

head_activation "logits" (default): CE on the logits of each discrete / coarse-group head,
and for fine loss type i the gated probability p_i = P_yes(i) * P_yes(group g(i)) with
binary cross-entropy on p_i, so a fine loss is predicted only if its group is.
head_activation "official": the official code's sigmoid outputs fed to CE as logits, the
fine pair multiplied elementwise by the sigmoid "yes" output of its group (parity runs).

Class weights follow PyTorch's CrossEntropyLoss(weight=w, reduction="mean"):
sum_b w[y_b] ce_b / sum_b w[y_b]. With `axis_name` numerator and denominator are psum'd, so
N devices give the 1-device value on the same global batch; `batch["mask"]` drops padded
examples from every term.
"""

import jax
import jax.numpy as jnp
import ml_collections
from jax import lax

from revgm_jax.config_check import check_continuous
from revgm_jax.labels import Space

HEAD_ACTIVATIONS = ("logits", "official")


def _check_activation(head_activation: str):
  if head_activation not in HEAD_ACTIVATIONS:
    raise ValueError(f"config.model.head_activation={head_activation!r}; use one of "
                     f"{HEAD_ACTIVATIONS}")


def _weighted_mean(values, weights, axis_name):
  """sum(w * v) / sum(w) over the batch axis 0 (globally with axis_name); 0 if sum(w) == 0."""
  num, den = jnp.sum(weights * values, axis=0), jnp.sum(weights, axis=0)
  if axis_name is not None:
    num, den = lax.psum(num, axis_name), lax.psum(den, axis_name)
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


# One-hot products, not gathers: docs/jax_notes.md#class-weights-by-one-hot.
def _ce(logits, labels):  # [..., k], [...] -> [...]
  return -jnp.sum(jax.nn.one_hot(labels, logits.shape[-1]) * jax.nn.log_softmax(logits), -1)


def _class_weight(labels, w):  # labels [B, ...] int, w [..., k] -> [B, ...] weight of the target
  return jnp.sum(jax.nn.one_hot(labels, w.shape[-1]) * w, -1)


def _log_gated(fine, group_yes):
  """log p and log(1 - p) of p = sigmoid(a) sigmoid(b), a = fine yes-no margin, b = group's."""
  a = fine[..., 1] - fine[..., 0]
  b = group_yes
  log_p = jax.nn.log_sigmoid(a) + jax.nn.log_sigmoid(b)
  # 1 - s(a) s(b) = s(-a) + s(a) s(-b): a sum of positive terms, exact in log space.
  log_1mp = jnp.logaddexp(jax.nn.log_sigmoid(-a), jax.nn.log_sigmoid(a) + jax.nn.log_sigmoid(-b))
  return log_p, log_1mp


def _group_of_loss(space: Space):
  return jnp.asarray(space.group_of_loss)  # [L] static


def _continuous_error(z: jax.Array, y: jax.Array, kind: str) -> jax.Array:
  """Per-value error of logits z against targets y in [0, 1], both [B, 9].

  "bce" is the binary cross-entropy with soft targets minus its minimum (the target's entropy),
  so it is 0 at sigma(z) = y; unlike MSE through the sigmoid, its gradient sigma(z) - y does
  not vanish near the bounds 0 and 1, where many normalised targets sit (docs/losses.md).
  """
  if kind == "bce":
    entropy = -(jax.scipy.special.xlogy(y, y) + jax.scipy.special.xlogy(1 - y, 1 - y))
    return jax.nn.softplus(z) - y * z - entropy  # -y log s(z) - (1 - y) log(1 - s(z)) - H(y)
  err = jax.nn.sigmoid(z) - y
  return err ** 2 if kind == "mse" else jnp.abs(err)


def parsing_loss(outputs: dict, batch: dict, class_weights: dict,
                 loss_cfg: ml_collections.ConfigDict, space: Space, head_activation: str,
                 axis_name: str | None = None):
  """Total parsing loss and its terms.

  outputs: the model's logits {"cont": [B, 9], "disc": 6 x [B, k], "group": [B, G, 2],
  "loss": [B, L, 2]}; batch: {"net": [B, 15], "loss": [B, L], "loss_group": [B, G],
  "mask": [B] bool (optional, default all True)}; class_weights: labels.class_weights.
  Returns (w_cont cont + w_disc disc + w_group group + w_loss loss, terms) where terms holds
  the four family sums "cont", "disc", "group", "loss", every single head term
  ("disc/<name>", "group/<name>", "loss/<name>") and the total "parsing".
  """
  _check_activation(head_activation)
  check_continuous(loss_cfg.continuous)
  official = head_activation == "official"
  net = batch["net"]
  b = net.shape[0]
  mask = batch["mask"].astype(jnp.float32) if "mask" in batch else jnp.ones((b,), jnp.float32)
  nc = space.num_continuous

  def weights_for(labels, w):  # [B, ...]: class weight of the target (or 1) times the mask
    m = jnp.broadcast_to(mask.reshape((b,) + (1,) * (labels.ndim - 1)), labels.shape)
    return _class_weight(labels, jnp.asarray(w, jnp.float32)) * m if loss_cfg.weighted_ce else m

  terms = {}
  # Continuous: regression of sigmoid outputs on the [0, 1]-normalised targets.
  terms["cont"] = _weighted_mean(jnp.mean(_continuous_error(
      outputs["cont"], net[:, :nc], loss_cfg.continuous), -1), mask, axis_name)

  # Discrete architecture heads: (weighted) CE each.
  act = jax.nn.sigmoid if official else (lambda z: z)
  disc = []
  for j, (name, logits) in enumerate(zip(space.discrete_names, outputs["disc"])):
    labels = net[:, nc + j].astype(jnp.int32)
    disc.append(_weighted_mean(_ce(act(logits), labels),
                               weights_for(labels, class_weights["disc"][j]), axis_name))
    terms[f"disc/{name}"] = disc[-1]

  # Coarse loss groups: (weighted) CE per group head, vectorised over G.
  group_labels = batch["loss_group"].astype(jnp.int32)  # [B, G]
  group_w = weights_for(group_labels, jnp.stack(class_weights["group"]))  # [B, G]
  group = _weighted_mean(_ce(act(outputs["group"]), group_labels), group_w, axis_name)  # [G]

  # Fine loss types, gated by their group.
  loss_labels = batch["loss"].astype(jnp.int32)  # [B, L]
  loss_w = weights_for(loss_labels, jnp.stack(class_weights["loss"]))  # [B, L]
  group_of_fine = jnp.take(outputs["group"], _group_of_loss(space), axis=1)  # [B, L, 2]
  if official:
    gated = jax.nn.sigmoid(outputs["loss"]) * jax.nn.sigmoid(group_of_fine[..., 1:])
    fine_ce = _ce(gated, loss_labels)  # [B, L]
  else:
    log_p, log_1mp = _log_gated(outputs["loss"], group_of_fine[..., 1] - group_of_fine[..., 0])
    fine_ce = -jnp.where(loss_labels == 1, log_p, log_1mp)  # [B, L]
  fine = _weighted_mean(fine_ce, loss_w, axis_name)  # [L]

  for g, name in enumerate(space.group_names):
    terms[f"group/{name}"] = group[g]
  for i, name in enumerate(space.loss_names):
    terms[f"loss/{name}"] = fine[i]
  terms["disc"] = sum(disc)
  terms["group"] = jnp.sum(group)
  terms["loss"] = jnp.sum(fine)
  total = (loss_cfg.w_cont * terms["cont"] + loss_cfg.w_disc * terms["disc"]
           + loss_cfg.w_group * terms["group"] + loss_cfg.w_loss * terms["loss"])
  terms["parsing"] = total
  return total, terms


def predictions(outputs: dict, space: Space, head_activation: str) -> dict:
  """Probabilities of the heads: {"cont": [B, 9] in [0, 1], "disc": 6 x [B, k],
  "group": [B, G] P(yes), "loss": [B, L] gated P(yes)}.

  "official": the softmax of the sigmoid outputs, i.e. what its CE treats as probabilities
  (argmax agrees with the official code's argmax of the sigmoid outputs).
  """
  _check_activation(head_activation)
  group_of_fine = jnp.take(outputs["group"], _group_of_loss(space), axis=1)  # [B, L, 2]
  if head_activation == "official":
    sig = jax.nn.sigmoid
    gated = sig(outputs["loss"]) * sig(group_of_fine[..., 1:])
    return {
        "cont": sig(outputs["cont"]),
        "disc": tuple(jax.nn.softmax(sig(z)) for z in outputs["disc"]),
        "group": jax.nn.softmax(sig(outputs["group"]))[..., 1],
        "loss": jax.nn.softmax(gated)[..., 1],
    }
  group_yes = jax.nn.softmax(outputs["group"])[..., 1]  # [B, G]
  return {
      "cont": jax.nn.sigmoid(outputs["cont"]),
      "disc": tuple(jax.nn.softmax(z) for z in outputs["disc"]),
      "group": group_yes,
      "loss": jax.nn.softmax(outputs["loss"])[..., 1] * jnp.take(
          group_yes, _group_of_loss(space), axis=1),
  }
