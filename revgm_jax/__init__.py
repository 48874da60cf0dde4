"""revgm_jax."""
