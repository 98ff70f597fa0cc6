"""Read one image file as a float RGB tensor (3×H×W in [0, 1]) whatever its storage mode.

Detection datasets mix grayscale, palette, RGBA and 16-bit files (COCO has grayscale JPEGs; scans and
synthetic sets often are 16-bit PNGs). The models want three channels in [0, 1], so every mode is
mapped here, once: 8-bit modes through PIL's RGB conversion (alpha is dropped, not composited),
16/32-bit integer modes scaled by 1/65535, float modes clipped to [0, 1]. EXIF orientation is NOT
applied: COCO and VOC annotations refer to the pixels as stored.

Every image a reader opens goes through `open_image`, which refuses a file whose header claims more
pixels than `max_pixels` (`data.max_image_pixels`, default PIL's own MAX_IMAGE_PIXELS) before any
pixel is decoded: a few hundred bytes can claim 60000×60000 (a "decompression bomb") and would
otherwise cost gigabytes, or end in PIL's DecompressionBombError from inside a DataLoader worker.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ticketlab.errors import TicketlabError

_SIXTEEN_BIT_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
DEFAULT_MAX_PIXELS = int(Image.MAX_IMAGE_PIXELS or 0) or 89_478_485  # PIL's default: 1024·1024·1024 / 4 / 3
_PIL_CLAIM = re.compile(r"Image size \((\d+) pixels\)")


def _too_large(path: Path, pixels: str, max_pixels: int) -> TicketlabError:
    return TicketlabError(f"{path}: image claims {pixels} pixels, more than the limit of {max_pixels} "
                          "(config key data.max_image_pixels; a header this large is usually a decompression bomb)")


@contextlib.contextmanager
def open_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Iterator[Image.Image]:
    """PIL's lazy image of `path` (header read, pixels not yet decoded), refused when its claimed size
    exceeds `max_pixels`; an unreadable file is a one-line error naming it. PIL refuses on its own
    beyond twice its MAX_IMAGE_PIXELS, so a limit above that cannot let a larger image through."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            img = Image.open(path)
    except Image.DecompressionBombError as e:
        claimed = _PIL_CLAIM.search(str(e))
        raise _too_large(path, claimed.group(1) if claimed else "more", max_pixels) from None
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise TicketlabError(f"{path}: not a readable image ({e.__class__.__name__})") from None
    with img:
        width, height = img.size
        if width * height > max_pixels:
            raise _too_large(path, f"{width}×{height} = {width * height}", max_pixels)
        try:
            yield img
        except (OSError, SyntaxError) as e:  # decoding the pixels failed: truncated or corrupt data
            raise TicketlabError(f"{path}: not a readable image ({e.__class__.__name__})") from None


def read_size(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    with open_image(path, max_pixels) as img:
        return img.size


def load_rgb(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Decode `path` into a float32 tensor 3×H×W with values in [0, 1]."""
    with open_image(path, max_pixels) as img:
        img.load()
        array = _to_float_rgb(img)
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _to_float_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in _SIXTEEN_BIT_MODES:
        gray = np.asarray(img, dtype=np.float32) / 65535.0
        return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=2)
    if mode == "F":
        gray = np.asarray(img, dtype=np.float32)
        return np.repeat(np.clip(gray, 0.0, 1.0)[..., None], 3, axis=2)
    if mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.float32) / 255.0
