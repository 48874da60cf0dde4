"""The cheap GM family (random image-to-image encoder-decoders, revgm_jax/zoo/autoencoders.py):
labels read off the model, one compile per architecture, determinism, cohorts, the build."""

import filecmp
import os
import shutil

import numpy as np
from PIL import Image
import pytest

from revgm_jax import labels
from revgm_jax.data import splits
from revgm_jax.zoo import autoencoders as A
from revgm_jax.zoo import build, plan, presets
from revgm_jax.zoo import generators as G

# The config hashes of the presets before the cheap family existed: their zoos must not change.
_OLD_HASHES = {"tiny": "394f43831ba1", "default": "afb7603f7698", "large": "69651ab87201",
               "full": "6eecdc4f1720"}


def _spec(encoder="strided", **kw):
  base = dict(num_blocks=2, upsampling="transposed", norm="batch", block_nonlin="relu",
              last_nonlin="tanh", skip=False, convs_per_block=1, width=8, fc_latent=False)
  return A.code_spec(G.GeneratorSpec(**{**base, **kw}), encoder, 8)


def test_labels_from_the_built_model_match_hand_counts():
  # strided encoder: conv 3x3 3->8 /2, conv 3x3 8->8 /2 (code 8x8x8); decoder: conv 3x3 8->32
  # + BN, TConv 32->16 + BN, TConv 16->8 + BN, to_rgb 8->3.
  params = ((27 * 8 + 8) + (72 * 8 + 8) + (72 * 32 + 32) + 64 + (16 * 32 * 16 + 16) + 32
            + (16 * 16 * 8 + 8) + 16 + (72 * 3 + 3))
  assert A.architecture_counts(_spec(), "strided") == dict(
      num_layers=9, num_conv_layers=6, num_fc_layers=0, num_pool_layers=0, num_norm_layers=3,
      num_filters=8 + 8 + 32 + 16 + 8 + 3, num_blocks=2, num_layers_per_block=2,
      num_params=params)
  # avgpool encoder (one pooling layer, code 4x4x3), dense bottleneck, pixel shuffle, instance
  # norm, 2 convs per block: per block conv -> 4c, depth-to-space, IN, conv, IN.
  spec = _spec("avgpool", num_blocks=3, upsampling="pixel_shuffle", norm="instance",
               convs_per_block=2, fc_latent=True)
  counts = A.architecture_counts(spec, "avgpool")
  assert spec.latent_dim == 4 * 4 * 3
  assert (counts["num_pool_layers"], counts["num_fc_layers"], counts["num_blocks"],
          counts["num_layers_per_block"], counts["num_norm_layers"]) == (1, 1, 3, 5, 1 + 3 * 2)
  assert counts["num_layers"] == 1 + 2 + 3 * 5 + 1  # pool, dense + IN, blocks, to_rgb
  assert G.discrete_labels(spec) == (2, 0, 0, 0, 0, 1)


def _crops(n=12, seed=0):
  from revgm_jax.zoo import real  # pylint: disable=g-import-not-at-top
  return real.random_crops(n, 32, seed)[0]


def test_one_compile_per_architecture_same_seed_same_images():
  crops = _crops()
  rng = np.random.default_rng(0)
  x_calib, x = A.gm_inputs(crops, rng, 4, 8)
  spec_a, spec_b = _spec(), _spec(upsampling="nearest", norm="layer")
  start = A.trace_count()
  out = {}
  for name, spec, seed, gain, std in (("a1", spec_a, 1, 1.0, 0.25), ("a2", spec_a, 2, 2**.5, 0.35),
                                      ("a1again", spec_a, 1, 1.0, 0.25), ("b", spec_b, 1, 1.0, .25)):
    v = A.init(spec, "strided", np.random.default_rng(seed), gain)
    out[name] = A.images(spec, "strided", v, x_calib, x, std)
  assert A.trace_count() - start == 2  # seeds, gains and stds of one architecture reuse it
  assert out["a1"].shape == (4, 32, 32, 3) and out["a1"].dtype == np.uint8
  np.testing.assert_array_equal(out["a1"], out["a1again"])
  for other in ("a2", "b"):  # another seed, another architecture: other images
    assert np.abs(out["a1"].astype(int) - out[other]).mean() > 1
  inputs = np.round((x + 1) * 127.5)
  for name in ("a1", "b"):  # not the crops, but images of them (a crop plus the decoder's trace)
    diff = out[name].astype(float) - inputs
    assert np.abs(diff).mean() > 2
    assert np.corrcoef(out[name].ravel(), inputs.ravel())[0, 1] > 0.5


def test_cheap2k_plan_cohorts_and_old_presets_unchanged():
  for name, digest in _OLD_HASHES.items():
    assert build.config_hash(presets.get_preset(name)) == digest
  cfg = presets.get_preset("cheap2k")
  gms = plan.make_plan(cfg)
  assert gms == plan.make_plan(cfg)
  cheap = [gm for gm in gms if gm.family == A.FAMILY]
  assert len(gms) >= 2000 and len(cheap) == cfg.num_i2i_gms
  assert [gm for gm in gms if gm.family != A.FAMILY] == plan.make_plan(
      presets.get_preset("default"))  # the default's GMs beside them, unchanged
  trained_cohorts = {gm.cohort for gm in gms if gm.trained}
  by_cohort = {}
  for gm in cheap:
    assert not gm.losses and gm.name.startswith(A.NAME_PREFIX) and gm.cohort >= 0
    by_cohort.setdefault(gm.cohort, []).append(gm)
  assert not trained_cohorts & set(by_cohort)
  assert len(by_cohort) == cfg.num_i2i_gms // cfg.i2i_per_arch
  for members in by_cohort.values():  # one architecture, held out together, other seeds
    assert len({(gm.spec, gm.encoder, gm.test_set) for gm in members}) == 1
    assert len({gm.seed for gm in members}) == cfg.i2i_per_arch
  archs = {(gm.spec, gm.encoder) for gm in cheap}
  assert len(archs) == len(by_cohort)  # no architecture in two cohorts
  for field in ("upsampling", "norm", "num_blocks", "skip", "fc_latent"):
    values = [getattr(m[0].spec, field) for m in by_cohort.values()]
    assert max(map(values.count, set(values))) - min(map(values.count, set(values))) <= 1
  assert {gm.test_set for gm in cheap} == {0, 1, 2, 3, 4}
  n = len(gms)  # the leave-out splits (labels are not needed for them)
  gt = labels.GroundTruth(
      space=labels.ZOO, names=tuple(gm.name for gm in gms),
      net=np.zeros((n, 15), np.float32), loss=np.zeros((n, 10), np.int32),
      loss_group=np.zeros((n, 3), np.int32), test_set=np.array([gm.test_set for gm in gms]),
      cohort=np.array([gm.cohort for gm in gms], np.int32))
  arch = {gm.name: (gm.spec, gm.encoder) for gm in cheap}
  for k in range(1, 5):
    split = splits.split_gms(gt, test_set=k, num_val_gms=50, seed=k)
    held_out = {arch[n] for n in split["test"] if n in arch}
    assert len(held_out) >= 20 and not held_out & {arch[n] for n in split["train"] if n in arch}
    assert not {arch[n] for n in split["val"] if n in arch} & {
        arch[n] for n in split["train"] if n in arch}
  other = presets.get_preset("cheap2k")
  other.i2i_pool += 1
  assert build.config_hash(other) != build.config_hash(cfg)
  other.num_i2i_gms = 2001
  with pytest.raises(ValueError, match="num_i2i_gms"):
    build.validate(other)
  old = presets.get_preset("default")  # a config written before the family (no i2i fields)
  old = old.__class__({k: v for k, v in old.items() if "i2i" not in k})
  build.validate(old)
  assert plan.make_plan(old) == plan.make_plan(presets.get_preset("default"))


@pytest.fixture(scope="module")
def cheap_zoo(tmp_path_factory):
  cfg = presets.get_preset("cheap2k")
  cfg.update(num_random_gms=0, num_trained_gms=0, num_i2i_gms=4, i2i_per_arch=2, images_per_gm=4,
             real_images=2, i2i_pool=32, i2i_widths=(8,), i2i_convs_per_block=(1,),
             num_blocks=(2,), max_channels=32)
  start = A.trace_count()
  out = build.build_zoo(cfg, str(tmp_path_factory.mktemp("zoo") / "cheap"))
  return cfg, out, A.trace_count() - start


def test_tiny_cheap_zoo_builds_labels_images_and_splits(cheap_zoo):
  cfg, out, traces = cheap_zoo
  gms = plan.make_plan(cfg)
  assert traces == cfg.num_i2i_gms // cfg.i2i_per_arch  # one compile per architecture
  gt = labels.load_ground_truth(out, "zoo")
  assert gt.names == tuple(gm.name for gm in gms)
  raw = np.array([[plan.architecture_counts(gm)[c] for c in labels.NET_COLUMNS[:9]]
                  for gm in gms])
  np.testing.assert_allclose(gt.denormalize(gt.net[:, :9]), raw, rtol=1e-5)
  np.testing.assert_array_equal(gt.net[:, 9:], [G.discrete_labels(gm.spec) for gm in gms])
  assert gt.loss.sum() == 0
  images = {}
  for gm in gms:
    files = sorted(os.listdir(os.path.join(out, "gms", gm.name)))
    assert files == [f"{i:06d}.png" for i in range(cfg.images_per_gm)]
    images[gm.name] = np.stack([np.asarray(Image.open(os.path.join(out, "gms", gm.name, f)))
                                for f in files])
    assert images[gm.name].shape == (cfg.images_per_gm, 32, 32, 3)
  before = A.trace_count()
  again, _ = build.build_gm(cfg, gms[-1], None, build.i2i_pool(cfg))  # same seed: same images
  np.testing.assert_array_equal(again, images[gms[-1].name])
  assert A.trace_count() == before  # the last architecture's compile is still there
  with open(os.path.join(out, labels.INDEX_FILE)) as f:
    assert f.read().count(A.FAMILY) == cfg.num_i2i_gms  # the family column marks them
  np.testing.assert_array_equal(gt.cohort, [gm.cohort for gm in gms])  # via gm_index.csv


def test_cheap_zoo_resumes_to_identical_files(cheap_zoo, tmp_path):
  cfg, out, _ = cheap_zoo
  name = plan.make_plan(cfg)[0].name
  copy = str(tmp_path / "copy")
  shutil.copytree(out, copy)
  shutil.rmtree(os.path.join(copy, "gms", name))  # as a killed build leaves it
  os.remove(os.path.join(copy, build.SUMMARY_FILE))
  build.build_zoo(cfg, copy)
  files = sorted(os.listdir(os.path.join(out, "gms", name)))
  _, mismatch, errors = filecmp.cmpfiles(os.path.join(out, "gms", name),
                                         os.path.join(copy, "gms", name), files, shallow=False)
  assert not mismatch and not errors
  assert build.is_complete(copy, cfg)
