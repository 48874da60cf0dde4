"""PyTorch peer of our model-parsing training step, used only by `benchmarks/torch_peer.py`.

Written from the design notes in docs/ (not from our JAX code) so that "faster than PyTorch"
compares the same work: FEN (DnCNN with BatchNorm), the four FFT constraint losses, the
parsing network (5 x [conv 3x3 pad 2, ReLU, max-pool], dropout, FC, three branches, every
head), the weighted CE / gated BCE parsing losses and Adam. It reads the same `ml_collections`
config as our step, so both sides run the same sizes, coefficients and optimiser. NCHW, as the
official code.
"""

import ml_collections
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from revgm_jax import labels

_LUMA = (0.299, 0.587, 0.114)


class FEN(nn.Module):
  """DnCNN: conv+ReLU, (depth-2) x conv+BN+ReLU, conv; output = fingerprint (docs/model.md#fen)."""

  def __init__(self, depth: int, width: int, bn_momentum: float, bn_epsilon: float):
    super().__init__()
    layers = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU()]
    for _ in range(depth - 2):
      layers += [nn.Conv2d(width, width, 3, padding=1),
                 nn.BatchNorm2d(width, eps=bn_epsilon, momentum=1.0 - bn_momentum), nn.ReLU()]
    layers.append(nn.Conv2d(width, 3, 3, padding=1))
    self.net = nn.Sequential(*layers)
    for m in self.net:
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

  def forward(self, x):  # [B, 3, H, W] -> [B, 3, H, W]
    return self.net(x)


def _encoded_size(size: int, blocks: int) -> int:
  for _ in range(blocks):
    size = (size + 2) // 2  # conv 3x3 pad 2 grows by 2, max-pool 2x2 floors
  return size


class Parser(nn.Module):
  """Encoder, shared FC, one 64-d branch per output family, all heads (docs/model.md#parser)."""

  def __init__(self, space: labels.Space, image_size: int, widths, fc_width: int,
               branch_widths, dropout: float, share_branch: bool):
    super().__init__()
    convs, c_in = [], 3
    for c in widths:
      convs += [nn.Conv2d(c_in, c, 3, padding=2), nn.ReLU(), nn.MaxPool2d(2)]
      c_in = c
    self.encoder = nn.Sequential(*convs)
    side = _encoded_size(image_size, len(widths))
    self.dropout = nn.Dropout(dropout)
    self.fc = nn.Linear(c_in * side * side, fc_width)

    def branch():
      layers, d = [], fc_width
      for b in branch_widths:
        layers += [nn.Linear(d, b), nn.ReLU()]
        d = b
      return nn.Sequential(*layers)

    self.branches = nn.ModuleList([branch() for _ in range(1 if share_branch else 3)])
    h = branch_widths[-1]
    self.cont = nn.Linear(h, space.num_continuous)
    self.disc = nn.ModuleList([nn.Linear(h, k) for k in space.discrete_classes])
    self.group = nn.Linear(h, 2 * space.num_groups)
    self.loss = nn.Linear(h, 2 * space.num_loss_types)

  def forward(self, f):  # [B, 3, H, W] -> dict of logits
    z = self.encoder(f).flatten(1)
    z = F.relu(self.fc(self.dropout(z)))
    hs = [b(z) for b in self.branches]
    h_net, h_group, h_loss = (hs * 3) if len(hs) == 1 else hs
    b = f.shape[0]
    return {"cont": self.cont(h_net), "disc": tuple(d(h_net) for d in self.disc),
            "group": self.group(h_group).view(b, -1, 2),
            "loss": self.loss(h_loss).view(b, -1, 2)}


class RevGM(nn.Module):
  def __init__(self, config: ml_collections.ConfigDict, space: labels.Space):
    super().__init__()
    m = config.model
    self.fen = FEN(m.fen_depth, m.fen_width, m.bn_momentum, m.bn_epsilon)
    self.parser = Parser(space, config.image_size, m.parser_widths, m.fc_width,
                         m.branch_widths, m.dropout, m.share_branch)

  def forward(self, x):
    fp = self.fen(x)
    return fp, self.parser(fp)


def constraint_terms(fp, radius: int, rep_clip: float) -> dict:
  """The four constraint terms (docs/losses.md#constraint-losses) of F [B, 3, H, W] (NCHW)."""
  gray = sum(c * fp[:, i] for i, c in enumerate(_LUMA))  # [B, H, W]
  spec = torch.fft.fftshift(torch.fft.fft2(gray), dim=(-2, -1)).abs()  # [B, H, W]
  h, w = spec.shape[-2:]
  rows = slice(h // 2 - radius, h // 2 + radius + 1)
  cols = slice(w // 2 - radius, w // 2 + radius + 1)
  high = spec.clone()
  high[:, rows, cols] = 0.0
  m = high.amax()  # one scalar over the whole batch
  return {"mag": gray.pow(2).mean(), "spec": spec[:, rows, cols].pow(2).mean(),
          "sym": (spec - spec.transpose(-2, -1)).pow(2).mean(),
          "rep": torch.clamp(m, max=rep_clip), "rep_unclamped": m}


def fen_loss(terms: dict, loss_cfg: ml_collections.ConfigDict):
  used = set(loss_cfg.fen_terms.split(","))
  coef = {"mag": loss_cfg.coef_mag, "spec": loss_cfg.coef_spec,
          "rep": -loss_cfg.coef_rep, "sym": loss_cfg.coef_sym}
  return sum(coef[k] * terms[k] for k in ("mag", "spec", "rep", "sym") if k in used)


def _weighted_bce(p, y, w):
  """Binary CE on probabilities p, weight w[y] per example, PyTorch weighted mean."""
  p = p.clamp(1e-7, 1.0 - 1e-7)
  wy = w[y]
  return (wy * -(y * p.log() + (1 - y) * (1 - p).log())).sum() / wy.sum()


def parsing_loss(outputs: dict, batch: dict, class_weights: dict, loss_cfg, space):
  """10 x [MSE(cont) + sum CE_w(disc) + sum CE_w(group) + sum BCE_w(gated fine)]
  (docs/losses.md#total-loss)."""
  net = batch["net"]
  k = space.num_continuous
  cont = torch.sigmoid(outputs["cont"])
  err = (cont - net[:, :k])
  l_cont = err.pow(2).mean() if loss_cfg.continuous == "mse" else err.abs().mean()
  weighted = loss_cfg.weighted_ce
  l_disc = sum(F.cross_entropy(z, net[:, k + j].long(),
                               weight=class_weights["disc"][j] if weighted else None)
               for j, z in enumerate(outputs["disc"]))
  groups = batch["loss_group"].long()
  l_group = sum(F.cross_entropy(outputs["group"][:, g], groups[:, g],
                                weight=class_weights["group"][g] if weighted else None)
                for g in range(space.num_groups))
  # Fine type i is predicted only if its group is: p_i = P(i yes) * P(group yes).
  p_group = torch.softmax(outputs["group"], -1)[..., 1]  # [B, G]
  p_fine = torch.softmax(outputs["loss"], -1)[..., 1]  # [B, L]
  p = p_fine * p_group[:, torch.as_tensor(space.group_of_loss, dtype=torch.long)]
  fine = batch["loss"].long()
  ones = torch.ones(2)
  l_loss = sum(_weighted_bce(p[:, i], fine[:, i], class_weights["loss"][i] if weighted else ones)
               for i in range(space.num_loss_types))
  return (loss_cfg.w_cont * l_cont + loss_cfg.w_disc * l_disc + loss_cfg.w_group * l_group
          + loss_cfg.w_loss * l_loss)


def class_weights_tensors(class_weights: dict) -> dict:
  return {key: [torch.as_tensor(np.asarray(w), dtype=torch.float32) for w in ws]
          for key, ws in class_weights.items()}


class TorchStep:
  """One training step (forward, all losses, backward, Adam) on a fixed batch.

  `compile=True` wraps the forward+loss and the optimiser update in `torch.compile`
  (inductor; the backward is compiled through AOTAutograd), PyTorch at its best on CPU.
  """

  def __init__(self, config: ml_collections.ConfigDict, space: labels.Space, class_weights,
               radius: int, compile: bool = False, dtype: str = "float32",
               device: str = "cpu"):
    self.config, self.space, self.radius = config, space, radius
    self.device = torch.device(device)
    self.model = RevGM(config, space).to(self.device).train()
    self.class_weights = {k: [w.to(self.device) for w in ws]
                          for k, ws in class_weights_tensors(class_weights).items()}
    o = config.optim
    self.opt = torch.optim.Adam(self.model.parameters(), lr=o.lr, betas=(o.b1, o.b2),
                                eps=o.eps, weight_decay=o.weight_decay)
    self.autocast = dtype == "bfloat16"
    self._loss = self._loss_fn
    self._update = self.opt.step
    if compile:
      self._loss = torch.compile(self._loss_fn)
      self._update = torch.compile(self.opt.step)

  def _loss_fn(self, batch):
    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
      fp, outputs = self.model(batch["image"])
    fp = fp.float()  # the FFT branch stays float32, as in our step
    outputs = {k: (tuple(t.float() for t in v) if isinstance(v, tuple) else v.float())
               for k, v in outputs.items()}
    terms = constraint_terms(fp, self.radius, self.config.loss.rep_clip)
    return (fen_loss(terms, self.config.loss)
            + parsing_loss(outputs, batch, self.class_weights, self.config.loss, self.space))

  def __call__(self, batch):
    self.opt.zero_grad(set_to_none=True)
    loss = self._loss(batch)
    loss.backward()
    self._update()
    return loss

  def synchronize(self):
    if self.device.type == "cuda":
      torch.cuda.synchronize()


def random_batch(space: labels.Space, batch_size: int, image_size: int, seed: int = 0,
                 device: str = "cpu") -> dict:
  """A batch with the layout of `input_pipeline` (images NCHW here), from a fixed seed."""
  rng = np.random.default_rng(seed)
  net = np.concatenate(
      [rng.uniform(size=(batch_size, space.num_continuous)),
       np.stack([rng.integers(0, k, batch_size) for k in space.discrete_classes], 1)], 1)
  batch = {
      "image": rng.normal(size=(batch_size, 3, image_size, image_size)),
      "net": net,
      "loss": rng.integers(0, 2, (batch_size, space.num_loss_types)),
      "loss_group": rng.integers(0, 2, (batch_size, space.num_groups)),
  }
  dtypes = {"image": torch.float32, "net": torch.float32, "loss": torch.int64,
            "loss_group": torch.int64}
  return {k: torch.as_tensor(v, dtype=dtypes[k], device=device) for k, v in batch.items()}
