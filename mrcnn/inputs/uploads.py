"""Turn what a visitor uploads into an ``HxWx3`` ``uint8`` RGB array.

Pure Pillow / numpy. :func:`decode_image` checks the pixel count from the
header (right after ``Image.open``) before any pixel data is decoded, then
forces a full decode so a truncated file fails here with a clear message
instead of later in the model. The conversion to RGB is the engine's own
(:func:`mrcnn.pixels.pil_to_rgb`: 8-bit, strip by strip); EXIF orientation
is applied to the RGB result, so no full-size copy of the decoded image is
made on the way.
"""
from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

# isort: split
# Register the plugins we open explicitly: ``Image.open(formats=...)`` only
# finds formats whose plugin has been imported.
from PIL import (  # noqa: F401
    BmpImagePlugin,
    GifImagePlugin,
    JpegImagePlugin,
    MpoImagePlugin,
    PngImagePlugin,
    TiffImagePlugin,
)

from mrcnn.pixels import UnsupportedModeError, orient, pil_to_rgb, to_rgb_array

try:
    from PIL import WebPImagePlugin  # noqa: F401
except ImportError:  # Pillow built without libwebp
    pass

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "SUPPORTED_FORMATS",
    "CorruptImageError",
    "EmptyImageError",
    "ImageDecodeError",
    "ImageMemoryError",
    "ImageTooLargeError",
    "UnsupportedImageError",
    "decode_fitted",
    "decode_image",
    "fit_within",
]

#: File extensions (no dot) for the uploader's ``type=`` argument.
SUPPORTED_EXTENSIONS = ["jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif"]

#: Pillow format names :func:`decode_image` will open (MPO is a JPEG with
#: extra frames, as written by many cameras).
SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "TIFF", "GIF")

_EXPECTED = "JPEG, PNG, WebP, BMP, TIFF or GIF"

# Leading bytes of the supported formats: a file that starts like one of
# them but cannot be opened is damaged, not of the wrong type.
_SIGNATURES = (
    b"\xff\xd8\xff",            # JPEG
    b"\x89PNG\r\n\x1a\n",       # PNG
    b"GIF87a", b"GIF89a",       # GIF
    b"BM",                      # BMP
    b"II*\x00", b"MM\x00*",     # TIFF
    b"II+\x00", b"MM\x00+",     # BigTIFF
)


class ImageDecodeError(ValueError):
    """The upload could not be turned into an image; ``str()`` is for visitors."""


class EmptyImageError(ImageDecodeError):
    """The upload has no bytes."""


class UnsupportedImageError(ImageDecodeError):
    """The upload is not an image, or not of a supported type."""


class CorruptImageError(ImageDecodeError):
    """The upload looks like a supported image but is truncated or damaged."""


class ImageMemoryError(ImageDecodeError):
    """Decoding ran out of memory: the file may be fine, the server is short."""


class ImageTooLargeError(ImageDecodeError):
    """The image has more pixels than allowed (checked before decoding)."""

    def __init__(self, message: str, *, pixels: int | None = None,
                 limit: int | None = None):
        super().__init__(message)
        self.pixels = pixels
        self.limit = limit


def _too_large(width: int | None, height: int | None, pixels: int | None,
               limit: int) -> ImageTooLargeError:
    if width is not None and height is not None:
        what = f"{width} x {height} = {pixels:,} pixels"
    elif pixels is not None:
        what = f"{pixels:,} pixels"
    else:
        what = "too many pixels"
    return ImageTooLargeError(
        f"The image is {what}, more than the limit of {limit:,} pixels; "
        "please upload a smaller image.", pixels=pixels, limit=limit)


def _corrupt() -> CorruptImageError:
    return CorruptImageError(
        "The image could not be read: the file is damaged or incomplete; "
        "re-export or re-download it.")


def _out_of_memory() -> ImageMemoryError:
    return ImageMemoryError(
        "The server has too little free memory to open this image right now; "
        "try a smaller image, or try again in a minute.")


def _looks_supported(data: bytes) -> bool:
    if data.startswith(_SIGNATURES):
        return True
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


def decode_image(data: bytes, *, max_pixels: int = 40_000_000) -> np.ndarray:
    """Decode uploaded bytes into an ``HxWx3`` ``uint8`` RGB array.

    JPEG, PNG, WebP, BMP, TIFF and GIF (first frame) are accepted. EXIF
    orientation is applied; every Pillow mode is converted to RGB (alpha is
    composited over white). Raises a subclass of :class:`ImageDecodeError`
    whose message is one sentence meant for the visitor.
    """
    return decode_fitted(data, max_pixels=max_pixels)[0]


def decode_fitted(data: bytes, *, max_pixels: int = 40_000_000,
                  max_side: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`decode_image`, and the upright original's ``(height, width)``.

    With ``max_side``, an RGB or grayscale picture whose longer side is longer is
    scaled down (Lanczos, as :func:`fit_within`) before it is converted, so its
    full-size array is never made (a 40-Mpx PNG: about 130 MB less at the peak).
    Other modes are converted at full size; pass the result to :func:`fit_within`.
    """
    if data is None or len(data) == 0:
        raise EmptyImageError(
            "The uploaded file is empty; choose an image file and try again.")
    data = bytes(data)
    pillow_limit = Image.MAX_IMAGE_PIXELS
    limit = max_pixels if pillow_limit is None else min(max_pixels, pillow_limit)

    with warnings.catch_warnings():
        # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that;
        # both mean "too large" here.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=[
                f for f in SUPPORTED_FORMATS if f in Image.OPEN])
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            match = re.search(r"\((\d+) pixels\)", str(exc))
            pixels = int(match.group(1)) if match else None
            raise _too_large(None, None, pixels, limit) from None
        except UnidentifiedImageError:
            if _looks_supported(data):
                raise _corrupt() from None
            raise UnsupportedImageError(
                "This file is not an image this demo can read; please upload "
                f"a {_EXPECTED} image.") from None
        except Exception:  # noqa: BLE001 - a plugin choking on a damaged header may raise anything
            if _looks_supported(data):
                raise _corrupt() from None
            raise UnsupportedImageError(
                "This file is not an image this demo can read; please upload "
                f"a {_EXPECTED} image.") from None

    with im:
        width, height = im.size
        pixels = int(width) * int(height)
        if pixels > max_pixels:
            raise _too_large(width, height, pixels, max_pixels)
        if width <= 0 or height <= 0:
            raise _corrupt()
        try:
            im.load()  # full decode now: truncated data fails here
        except Image.DecompressionBombError:
            raise _too_large(width, height, pixels, limit) from None
        except MemoryError:
            raise _out_of_memory() from None
        except Exception:  # noqa: BLE001 - OSError, SyntaxError, EOFError, zlib.error, ...
            raise _corrupt() from None
        try:
            orientation = im.getexif().get(ExifTags.Base.Orientation)
        except Exception:  # noqa: BLE001 - unreadable EXIF, whatever the error: keep the pixels
            orientation = None
        upright = (height, width) if orientation not in (5, 6, 7, 8) else (width, height)
        picture = im
        if max_side and max(width, height) > max_side and im.mode in ("RGB", "L"):
            scale = max_side / max(width, height)
            try:
                picture = im.resize((max(1, round(width * scale)), max(1, round(height * scale))),
                                    Image.Resampling.LANCZOS)
            except MemoryError:
                raise _out_of_memory() from None
        try:
            return orient(pil_to_rgb(picture), orientation), upright
        except UnsupportedModeError:
            raise UnsupportedImageError(
                f"This image uses a colour format ({im.mode}) the demo cannot "
                f"convert; please save it as a standard {_EXPECTED} image.") from None
        except MemoryError:
            raise _out_of_memory() from None


def fit_within(image, max_side: int):
    """Downscale so the longer side is at most ``max_side``; never upscale.

    ``image`` is a PIL image or a numpy array (converted with
    :func:`to_rgb_array`); the result has the same kind. Returns
    ``(image, scale)`` with ``scale`` = new size / old size (1.0 when the
    image already fits, in which case the input itself is returned).
    """
    if max_side is None or int(max_side) <= 0:
        raise ValueError(f"max_side must be a positive integer, got {max_side!r}")
    max_side = int(max_side)
    is_pil = isinstance(image, Image.Image)
    if is_pil:
        width, height = image.size
    else:
        arr = to_rgb_array(image)
        height, width = arr.shape[:2]
    longer = max(width, height)
    if longer <= max_side:
        return (image if is_pil else arr), 1.0
    scale = max_side / longer
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if is_pil:
        return image.resize(new_size, Image.Resampling.LANCZOS), scale
    resized = Image.fromarray(arr).resize(new_size, Image.Resampling.LANCZOS)
    return np.asarray(resized).copy(), scale
