"""Losses as plain jnp functions: FFT constraint terms and parsing (head) losses."""
