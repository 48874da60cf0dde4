"""Zoo presets: how many GMs of which kinds, how many images, at which size.

tiny: tests (under 60 s on the CI machine). default: the embedded data of `python train.py`.
full: at least 116 trained GMs x 1000 images, as in the paper (long CPU run or a GPU).
"""

import ml_collections


def get_preset(name: str) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.preset = name
  c.seed = 0
  c.image_size = 32  # 64 and 128 selectable
  if name == "tiny":
    c.num_random_gms = 8  # randomly initialised, architecture-only GMs
    c.num_trained_gms = 4  # GMs trained with the zoo's loss types
    c.images_per_gm = 24
    c.train_steps = 20
    c.real_images = 32
  elif name == "default":
    c.num_random_gms = 48
    c.num_trained_gms = 12
    c.images_per_gm = 300
    c.train_steps = 150
    c.real_images = 600
  elif name == "full":
    c.num_random_gms = 0
    c.num_trained_gms = 116
    c.images_per_gm = 1000
    c.train_steps = 2000
    c.real_images = 5000
  else:
    raise ValueError(f"unknown zoo preset {name!r}; known: tiny, default, full")
  c.batch_size = 32  # zoo GM training batch
  c.lr = 2e-4
  return c
