"""Drawing detections on the image: overlay, cut-outs, PNG bytes.

One palette (:func:`palette`), one place that decides label text
(:func:`label_text`), one blend rule (``(1 - alpha) * image + alpha *
colour`` inside each mask), one outline rule (inner mask boundary with
4-connectivity, as ``skimage.segmentation.find_boundaries(mode="inner")``).
Colour ``i`` belongs to detection ``i`` everywhere: overlay, table, gallery; and since
colour alone tells nobody apart who cannot see it, labels can carry the object's number.
Masks may be matterport's ``(H, W, N)`` array or :class:`~mrcnn.results.CompactMasks`;
either way only each mask's own rectangle is touched.
"""
from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image, ImageDraw

from mrcnn.classes import class_name
from mrcnn.draw.fonts import font
from mrcnn.pixels import to_rgb_array
from mrcnn.results import CompactMasks

__all__ = ["BOX_THICKNESS", "cutout", "cutout_from_crop", "draw_detections", "inner_boundary",
           "label_text", "mask_crops", "palette", "to_png_bytes"]

BOX_THICKNESS = 2
#: Eight colours any two of which stay apart (CIEDE2000 >= 15) with normal colour vision
#: and under full protanopia, deuteranopia and tritanopia (Machado et al. 2009), ordered so
#: that neighbours differ most (>= 28). Chosen by a search over saturated colours. With
#: the later rounds' shades, objects #i and #i+1 or #i+2 stay >= 23 apart and any eight
#: consecutive ones >= 12 (``tests/test_colour_vision.py``).
_BASE_COLOURS = ((255, 51, 119), (51, 255, 255), (51, 68, 255), (217, 165, 11),
                 (178, 9, 23), (23, 9, 178), (89, 158, 255), (255, 255, 51))
#: Each round of eight is a little darker than the last, so colours stay distinct.
_ROUND_SHADES = (1.0, 0.97, 0.94, 0.91)


def palette(n: int) -> np.ndarray:
    """``n`` distinct, saturated, deterministic colours, ``(n, 3) uint8``.

    Colour ``i`` is base colour ``i % 8`` in the shade of round ``i // 8``, so it never
    depends on ``n``; any eight consecutive objects can be told apart by people with
    any of the common colour-vision deficiencies, and objects further apart (which
    may share a hue) by their numbers.
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    index = np.arange(n)
    base = np.asarray(_BASE_COLOURS, np.float64)[index % len(_BASE_COLOURS)]
    shade = np.asarray(_ROUND_SHADES)[(index // len(_BASE_COLOURS)) % len(_ROUND_SHADES)]
    return np.rint(base * shade[:, None]).astype(np.uint8).reshape(n, 3)


def label_text(class_name: str, score: float | None = None, number: int | None = None) -> str:
    """Caption for a detection, e.g. ``"person 0.98"``, or ``"#3 person 0.98"`` with its
    ``number`` (the object's number in the table and the gallery)."""
    text = str(class_name) if score is None else f"{class_name} {float(score):.2f}"
    return text if number is None else f"#{int(number)} {text}"


def inner_boundary(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a 4-neighbour outside the mask (image edges reflect).

    Same as ``find_boundaries(mask, mode="inner")`` for a 2-D bool mask.
    """
    mask = np.asarray(mask, dtype=bool)
    p = np.pad(mask, 1, mode="edge")
    eroded = (p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1]
              & p[1:-1, :-2] & p[1:-1, 2:])
    return mask & ~eroded


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


def mask_crops(masks, image_shape):
    """``(index, y0, x0, crop)`` of each non-empty mask, ``crop`` bool inside its rectangle.

    ``masks`` is an ``(H, W, N)`` array (each mask's tight rectangle is found in
    two passes over the stack) or :class:`CompactMasks` (its windows are used).
    """
    height, width = image_shape[:2]
    if isinstance(masks, CompactMasks):
        if masks.image_shape != (height, width):
            raise ValueError(f"masks are for {masks.image_shape}, the image is {(height, width)}")
        for i, (y0, x0, y1, x1) in enumerate(masks.windows):
            if y1 > y0 and x1 > x0:
                yield i, int(y0), int(x0), masks.crop(i)
        return
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[:2] != (height, width):
        raise ValueError(f"masks must be ({height}, {width}, N), got {masks.shape}")
    masks = masks.astype(bool, copy=False)
    rows_any, cols_any = masks.any(axis=1), masks.any(axis=0)     # (H, N), (W, N)
    present = rows_any.any(axis=0)
    row0, col0 = np.argmax(rows_any, axis=0), np.argmax(cols_any, axis=0)
    row1 = height - np.argmax(rows_any[::-1], axis=0)
    col1 = width - np.argmax(cols_any[::-1], axis=0)
    for i in np.flatnonzero(present):
        yield int(i), int(row0[i]), int(col0[i]), masks[row0[i]:row1[i], col0[i]:col1[i], i]


def draw_detections(image, result: dict, class_names, *, colors=None,
                    mask_alpha: float = 0.5, show_masks: bool = True,
                    show_boxes: bool = True, show_labels: bool = True,
                    show_outlines: bool = True, numbers=None) -> np.ndarray:
    """Draw masks, outlines, boxes and labels; return a new ``HxWx3 uint8``.

    Detection ``i`` uses ``colors[i]`` (default :func:`palette`). Inside a
    mask, ``out = round((1 - mask_alpha) * image + mask_alpha * colour)``;
    outline pixels (:func:`inner_boundary`) and 2-px boxes are painted in
    full colour; labels (:func:`label_text`) sit on a filled colour tag
    above the box, moved inside the image when needed; with ``numbers``
    (one per detection) each label starts with its number, ``"#3 cup 0.91"``. Lower-scored
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

    order = range(n - 1, -1, -1)  # lowest score first, best on top
    masks = result.get("masks")
    if (show_masks or show_outlines) and masks is not None:
        count = len(masks) if isinstance(masks, CompactMasks) else np.shape(masks)[-1]
        if count != n:
            raise ValueError(f"{n} detections but {count} masks")
        crops = {i: (y0, x0, crop) for i, y0, x0, crop in mask_crops(masks, out.shape)}
        for i in order:
            if i not in crops:
                continue
            y0, x0, m = crops[i]
            y1, x1 = y0 + m.shape[0], x0 + m.shape[1]
            colour = cols[i]
            if show_masks and alpha > 0.0:
                region = out[y0:y1, x0:x1]
                blended = ((1.0 - alpha) * region[m].astype(np.float64)
                           + alpha * colour.astype(np.float64))
                region[m] = np.rint(blended).astype(np.uint8)
            if show_outlines:
                # One pixel of margin (clipped to the image) so the edge test sees
                # real neighbours, and reflection at image edges.
                top, left = max(y0 - 1, 0), max(x0 - 1, 0)
                bottom, right = min(y1 + 1, height), min(x1 + 1, width)
                padded = np.zeros((bottom - top, right - left), bool)
                padded[y0 - top:y0 - top + m.shape[0], x0 - left:x0 - left + m.shape[1]] = m
                out[top:bottom, left:right][inner_boundary(padded)] = colour

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
        if numbers is not None and len(numbers) != n:
            raise ValueError(f"{n} detections but {len(numbers)} numbers")
        _draw_labels(out, rois, class_ids, scores, class_names, cols, order, numbers)
    return out


def _draw_labels(out, rois, class_ids, scores, class_names, cols, order, numbers=None):
    height, width = out.shape[:2]
    size = _font_size(height, width)
    for i in order:
        text = label_text(class_name(class_names, class_ids[i]),
                          None if scores is None else scores[i],
                          None if numbers is None else numbers[i])
        tag = _label_tag(text, size, tuple(int(c) for c in cols[i]))
        tag_h, tag_w = tag.shape[:2]
        y1, x1, y2, x2 = (int(v) for v in rois[i])
        tx = min(max(x1, 0), max(width - tag_w, 0))
        ty = y1 - tag_h
        if ty < 0:  # no room above: put the tag inside the top of the box
            ty = min(max(y1, 0), max(height - tag_h, 0))
        visible = out[ty:ty + tag_h, tx:tx + tag_w]
        visible[...] = tag[:visible.shape[0], :visible.shape[1]]


@functools.lru_cache(maxsize=4096)
def _label_tag(text: str, size: int, colour: tuple) -> np.ndarray:
    """A label's filled tag with its text, [h, w, 3] uint8 (read-only).

    Rendering text is most of the overlay's cost; a slider move redraws the same
    labels, so each (text, size, colour) is rendered once.
    """
    label_font = font(size)
    pad = 2
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox(
        (0, 0), text, font=label_font)
    tag = Image.new("RGB", (right - left + 2 * pad, bottom - top + 2 * pad), colour)
    ImageDraw.Draw(tag).text((pad - left, pad - top), text, font=label_font,
                             fill=_text_colour(colour))
    array = np.asarray(tag).copy()
    array.flags.writeable = False
    return array


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
    return cutout_from_crop(rgb, mask, (0, 0))


def cutout_from_crop(image, crop, origin) -> np.ndarray:
    """:func:`cutout` of a mask given as ``crop`` placed at ``origin`` (y0, x0) in ``image``."""
    rgb = to_rgb_array(image)
    crop = np.asarray(crop, dtype=bool)
    rows = np.flatnonzero(crop.any(axis=1))
    if rows.size == 0:
        return np.zeros((1, 1, 4), np.uint8)
    cols = np.flatnonzero(crop.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    m = crop[r0:r1, c0:c1]
    y0, x0 = int(origin[0]) + r0, int(origin[1]) + c0
    out = np.zeros((r1 - r0, c1 - c0, 4), np.uint8)
    out[..., :3] = rgb[y0:y0 + m.shape[0], x0:x0 + m.shape[1]] * m[..., None]
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
