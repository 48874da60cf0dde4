"""Reading one generated image robustly: RGB uint8 out, or an error that names the file.

The published GM folders mix formats and modes (docs/labels.md#data-layout). The official loader
(torchvision's `pil_loader`) calls `Image.convert("RGB")` on everything, which also squashes
16-bit images without a word; here the 8-bit modes that convert exactly are converted (alpha is
dropped, as `convert` does) and reported to the caller, and anything else is an error. Pillow
itself opens a 48-bit RGB PNG as 8-bit "RGB" (dropping the low bytes): the raw mode of its tiles
(";16") tells, and it is an error as well.

Size is checked from the header, before decoding: an image over `max_pixels` (config
data.max_image_pixels, default MAX_PIXELS, below Pillow's own decompression-bomb limit of
~89 megapixels) is an error naming the file; a few KB of PNG can decode to gigabytes.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
MAX_PIXELS = 40_000_000  # e.g. 8000 x 5000; decoded as RGB uint8 that is 120 MB

# 8-bit modes whose conversion to RGB keeps every colour value: grey, palette, alpha, CMYK JPEG.
CONVERTIBLE_MODES = ("1", "L", "LA", "La", "P", "PA", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr")


class ImageError(ValueError):
  """An image file that cannot be used; the message names the file and the problem."""


def is_image_file(name: str) -> bool:
  return name.lower().endswith(IMAGE_EXTENSIONS)


def _is_16_bit(im: Image.Image) -> bool:
  """True for 16-bit-per-channel data Pillow would open as an 8-bit mode (48-bit RGB PNG)."""
  return any(";16" in str(t.args) for t in im.tile)


def read_image(path: str, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, str | None]:
  """Decodes `path` fully into RGB.

  Returns (image uint8 [H, W, 3], the original mode if it was converted, else None).
  Raises ImageError for unreadable, corrupt, truncated, empty, high-bit-depth files and images
  of more than `max_pixels` pixels.
  """
  try:
    with warnings.catch_warnings():  # Pillow's bomb warning: our lower limit names the file
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      im = Image.open(path)
    with im:
      width, height = im.size
      if width * height > max_pixels:
        raise ImageError(f"image {path} is {width} x {height} = {width * height} pixels, over the "
                         f"limit of {max_pixels} (config.data.max_image_pixels); not decoded")
      if _is_16_bit(im):
        raise ImageError(f"image {path} has 16-bit channels ({im.format} {im.mode}); only "
                         "8-bit images can be used — convert it to 8-bit RGB")
      im.load()  # decode now: a truncated or corrupt file fails here, not later in tf.data
      mode = im.mode
      if mode == "RGB":
        rgb = im
      elif mode in CONVERTIBLE_MODES:
        rgb = im.convert("RGB")
      else:
        raise ImageError(f"image {path} has mode {mode!r} (e.g. 16-bit or float); only 8-bit "
                         f"RGB and the modes {', '.join(CONVERTIBLE_MODES)} can be used — "
                         "convert it to 8-bit RGB")
      array = np.asarray(rgb, dtype=np.uint8)
  except ImageError:
    raise
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise ImageError(f"image {path} cannot be decoded (corrupt, truncated or not an image): "
                     f"{type(e).__name__}: {e}") from e
  if array.ndim != 3 or array.shape[2] != 3 or min(array.shape[:2]) < 1:
    raise ImageError(f"image {path} decodes to shape {array.shape}, expected [H, W, 3]")
  return array, (None if mode == "RGB" else mode)
