"""The GM zoo: generator labels, the sub-pixel transposed conv, the tiny build (labels, cache,
resume after a real SIGKILL, round trip through the dataset builder)."""

import filecmp
import os
import signal
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from revgm_jax import labels
from revgm_jax.data import splits
from revgm_jax.data import builder
from revgm_jax.zoo import build, plan, presets
from revgm_jax.zoo import generators as G

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _textbook_conv_transpose(x, w):
  """PyTorch ConvTranspose2d(k=4, s=2, p=1) by its definition: input pixel (i, j) adds
  x[i, j] @ w[ky, kx] to output (2i - 1 + ky, 2j - 1 + kx)."""
  b, h, wd, _ = x.shape
  out = np.zeros((b, 2 * h + 2, 2 * wd + 2, w.shape[-1]))
  for i in range(h):
    for j in range(wd):
      for ky in range(4):
        for kx in range(4):
          out[:, 2 * i + ky, 2 * j + kx] += x[:, i, j] @ w[ky, kx]
  return out[:, 1:-1, 1:-1]


def test_subpixel_transposed_conv_equals_the_textbook_one():
  rng = np.random.default_rng(0)
  x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
  w = rng.standard_normal((4, 4, 3, 4)).astype(np.float32)
  ours = G.subpixel_conv_transpose(jnp.asarray(x), jnp.asarray(w))
  np.testing.assert_allclose(ours, _textbook_conv_transpose(x, w), atol=1e-5)
  # Flax's ConvTranspose (a correlation over the dilated input) with the flipped kernel.
  flax_ct = nn.ConvTranspose(4, (4, 4), strides=(2, 2), padding=((2, 2), (2, 2)), use_bias=False)
  flipped = {"params": {"kernel": w[::-1, ::-1]}}
  np.testing.assert_allclose(ours, flax_ct.apply(flipped, x), atol=1e-5)
  # Same operator, so the same kernel gradient.
  probe = jnp.asarray(rng.standard_normal(ours.shape).astype(np.float32))
  g_ours = jax.grad(lambda k: jnp.sum(G.subpixel_conv_transpose(x, k) * probe))(jnp.asarray(w))
  g_flax = jax.grad(lambda k: jnp.sum(flax_ct.apply({"params": {"kernel": k}}, x) * probe))(
      jnp.asarray(w[::-1, ::-1]))
  np.testing.assert_allclose(g_ours, np.asarray(g_flax)[::-1, ::-1], atol=1e-4)


def _params_by_hand_a():
  # Dense 64 -> 8*8*32, BN(32), TConv 4x4 32->16, BN(16), TConv 4x4 16->8, BN(8), conv 3x3 8->3
  return ((64 * 2048 + 2048) + 2 * 32 + (16 * 32 * 16 + 16) + 2 * 16 + (16 * 16 * 8 + 8)
          + 2 * 8 + (9 * 8 * 3 + 3))


def _params_by_hand_b():
  # conv 3x3 on the 4x4x4 noise map -> 64, LN(64); per block (cin -> c): conv 3x3 cin -> 4c,
  # depth-to-space, LN(c), conv 3x3 c -> c, LN(c), shortcut conv 1x1 cin -> c; to_rgb 8 -> 3.
  total = (9 * 4 * 64 + 64) + 2 * 64 + (9 * 8 * 3 + 3)
  for cin, c in ((64, 32), (32, 16), (16, 8)):
    total += (9 * cin * 4 * c + 4 * c) + 2 * c + (9 * c * c + c) + 2 * c + (cin * c + c)
  return total


@pytest.mark.parametrize("spec, expected, classes", [
    (G.GeneratorSpec(num_blocks=2, upsampling="transposed", norm="batch", block_nonlin="relu",
                     last_nonlin="tanh", skip=False, convs_per_block=1, width=8,
                     fc_latent=True, latent_dim=64),
     dict(num_layers=7, num_conv_layers=3, num_fc_layers=1, num_pool_layers=0,
          num_norm_layers=3, num_filters=16 + 8 + 3, num_blocks=2, num_layers_per_block=2,
          num_params=_params_by_hand_a()),
     (1, 0, 0, 0, 0, 1)),
    (G.GeneratorSpec(num_blocks=3, upsampling="pixel_shuffle", norm="layer",
                     block_nonlin="gelu", last_nonlin="sigmoid", skip=True, convs_per_block=2,
                     width=8, fc_latent=False, latent_dim=64),
     # proj conv + LN; 3 x (conv, depth-to-space, LN, conv, LN, nearest up, 1x1 conv); to_rgb
     dict(num_layers=2 + 3 * 7 + 1, num_conv_layers=1 + 3 * 3 + 1, num_fc_layers=0,
          num_pool_layers=0, num_norm_layers=1 + 3 * 2,
          num_filters=64 + sum(4 * c + c + c for c in (32, 16, 8)) + 3, num_blocks=3,
          num_layers_per_block=7, num_params=_params_by_hand_b()),
     (3, 1, 2, 0, 1, 0)),
])
def test_labels_from_the_built_model_match_hand_counts(spec, expected, classes):
  assert G.architecture_counts(spec) == expected
  assert G.discrete_labels(spec) == classes


def test_plan_is_deterministic_and_every_test_set_measures_every_loss_column():
  cfg = presets.get_preset("default")
  gms = plan.make_plan(cfg)
  assert gms == plan.make_plan(cfg)
  trained = [gm for gm in gms if gm.trained]
  assert len(trained) == cfg.num_trained_gms and len(gms) >= 60
  for c in {gm.cohort for gm in trained}:  # one architecture, the 10 loss types split up
    members = [gm for gm in trained if gm.cohort == c]
    assert len(members) == cfg.cohort_size and len({gm.spec for gm in members}) == 1
    assert len({gm.test_set for gm in members}) == 1  # held out together
    assert sorted(n for gm in members for n in gm.losses) == sorted(plan.LOSS_NAMES)
    assert all(plan.is_valid_loss_set(gm.losses) for gm in members)
  for k in range(1, 5):
    members = [gm for gm in gms if gm.test_set == k]
    assert {n for gm in members for n in gm.losses} == set(plan.LOSS_NAMES)
    assert any(not gm.trained for gm in members)
  for field in ("upsampling", "norm", "last_nonlin", "block_nonlin", "skip_scale"):
    values = [getattr(gm.spec, field) for gm in gms if not gm.trained]
    assert max(map(values.count, set(values))) - min(map(values.count, set(values))) <= 1
  assert {gm.init_gain for gm in gms} == set(cfg.init_gains)


def test_validation_holds_out_whole_cohorts_as_the_test_sets_do():
  gt, _ = plan.ground_truth(plan.make_plan(presets.get_preset("large")))
  cohort = dict(zip(gt.names, gt.cohort))
  split = splits.split_gms(gt, test_set=2, num_val_gms=12, seed=1)
  assert len(split["val"]) >= 12
  val_cohorts = {cohort[n] for n in split["val"]} - {-1}
  train_cohorts = {cohort[n] for n in split["train"]} - {-1}
  assert val_cohorts and not val_cohorts & train_cohorts  # seed 1 draws a cohort
  assert all(sum(cohort[n] == c for n in split["val"]) == 6 for c in val_cohorts)
  assert -1 in {cohort[n] for n in split["val"]}  # random-init GMs too, as in a test set
  assert split == splits.split_gms(gt, test_set=2, num_val_gms=12, seed=1)


def test_bad_config_names_the_field():
  cfg = presets.get_preset("tiny")
  cfg.image_size = 40
  with pytest.raises(ValueError, match="image_size"):
    build.validate(cfg)


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory):
  cfg = presets.get_preset("tiny")
  return cfg, build.build_zoo(cfg, str(tmp_path_factory.mktemp("zoo") / "tiny"))


def _label_files():
  tables = [v for k, v in labels.LABEL_FILES["zoo"].items() if k != "row_column"]
  return [labels.INDEX_FILE, labels.RANGES_FILE, *tables]


def test_tiny_zoo_writes_a_valid_label_dir(tiny_zoo):
  cfg, out = tiny_zoo
  gt = labels.load_ground_truth(out, "zoo")
  gms = plan.make_plan(cfg)
  assert gt.names == tuple(gm.name for gm in gms)
  assert gt.cohort.tolist() == [gm.cohort for gm in gms]  # read back from gm_index.csv
  assert sorted(os.listdir(os.path.join(out, "gms"))) == sorted(gt.names)
  for name in gt.names:
    files = sorted(os.listdir(os.path.join(out, "gms", name)))
    assert files == [f"{i:06d}.png" for i in range(cfg.images_per_gm)]
  img = np.asarray(Image.open(os.path.join(out, "gms", gt.names[0], "000000.png")))
  assert img.shape == (cfg.image_size, cfg.image_size, 3) and img.dtype == np.uint8
  assert len(os.listdir(os.path.join(out, "real"))) == cfg.real_images
  assert set(gt.test_set.tolist()) >= {1, 2, 3, 4}
  assert gt.loss.sum(0).min() >= 1  # every loss column occurs
  np.testing.assert_array_equal(gt.loss_group[:, 0], gt.loss[:, :4].max(1))
  cont = gt.net[:, :9]
  assert cont.min() >= 0 and cont.max() <= 1
  raw = np.array([[G.architecture_counts(gm.spec)[c] for c in labels.NET_COLUMNS[:9]]
                  for gm in gms])
  np.testing.assert_allclose(gt.denormalize(cont), raw, rtol=1e-5)
  np.testing.assert_array_equal(gt.net[:, 9:], [G.discrete_labels(gm.spec) for gm in gms])


def test_second_build_with_the_same_config_does_nothing(tiny_zoo, capsys):
  cfg, out = tiny_zoo
  stamp = os.stat(os.path.join(out, build.SUMMARY_FILE)).st_mtime_ns
  assert build.build_zoo(cfg, out) == out
  assert "nothing to do" in capsys.readouterr().out
  assert os.stat(os.path.join(out, build.SUMMARY_FILE)).st_mtime_ns == stamp
  other = presets.get_preset("tiny")
  other.seed = 1
  with pytest.raises(ValueError, match="another config"):
    build.build_zoo(other, out)


def test_killed_build_resumes_to_identical_files(tiny_zoo, tmp_path):
  """A real SIGKILL to `python -m revgm_jax.zoo build` once 3 GMs are done, then a rerun."""
  cfg, reference = tiny_zoo
  out = str(tmp_path / "resumed")
  proc = subprocess.Popen([sys.executable, "-m", "revgm_jax.zoo", "build", "--preset=tiny",
                           f"--out={out}"], cwd=REPO, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
  first = [os.path.join(out, "gms", gm.name) for gm in plan.make_plan(cfg)[:3]]
  progress = b""
  while chunk := os.read(proc.stdout.fileno(), 4096):  # the bar names each GM as it starts
    progress += chunk
    if all(map(os.path.isdir, first)):  # 3 GMs written, the 4th under way
      proc.kill()
      break
  assert proc.wait() == -signal.SIGKILL, progress.decode(errors="replace")
  assert not build.is_complete(out, cfg)
  gms_dir = os.path.join(out, "gms")
  build.build_zoo(cfg, out)
  assert sorted(os.listdir(gms_dir)) == sorted(os.listdir(os.path.join(reference, "gms")))
  for sub in ["real", *(os.path.join("gms", n) for n in os.listdir(gms_dir))]:
    names = sorted(os.listdir(os.path.join(reference, sub)))
    assert sorted(os.listdir(os.path.join(out, sub))) == names
    match, mismatch, errors = filecmp.cmpfiles(os.path.join(reference, sub),
                                               os.path.join(out, sub), names, shallow=False)
    assert not mismatch and not errors, (sub, mismatch, errors)
  _, mismatch, errors = filecmp.cmpfiles(reference, out, _label_files(), shallow=False)
  assert not mismatch and not errors


def test_tiny_zoo_round_trips_through_the_dataset_builder(tiny_zoo, tmp_path):
  _, out = tiny_zoo
  data = builder.prepare(os.path.join(out, "gms"), out, "zoo", str(tmp_path / "tfds"),
                         shards_per_gm=1)
  gt = labels.load_ground_truth(out, "zoo")
  assert data.gt.names == gt.names
  for name in gt.names:
    row = gt.row(name)
    ds = data.builder.as_dataset(split=builder.split_name(row))
    examples = {ex["file"].decode(): ex for ex in tfds.as_numpy(ds)}
    files = sorted(os.listdir(os.path.join(out, "gms", name)))
    assert sorted(examples) == [f"{name}/{f}" for f in files]
    for f in files:
      ex = examples[f"{name}/{f}"]
      np.testing.assert_array_equal(ex["image"],
                                    np.asarray(Image.open(os.path.join(out, "gms", name, f))))
      assert ex["gm_row"] == row
      np.testing.assert_array_equal(ex["net"], gt.net[row])
      np.testing.assert_array_equal(ex["loss"], gt.loss[row])
      np.testing.assert_array_equal(ex["loss_group"], gt.loss_group[row])
