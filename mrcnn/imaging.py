"""Turn what a visitor uploads into an ``HxWx3`` ``uint8`` RGB array.

Pure Pillow / numpy. :func:`decode_image` checks the pixel count from the
header (right after ``Image.open``) before any pixel data is decoded, then
forces a full decode so a truncated file fails here with a clear message
instead of later in the model. :func:`to_rgb_array` normalises numpy arrays
(the engine uses it for images that never went through a file).
"""
from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
# Register the plugins we open explicitly: ``Image.open(formats=...)`` only
# finds formats whose plugin has been imported.
from PIL import (BmpImagePlugin, GifImagePlugin, JpegImagePlugin,  # noqa: F401
                 MpoImagePlugin, PngImagePlugin, TiffImagePlugin)

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
    "ImageTooLargeError",
    "UnsupportedImageError",
    "decode_image",
    "fit_within",
    "to_rgb_array",
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
        except Exception:  # a plugin choking on a damaged header
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
        except Exception:  # OSError, SyntaxError, EOFError, zlib.error, ...
            raise _corrupt() from None
        try:
            oriented = ImageOps.exif_transpose(im)
        except Exception:  # unreadable EXIF: keep the pixels as stored
            oriented = im
        if oriented is None:
            oriented = im
        return _pil_to_rgb(oriented)


# ---------------------------------------------------------------- conversion

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


def _composite_over_white(rgba: np.ndarray) -> np.ndarray:
    """``(H,W,4) uint8`` -> ``(H,W,3) uint8`` composited over white."""
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    out = rgb * alpha + 255.0 * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _int_to_uint8(values: np.ndarray, *, assume_16bit: bool) -> np.ndarray:
    """Scale integer samples to 0..255.

    With ``assume_16bit`` (Pillow's 16/32-bit modes), non-negative values up
    to 65535 are 16-bit samples and are divided by 257 (65535 -> 255).
    Otherwise values already in 0..255 are kept and values up to 65535 are
    divided by 257. Anything else (negative, or wider than 16 bits) is
    stretched linearly from its min..max to 0..255.
    """
    if values.size == 0:
        return np.zeros(values.shape, np.uint8)
    lo, hi = int(values.min()), int(values.max())
    if lo >= 0 and hi <= 255 and not assume_16bit:
        return values.astype(np.uint8)
    if lo >= 0 and hi <= 65535:
        return np.rint(values.astype(np.float64) / 257.0).astype(np.uint8)
    if hi == lo:
        return np.zeros(values.shape, np.uint8)
    scaled = (values.astype(np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _float_to_uint8(values: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] are scaled by 255; otherwise clipped to [0, 255]."""
    v = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=255.0,
                      neginf=0.0)
    if v.size and v.min() >= 0.0 and v.max() <= 1.0:
        v = v * 255.0
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))


def _pil_to_rgb(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "RGB":
        return np.array(im, dtype=np.uint8)
    if mode == "P":
        if "transparency" in im.info or getattr(im.palette, "mode", "") == "RGBA":
            return _composite_over_white(np.array(im.convert("RGBA")))
        return np.array(im.convert("RGB"), dtype=np.uint8)
    if mode in _ALPHA_MODES:
        return _composite_over_white(np.array(im.convert("RGBA")))
    if mode in ("L", "1"):
        return _gray_to_rgb(np.array(im.convert("L"), dtype=np.uint8))
    if mode.startswith("I;16"):
        values = np.asarray(im)
        if values.dtype.kind not in "ui":  # odd rawmodes: go through "I"
            values = np.asarray(im.convert("I"))
        return _gray_to_rgb(_int_to_uint8(values, assume_16bit=True))
    if mode == "I":
        values = np.asarray(im, dtype=np.int64)
        return _gray_to_rgb(_int_to_uint8(values, assume_16bit=True))
    if mode == "F":
        return _gray_to_rgb(_float_to_uint8(np.asarray(im, dtype=np.float32)))
    if mode == "RGBX":
        return np.array(im, dtype=np.uint8)[..., :3].copy()
    # CMYK, YCbCr, LAB, HSV, ...: Pillow's own converters.
    try:
        return np.array(im.convert("RGB"), dtype=np.uint8)
    except Exception:
        raise UnsupportedImageError(
            f"This image uses a colour format ({mode}) the demo cannot "
            f"convert; please save it as a standard {_EXPECTED} image.") from None


def to_rgb_array(array) -> np.ndarray:
    """Normalise an image to a C-contiguous ``(H, W, 3) uint8`` RGB array.

    Accepts ``HxW`` grayscale, ``HxWx1``, ``HxWx2`` (gray + alpha: alpha
    dropped), ``HxWx3`` and ``HxWx4`` (alpha dropped). ``uint16`` is scaled
    by 1/257; floats in [0, 1] are scaled by 255, other floats clipped to
    [0, 255]; bool becomes 0/255. A PIL image is also accepted. An input that
    is already ``uint8`` RGB and contiguous is returned as is (not copied).
    """
    if isinstance(array, Image.Image):
        return _pil_to_rgb(array)
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] in (1, 2):
        arr = arr[..., 0]
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(
            f"expected an image array of shape HxW or HxWxC (C in 1..4), got {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image array has no pixels: shape {arr.shape}")
    kind = arr.dtype.kind
    if kind == "b":
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint8:
        pass
    elif kind == "u" and arr.dtype.itemsize == 2:
        arr = _int_to_uint8(arr, assume_16bit=True)
    elif kind in "ui":
        arr = _int_to_uint8(arr, assume_16bit=False)
    elif kind == "f":
        arr = _float_to_uint8(arr)
    else:
        raise ValueError(f"unsupported image dtype {arr.dtype}")
    if arr.ndim == 2:
        return _gray_to_rgb(arr)
    return np.ascontiguousarray(arr)


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
