"""Dataset building from a folder of GM images: decoding and TFRecord shards."""


class DataError(ValueError):
  """Input folder or label problem; the message names the folder or file."""
