"""Drawing detections, kept apart from the model.

One palette (:func:`palette`), one place that decides label text
(:func:`label_text`), one blend rule (``(1 - alpha) * image + alpha *
colour`` inside each mask), one outline rule (inner mask boundary with
4-connectivity, as ``skimage.segmentation.find_boundaries(mode="inner")``).
Colour ``i`` belongs to detection ``i`` everywhere: overlay, table, gallery.
"""
from __future__ import annotations

import colorsys
import functools
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mrcnn.imaging import to_rgb_array

__all__ = ["BOX_THICKNESS", "cutout", "draw_detections", "inner_boundary",
           "label_text", "palette", "to_png_bytes"]

BOX_THICKNESS = 2
_GOLDEN = 0.618033988749895


def palette(n: int) -> np.ndarray:
    """``n`` distinct, saturated, deterministic colours, ``(n, 3) uint8``.

    Hue advances by the golden ratio from a fixed start, so consecutive
    colours are far apart and colour ``i`` never depends on ``n``.
    Saturation and value alternate slightly to separate near-equal hues.
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out = np.empty((n, 3), np.uint8)
    for i in range(n):
        hue = (0.08 + i * _GOLDEN) % 1.0
        sat = (0.90, 0.75, 0.85)[i % 3]
        val = (0.95, 0.85)[(i // 3) % 2]
        r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
        out[i] = (round(r * 255), round(g * 255), round(b * 255))
    return out


def label_text(class_name: str, score: float | None = None) -> str:
    """Caption for a detection, e.g. ``"person 0.98"``."""
    if score is None:
        return str(class_name)
    return f"{class_name} {float(score):.2f}"


def _class_name(class_names, class_id: int) -> str:
    try:
        if 0 <= class_id < len(class_names):
            return str(class_names[class_id])
    except TypeError:
        pass
    return f"class {class_id}"


def inner_boundary(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a 4-neighbour outside the mask (image edges reflect).

    Same as ``find_boundaries(mask, mode="inner")`` for a 2-D bool mask.
    """
    mask = np.asarray(mask, dtype=bool)
    p = np.pad(mask, 1, mode="edge")
    eroded = (p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1]
              & p[1:-1, :-2] & p[1:-1, 2:])
    return mask & ~eroded


@functools.lru_cache(maxsize=16)
def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except Exception:  # Pillow without FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _font_size(height: int, width: int) -> int:
    return int(np.clip(round(max(height, width) * 0.016), 11, 36))


def _text_colour(colour) -> tuple[int, int, int]:
    r, g, b = (int(c) for c in colour)
    luminance = 0.299 * r + 0.587 * g + 0.114 * b
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)


def _as_colors(colors, n: int) -> np.ndarray:
    if colors is None:
        return palette(n)
    arr = np.asarray(colors)
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.shape[0] < n:
        raise ValueError(f"colors must be (N>={n}, 3), got shape {arr.shape}")
    if arr.dtype.kind == "f" and arr.size and arr.max() <= 1.0:
        arr = arr * 255.0
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def _spans(any_along: np.ndarray):
    """First and one-past-last True index of each column of ``(L, N)``."""
    present = any_along.any(axis=0)
    first = np.argmax(any_along, axis=0)
    last = any_along.shape[0] - np.argmax(any_along[::-1], axis=0)
    return present, first, last


def draw_detections(image, result: dict, class_names, *, colors=None,
                    mask_alpha: float = 0.5, show_masks: bool = True,
                    show_boxes: bool = True, show_labels: bool = True,
                    show_outlines: bool = True) -> np.ndarray:
    """Draw masks, outlines, boxes and labels; return a new ``HxWx3 uint8``.

    Detection ``i`` uses ``colors[i]`` (default :func:`palette`). Inside a
    mask, ``out = round((1 - mask_alpha) * image + mask_alpha * colour)``;
    outline pixels (:func:`inner_boundary`) and 2-px boxes are painted in
    full colour; labels (:func:`label_text`) sit on a filled colour tag
    above the box, moved inside the image when needed. Lower-scored
    detections are drawn first so the best one ends on top. The input image
    is never modified.
    """
    base = to_rgb_array(image)
    out = np.array(base, copy=True)
    height, width = out.shape[:2]
    rois = np.asarray(result["rois"]).reshape(-1, 4).astype(np.int64)
    class_ids = np.asarray(result["class_ids"]).reshape(-1).astype(np.int64)
    scores = result.get("scores")
    scores = None if scores is None else np.asarray(scores).reshape(-1)
    n = class_ids.shape[0]
    if n == 0:
        return out
    cols = _as_colors(colors, n)
    alpha = float(mask_alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"mask_alpha must be in [0, 1], got {mask_alpha}")

    masks = None
    if (show_masks or show_outlines) and result.get("masks") is not None:
        masks = np.asarray(result["masks"])
        if masks.ndim != 3 or masks.shape[:2] != (height, width) or masks.shape[2] != n:
            raise ValueError(
                f"masks must be ({height}, {width}, {n}), got {masks.shape}")
        masks = masks.astype(bool, copy=False)
        # Tight bounding region of every mask in two passes over the stack.
        row_present, row0, row1 = _spans(masks.any(axis=1))
        _, col0, col1 = _spans(masks.any(axis=0))

    order = range(n - 1, -1, -1)  # lowest score first, best on top
    if masks is not None:
        for i in order:
            if not row_present[i]:
                continue
            colour = cols[i]
            if show_masks and alpha > 0.0:
                y0, y1, x0, x1 = row0[i], row1[i], col0[i], col1[i]
                m = masks[y0:y1, x0:x1, i]
                region = out[y0:y1, x0:x1]
                blended = ((1.0 - alpha) * region[m].astype(np.float64)
                           + alpha * colour.astype(np.float64))
                region[m] = np.rint(blended).astype(np.uint8)
            if show_outlines:
                # One pixel of margin (clipped to the image) so the edge
                # test sees real neighbours, and reflection at image edges.
                y0, y1 = max(row0[i] - 1, 0), min(row1[i] + 1, height)
                x0, x1 = max(col0[i] - 1, 0), min(col1[i] + 1, width)
                edge = inner_boundary(masks[y0:y1, x0:x1, i])
                out[y0:y1, x0:x1][edge] = colour

    if show_boxes:
        t = BOX_THICKNESS
        for i in order:
            y1, x1, y2, x2 = rois[i]
            y1c, y2c = max(y1, 0), min(y2, height)
            x1c, x2c = max(x1, 0), min(x2, width)
            if y1c >= y2c or x1c >= x2c:
                continue
            colour = cols[i]
            if y1 >= 0:
                out[y1:min(y1 + t, y2c), x1c:x2c] = colour
            if y2 <= height:
                out[max(y2 - t, y1c):y2, x1c:x2c] = colour
            if x1 >= 0:
                out[y1c:y2c, x1:min(x1 + t, x2c)] = colour
            if x2 <= width:
                out[y1c:y2c, max(x2 - t, x1c):x2] = colour

    if show_labels:
        _draw_labels(out, rois, class_ids, scores, class_names, cols, order)
    return out


def _draw_labels(out, rois, class_ids, scores, class_names, cols, order):
    height, width = out.shape[:2]
    font = _font(_font_size(height, width))
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    pad = 2
    for i in order:
        text = label_text(_class_name(class_names, int(class_ids[i])),
                          None if scores is None else scores[i])
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tag_w = right - left + 2 * pad
        tag_h = bottom - top + 2 * pad
        y1, x1, y2, x2 = (int(v) for v in rois[i])
        tx = min(max(x1, 0), max(width - tag_w, 0))
        ty = y1 - tag_h
        if ty < 0:  # no room above: put the tag inside the top of the box
            ty = min(max(y1, 0), max(height - tag_h, 0))
        colour = tuple(int(c) for c in cols[i])
        draw.rectangle((tx, ty, tx + tag_w - 1, ty + tag_h - 1), fill=colour)
        draw.text((tx + pad - left, ty + pad - top), text, font=font,
                  fill=_text_colour(colour))
    out[...] = np.asarray(canvas)


def cutout(image, mask) -> np.ndarray:
    """RGBA cut-out of one object, cropped to the mask's True pixels.

    Alpha is 255 inside the mask and 0 elsewhere; RGB is the image where
    alpha is 255 and 0 elsewhere. An empty mask gives a 1x1 transparent
    image.
    """
    rgb = to_rgb_array(image)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != rgb.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match image {rgb.shape[:2]}")
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return np.zeros((1, 1, 4), np.uint8)
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    m = mask[y0:y1, x0:x1]
    out = np.zeros((y1 - y0, x1 - x0, 4), np.uint8)
    out[..., :3] = rgb[y0:y1, x0:x1] * m[..., None]
    out[..., 3] = m * np.uint8(255)
    return out


def to_png_bytes(array) -> bytes:
    """PNG bytes of an ``HxW`` (gray), ``HxWx3`` (RGB) or ``HxWx4`` (RGBA) array."""
    arr = np.asarray(array)
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = np.concatenate(
                [to_rgb_array(arr[..., :3]), to_rgb_array(arr[..., 3])[..., :1]], axis=2)
        else:
            arr = to_rgb_array(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise ValueError(f"expected HxW, HxWx3 or HxWx4, got shape {arr.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()
