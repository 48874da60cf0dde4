"""`python -m revgm_jax.zoo build --preset default --out DIR`: see revgm_jax/zoo/build.py."""

from revgm_jax.zoo.build import main

if __name__ == "__main__":
  main()
