"""Fixed image features and the low-capacity parser on them ("spectral features + linear heads").

`spectral.image_features` (pure NumPy/SciPy) -> `fitting.fit` (scikit-learn, imported inside the
fitting code only) -> `linear.SpectralParser.predict` (pure NumPy; what `revgm parse` may load).
"""
