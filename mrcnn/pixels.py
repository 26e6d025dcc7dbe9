"""Pixel formats to the network's input format: ``(H, W, 3) uint8`` RGB.

:func:`to_rgb_array` normalises numpy arrays (grayscale, alpha, 16-bit, float,
bool); :func:`pil_to_rgb` converts a decoded Pillow image of any mode. Both
work in 8/16-bit integers, never through full-size float copies, and
:func:`pil_to_rgb` converts strip by strip (``STRIP_PIXELS`` at a time) so
the temporary memory of a conversion stays far below the output's own size.
Alpha is composited over white.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["STRIP_PIXELS", "UnsupportedModeError", "orient", "pil_to_rgb", "to_rgb_array"]

#: Pixels converted at a time by :func:`pil_to_rgb` (a strip of whole rows).
STRIP_PIXELS = 1 << 18

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}


class UnsupportedModeError(ValueError):
    """Pillow cannot convert this image mode to RGB."""


# ------------------------------------------------------------ integer maths

def _composite_over_white(rgba: np.ndarray) -> np.ndarray:
    """``(h, w, 4) uint8`` -> ``(h, w, 3) uint8``: round(c * a + 255 * (1 - a)), a = alpha / 255.

    Exact in integers: ``(c * a + 255 * (255 - a) + 127) // 255`` (x / 255 is never
    a tie, so this is the rounded value). Every intermediate is at most
    255 * 255 + 127 = 65152, so it is computed in place in uint16.
    """
    alpha = rgba[..., 3:4].astype(np.uint16)
    mixed = rgba[..., :3].astype(np.uint16)
    mixed *= alpha
    alpha *= np.uint16(255)                 # 255 * a, then 255 * (255 - a) + 127
    np.subtract(np.uint16(255 * 255 + 127), alpha, out=alpha)
    mixed += alpha
    mixed //= np.uint16(255)
    return mixed.astype(np.uint8)


def _stretch(values: np.ndarray, lo: int | float, hi: int | float) -> np.ndarray:
    """Linear map of [lo, hi] to 0..255 (all zeros when lo == hi)."""
    if hi == lo:
        return np.zeros(values.shape, np.uint8)
    scaled = (values.astype(np.float64) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _int_to_uint8(values: np.ndarray, lo: int, hi: int, *, assume_16bit: bool) -> np.ndarray:
    """Integer samples (whole image's range ``lo..hi``) to 0..255.

    With ``assume_16bit`` (16-bit images), non-negative values up to 65535 are
    divided by 257 with rounding (65535 -> 255). Otherwise values already in
    0..255 are kept and values up to 65535 divided by 257. Anything else
    (negative, or wider than 16 bits) is stretched from lo..hi to 0..255.
    """
    if lo >= 0 and hi <= 255 and not assume_16bit:
        return values.astype(np.uint8)
    if lo >= 0 and hi <= 65535:
        return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return _stretch(values, lo, hi)


def _float_to_uint8(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Floats in [0, 1] (whole image's range) are scaled by 255; others clipped to [0, 255]."""
    v = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=255.0, neginf=0.0)
    if 0.0 <= lo and hi <= 1.0:
        v = v * np.float32(255.0)
    return np.clip(np.rint(v), 0, 255).astype(np.uint8)


def _range(values: np.ndarray) -> tuple:
    if values.size == 0:
        return 0, 0
    if values.dtype.kind == "f":
        finite = values[np.isfinite(values)]
        return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    return int(values.min()), int(values.max())


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=2)


# ------------------------------------------------------------------ numpy

def to_rgb_array(array) -> np.ndarray:
    """Normalise an image to a C-contiguous ``(H, W, 3) uint8`` RGB array.

    Accepts ``HxW`` grayscale, ``HxWx1``, ``HxWx2`` (gray + alpha: alpha
    dropped), ``HxWx3`` and ``HxWx4`` (alpha dropped). ``uint16`` is scaled
    by 1/257; floats in [0, 1] are scaled by 255, other floats clipped to
    [0, 255]; bool becomes 0/255. A PIL image is converted with
    :func:`pil_to_rgb`. An input that is already ``uint8`` RGB and contiguous
    is returned as is (not copied).
    """
    if isinstance(array, Image.Image):
        return pil_to_rgb(array)
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
        arr = arr.astype(np.uint8) * np.uint8(255)
    elif arr.dtype == np.uint8:
        pass
    elif kind in "ui":
        arr = _int_to_uint8(arr, *_range(arr), assume_16bit=kind == "u" and arr.itemsize == 2)
    elif kind == "f":
        arr = _float_to_uint8(arr, *_range(arr))
    else:
        raise ValueError(f"unsupported image dtype {arr.dtype}")
    if arr.ndim == 2:
        return _gray_to_rgb(arr)
    return np.ascontiguousarray(arr)


# ----------------------------------------------------------------- Pillow

def _strip_converter(im: Image.Image):
    """A function converting one horizontal strip of ``im`` to ``(h, w, 3) uint8``."""
    mode = im.mode
    if mode == "RGB":
        return np.asarray
    if mode == "P":
        if "transparency" in im.info or getattr(im.palette, "mode", "") == "RGBA":
            return lambda strip: _composite_over_white(np.asarray(strip.convert("RGBA")))
        return lambda strip: np.asarray(strip.convert("RGB"))
    if mode in _ALPHA_MODES:
        return lambda strip: _composite_over_white(np.asarray(strip.convert("RGBA")))
    if mode in ("L", "1"):
        return lambda strip: _gray_to_rgb(np.asarray(strip.convert("L")))
    if mode == "RGBX":
        return lambda strip: np.asarray(strip)[..., :3]
    if mode.startswith("I;16") or mode == "I":
        lo, hi = (int(v) for v in im.getextrema())
        return lambda strip: _gray_to_rgb(_int_to_uint8(
            _integer_samples(strip), lo, hi, assume_16bit=True))
    if mode == "F":
        lo, hi = (float(v) for v in im.getextrema())
        return lambda strip: _gray_to_rgb(_float_to_uint8(np.asarray(strip), lo, hi))
    try:   # CMYK, YCbCr, LAB, HSV, ...: Pillow's own 8-bit converters
        im.crop((0, 0, 1, 1)).convert("RGB")
    except Exception:  # noqa: BLE001 - whatever Pillow's converter raises: unsupported
        raise UnsupportedModeError(mode) from None
    return lambda strip: np.asarray(strip.convert("RGB"))


def _integer_samples(strip: Image.Image) -> np.ndarray:
    values = np.asarray(strip)
    if values.dtype.kind not in "ui":       # odd 16-bit raw modes: go through "I"
        values = np.asarray(strip.convert("I"))
    return values


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """A decoded Pillow image of any mode as a new ``(H, W, 3) uint8`` RGB array.

    Converted ``STRIP_PIXELS`` at a time: besides the image itself and the
    result, only one strip's conversion is held. Raises
    :class:`UnsupportedModeError` for a mode Pillow cannot turn into RGB.
    """
    width, height = im.size
    convert = _strip_converter(im)
    out = np.empty((height, width, 3), np.uint8)
    rows = max(1, STRIP_PIXELS // max(width, 1))
    for top in range(0, height, rows):
        bottom = min(top + rows, height)
        strip = im if (top, bottom) == (0, height) else im.crop((0, top, width, bottom))
        out[top:bottom] = convert(strip)
    return out


# EXIF orientation -> the numpy view that shows the picture upright (as Pillow's
# ImageOps.exif_transpose: 2 mirror, 3 half turn, 4 flip, 5 transpose, 6 quarter
# turn clockwise, 7 transverse, 8 quarter turn anticlockwise).
_ORIENTATIONS = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: np.rot90(a, 1),
}


def orient(rgb: np.ndarray, orientation: int | None) -> np.ndarray:
    """``rgb`` turned upright for an EXIF orientation tag (1-8); a new array unless 1/None."""
    flip = _ORIENTATIONS.get(orientation or 1)
    return rgb if flip is None else np.ascontiguousarray(flip(rgb))
