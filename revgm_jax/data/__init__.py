"""Dataset building from a folder of GM images: decoding and TFRecord shards."""
