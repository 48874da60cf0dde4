"""The GM zoo: small generators with known hyperparameters, written in the published layout."""
