"""Zoo presets: how many GMs of which kinds, how many images, at which size.

tiny: tests (under 60 s on the CI machine). default: the embedded data of `python train.py`.
full: at least 116 trained GMs x 1000 images, as in the paper (long CPU run or a GPU; several
hosts split the GMs by process index).
Every field can be overridden (`python -m revgm_jax.zoo build --preset default --images_per_gm
100`); the build cache is keyed by all of them.
"""

import ml_collections

PRESETS = ("tiny", "default", "full")


def get_preset(name: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.preset = name
  c.seed = 0
  c.image_size = 32  # 64 and 128 selectable (any multiple of 16 from 32 to 256)
  c.batch_size = 32  # zoo GM training batch
  c.lr = 2e-4
  c.train_pool = 2048  # real crops the trained GMs learn from
  c.test_fraction = 0.5  # share of the random-init and of the trained GMs in the 4 test sets
  # Architecture choices, each drawn with balanced marginals (see revgm_jax/zoo/generators.py).
  c.num_blocks = (2, 3, 4)  # up-sampling blocks (those that fit image_size are used)
  c.widths = (8, 16, 32)  # channels of the last block; doubled per earlier block
  c.max_channels = 128
  c.convs_per_block = (1, 2, 3)
  c.latent_dims = (64, 128)
  c.trained_widths = (8, 16)  # trained GMs: smaller (their training dominates the build time)
  c.trained_convs_per_block = (1, 2)
  c.trained_max_channels = 64
  c.loss_set_sizes = (1, 2, 3)  # sizes of the trained GMs' loss sets, in turn
  if name == "tiny":
    c.num_random_gms = 8  # randomly initialised, architecture-only GMs
    c.num_trained_gms = 4  # GMs trained with the zoo's loss types
    c.images_per_gm = 24
    c.train_steps = 20
    c.real_images = 32
    c.train_pool = 256
    c.batch_size = 16
    c.num_blocks = (2, 3)
    c.widths = (8, 16)
    c.convs_per_block = (1, 2)
    c.trained_widths = (8,)
    c.trained_convs_per_block = (1,)
    c.loss_set_sizes = (3,)  # 4 GMs x 3 losses cover all 10 loss columns
  elif name == "default":
    c.num_random_gms = 48
    c.num_trained_gms = 12
    c.images_per_gm = 300
    c.train_steps = 120
    c.batch_size = 16
    c.real_images = 600
  elif name == "full":
    c.num_random_gms = 0
    c.num_trained_gms = 116
    c.images_per_gm = 1000
    c.train_steps = 2000
    c.real_images = 5000
    c.widths = (16, 32, 64)
    c.trained_widths = (16, 32, 64)
    c.trained_convs_per_block = (1, 2, 3)
    c.max_channels = 256
    c.trained_max_channels = 256
  else:
    raise ValueError(f"unknown zoo preset {name!r}; known: {', '.join(PRESETS)}")
  return c
