"""The one font loader for every picture the package draws."""
from __future__ import annotations

import functools

from PIL import ImageFont

__all__ = ["font"]


@functools.lru_cache(maxsize=32)
def font(size: int):
    """Pillow's bundled scalable font at ``size`` px (the fixed bitmap font without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()
