"""Cheap image-to-image GMs: reuse of one compile per architecture vs vmap over GMs.

  nice -n 5 python benchmarks/zoo_i2i_compile.py [--archs 4] [--gms 8] [--images 64]

For each of --archs random architectures (drawn as the zoo draws them) it makes --gms GMs and
times (a) one jitted function per architecture called once per GM (weights as arguments) and
(b) one vmapped call over the GMs' stacked weights; both from a cleared compile cache, so the
compile is inside each time. Prints seconds per GM of each and checks they give the same images.
"""

import argparse
import time

import jax
import numpy as np

from revgm_jax.zoo import autoencoders as A
from revgm_jax.zoo import plan, presets, real


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--archs", type=int, default=4)
  ap.add_argument("--gms", type=int, default=8)
  ap.add_argument("--images", type=int, default=64)
  args = ap.parse_args()
  cfg = presets.get_preset("cheap2k")
  cfg.num_i2i_gms = args.archs * args.gms
  cfg.i2i_per_arch = args.gms
  gms = [gm for gm in plan.make_plan(cfg) if gm.family == A.FAMILY]
  pool, _ = real.random_crops(1024, cfg.image_size, 3)
  totals = {"reuse": 0.0, "vmap": 0.0}
  for a in range(args.archs):
    members = gms[a * args.gms:(a + 1) * args.gms]
    spec, enc = members[0].spec, members[0].encoder
    inputs, variables = [], []
    for gm in members:
      rng = np.random.default_rng(gm.seed)
      variables.append(A.init(spec, enc, rng, gm.init_gain))
      inputs.append(A.gm_inputs(pool, rng, args.images, A.NUM_CALIB))
    stds = np.array([gm.output_std for gm in members], np.float32)
    jax.clear_caches()
    t = time.perf_counter()
    ref = [A.images(spec, enc, v, xc, x, s) for v, (xc, x), s in zip(variables, inputs, stds)]
    t_reuse = time.perf_counter() - t
    jax.clear_caches()
    t = time.perf_counter()
    out = A.images_vmapped(spec, enc, variables, np.stack([i[0] for i in inputs]),
                           np.stack([i[1] for i in inputs]), stds)
    t_vmap = time.perf_counter() - t
    diff = int(np.abs(out.astype(int) - np.stack(ref).astype(int)).max())
    totals["reuse"] += t_reuse
    totals["vmap"] += t_vmap
    print(f"arch {a} ({spec.upsampling}, {spec.num_blocks} blocks, width {spec.width}, "
          f"{spec.convs_per_block} convs, {enc}): reuse {t_reuse:.2f} s, vmap {t_vmap:.2f} s "
          f"for {args.gms} GMs x {args.images} images (max |diff| {diff})")
  n = args.archs * args.gms
  print(f"per GM: reuse {totals['reuse'] / n:.3f} s, vmap {totals['vmap'] / n:.3f} s "
        f"(compile included; {A.trace_count()} traces)")


if __name__ == "__main__":
  main()
