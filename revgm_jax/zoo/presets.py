"""Zoo presets: how many GMs of which kinds, how many images, at which size.

tiny: tests (under 60 s on the CI machine). default: the embedded data of `python train.py`.
large: the generalisation study (hundreds of GMs, leave-out sets of about 50 GMs each).
cheap2k: the default's random-init and trained GMs beside 2,000 cheap image-to-image GMs
(revgm_jax/zoo/autoencoders.py) in 250 cohorts of 8 (about 40 min on a 2-core CPU, README).
full: at least 116 trained GMs x 1000 images, as in the paper (long CPU run or a GPU; several
hosts split the GMs by process index).
Every field can be overridden (`python -m revgm_jax.zoo build --preset default
--zoo.images_per_gm=100`, `python train.py --config.data.zoo.images_per_gm=100`); the build
cache is keyed by all of them.
"""

import ml_collections

PRESETS = ("tiny", "default", "large", "full", "cheap2k")

# What tiny and full change in the default preset.
_CHANGES = {
    "tiny": dict(num_random_gms=8, num_trained_gms=4, images_per_gm=24, train_steps=20,
                 real_images=32, train_pool=256, num_blocks=(2, 3), widths=(8, 16),
                 convs_per_block=(1, 2), trained_widths=(8,), trained_convs_per_block=(1,),
                 cohort_size=4),
    "default": {},
    # Generalisation to unseen GMs: 400 GMs, 4 leave-out sets of 49 GMs (18 trained),
    # wider unlabelled conventions; 160 steps per trained GM so that it builds on a 2-core CPU
    # in about an hour (README, GM zoo).
    "large": dict(num_random_gms=250, num_trained_gms=150, images_per_gm=100, real_images=1000,
                  cohort_size=6,
                  latent_dims=(32, 64, 100, 128, 256), init_gains=(0.8, 1.0, 2.0**0.5),
                  output_stds=(0.25, 0.35, 0.5, 0.7, 1.0), train_steps=160),
    "full": dict(num_random_gms=0, num_trained_gms=116, images_per_gm=1000, train_steps=2000,
                 real_images=5000, batch_size=32, widths=(16, 32, 64), max_channels=256,
                 trained_widths=(16, 32, 64), trained_convs_per_block=(1, 2, 3),
                 trained_max_channels=256, cohort_size=4),
    # Thousands of cheap GMs: deep parsers memorise GM identity when GMs are few.
    "cheap2k": dict(num_i2i_gms=2000, images_per_gm=60),
}


def get_preset(name: str) -> ml_collections.ConfigDict:
  if name not in PRESETS:
    raise ValueError(f"unknown zoo preset {name!r}; known: {', '.join(PRESETS)}")
  c = ml_collections.ConfigDict()
  c.preset = name
  c.seed = 0
  c.num_random_gms = 48  # randomly initialised, architecture-only GMs
  # 10 cohorts of 4 rather than 4 of 6: the training GMs of a leave-out set then hold 8 trained
  # architectures instead of 2, and 120 images per GM pay for them within the 15-minute job
  # (README, results on the embedded default).
  c.num_trained_gms = 40  # GMs trained with the zoo's loss types (10 cohorts)
  c.images_per_gm = 120
  c.train_steps = 120  # training steps of each trained GM
  c.real_images = 600  # real crops written beside the GMs
  c.image_size = 32  # 64 and 128 selectable (any multiple of 16 from 32 to 256)
  c.batch_size = 16  # zoo GM training batch
  c.lr = 2e-4
  c.train_pool = 2048  # real crops the trained GMs learn from
  c.test_fraction = 0.5  # share of the random-init and of the trained GMs in the 4 test sets
  # Architecture choices, each drawn with balanced marginals (see revgm_jax/zoo/generators.py).
  c.num_blocks = (2, 3, 4)  # up-sampling blocks (those that fit image_size are used)
  c.widths = (8, 16, 32)  # channels of the last block; doubled per earlier block
  c.max_channels = 128
  c.convs_per_block = (1, 2, 3)
  c.latent_dims = (64, 100, 128)
  c.trained_widths = (8, 16)  # trained GMs: smaller (their training dominates the build time)
  c.trained_convs_per_block = (1, 2)
  c.trained_max_channels = 64
  # Trained GMs come in cohorts of one architecture whose GMs split the 10 loss types among
  # them (revgm_jax/zoo/plan.py); >= 4, and num_trained_gms a multiple of it.
  c.cohort_size = 4
  # Unlabelled code conventions, drawn per GM (balanced): He-init gain, the calibrated output
  # std, the factor of a skip sum, the norms' epsilon.
  c.init_gains = (1.0, 2.0**0.5)
  c.output_stds = (0.35, 0.5, 0.7)
  c.skip_scales = (1.0, 0.5**0.5)
  c.norm_eps = (1e-5, 1e-3)
  # Cheap GMs (family random_i2i, revgm_jax/zoo/autoencoders.py): random-weight encoder-decoders
  # run on real crops; the decoder carries the labelled choices. Off (0) in all but cheap2k;
  # while off, these fields are left out of the config hash (the older presets keep theirs).
  c.num_i2i_gms = 0  # a multiple of i2i_per_arch
  c.i2i_per_arch = 8  # GMs per architecture (other seeds and conventions): one cohort
  c.i2i_widths = (8, 16, 32)
  c.i2i_convs_per_block = (1, 2, 3)
  c.i2i_max_channels = 64
  c.i2i_code_channels = (8, 16, 32)  # channels Ce of a strided encoder's code (not a label)
  c.i2i_encoders = ("strided", "avgpool")  # encoder kinds (not a label)
  c.i2i_output_stds = (0.15, 0.25, 0.35)  # std of the decoder output added to the crop
  c.i2i_pool = 4096  # real crops the cheap GMs' inputs are drawn from
  c.update(_CHANGES[name])
  return c
