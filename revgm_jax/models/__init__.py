"""Flax Linen modules: the fingerprint estimation network and the parsing network."""
