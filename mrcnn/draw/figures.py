"""The teaching page's figures: heat maps, boxes, close-ups, class bars.

Pure numpy / Pillow / matplotlib on the arrays of :mod:`mrcnn.intermediates`;
nothing here touches the network.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from mrcnn.draw.fonts import font

__all__ = ["class_bars", "colormap", "dim", "draw_boxes", "enlarge", "heatmap_over",
           "resize_picture", "tint", "zoom", "zoom_region"]


def colormap(values, cmap="magma", vmin=None, vmax=None) -> np.ndarray:
    """A 2-D array as an RGB uint8 picture through a matplotlib colour map."""
    import matplotlib
    values = np.asarray(values, np.float64)
    lo = np.nanmin(values) if vmin is None else vmin
    hi = np.nanmax(values) if vmax is None else vmax
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    rgba = matplotlib.colormaps[cmap](np.clip(scaled, 0, 1), bytes=True)
    return np.ascontiguousarray(rgba[..., :3])


def enlarge(picture, size: int) -> np.ndarray:
    """Nearest-neighbour enlargement so each cell of a small map stays a visible square."""
    picture = np.asarray(picture)
    factor = max(1, size // max(picture.shape[:2]))
    return picture.repeat(factor, axis=0).repeat(factor, axis=1)


def resize_picture(picture, size, smooth=True) -> np.ndarray:
    """RGB uint8 resized to (height, width), bilinear or nearest-neighbour (display only)."""
    height, width = size
    return np.asarray(Image.fromarray(np.asarray(picture, np.uint8)).resize(
        (int(width), int(height)), Image.BILINEAR if smooth else Image.NEAREST))


def heatmap_over(image, values, alpha=0.6, cmap="magma") -> np.ndarray:
    """``values`` (any size) stretched over ``image`` and blended in with ``alpha``."""
    image = np.asarray(image, np.uint8)
    heat = resize_picture(colormap(values, cmap), image.shape[:2])
    return np.rint((1 - alpha) * image + alpha * heat).astype(np.uint8)


def draw_boxes(picture, boxes, colors, width=2, labels=None, fill_alpha=0.0,
               scale=1.0) -> np.ndarray:
    """Rectangles (pixel y1, x1, y2, x2 times ``scale``) on a copy of ``picture``.

    ``colors`` is one RGB triple or one per box; ``labels`` optional text per box;
    ``fill_alpha`` > 0 also tints the inside.
    """
    canvas = Image.fromarray(np.asarray(picture, np.uint8)).convert("RGBA")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4) * scale
    colors = np.asarray(colors, np.uint8).reshape(-1, 3)
    if len(colors) == 1:
        colors = np.repeat(colors, len(boxes), axis=0)
    overlay = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    label_font = font(max(11, int(round(max(canvas.size) * 0.022))))
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        colour = tuple(int(c) for c in colors[i])
        fill = colour + (int(255 * fill_alpha),) if fill_alpha else None
        draw.rectangle((x1, y1, x2, y2), outline=colour + (255,), width=width, fill=fill)
        if labels is not None and labels[i]:
            left, top, right, bottom = draw.textbbox((0, 0), labels[i], font=label_font)
            ty = max(0, y1 - (bottom - top) - 4)
            draw.rectangle((x1, ty, x1 + right - left + 4, ty + bottom - top + 4),
                           fill=colour + (230,))
            luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
            draw.text((x1 + 2 - left, ty + 2 - top), labels[i], font=label_font,
                      fill=(0, 0, 0, 255) if luminance > 150 else (255, 255, 255, 255))
    return np.asarray(Image.alpha_composite(canvas, overlay).convert("RGB"))


def zoom_region(boxes_px, image_shape, margin=0.5, min_side=48) -> tuple:
    """A square region (y1, x1, y2, x2) around one or more pixel boxes, with ``margin``
    of their size on each side, at least ``min_side`` pixels, kept inside the image."""
    boxes = np.asarray(boxes_px, np.float64).reshape(-1, 4)
    y1, x1 = boxes[:, :2].min(axis=0)
    y2, x2 = boxes[:, 2:].max(axis=0)
    side = max(y2 - y1, x2 - x1) * (1 + 2 * margin)
    side = int(min(max(side, min_side), *image_shape[:2]))
    cy, cx = (y1 + y2) / 2, (x1 + x2) / 2
    top = int(np.clip(round(cy - side / 2), 0, image_shape[0] - side))
    left = int(np.clip(round(cx - side / 2), 0, image_shape[1] - side))
    return top, left, top + side, left + side


def zoom(picture, region, boxes=(), colors=((255, 255, 255),), labels=None, size=320,
         width=3, smooth=True) -> np.ndarray:
    """``picture`` cut to ``region`` and enlarged to ``size`` px, with pixel ``boxes`` drawn.

    ``smooth=False`` enlarges with nearest neighbour, so single pixels stay visible.
    """
    top, left, bottom, right = region
    crop = np.asarray(picture)[top:bottom, left:right]
    factor = size / max(crop.shape[:2])
    enlarged = resize_picture(crop, (round(crop.shape[0] * factor), round(crop.shape[1] * factor)),
                              smooth=smooth)
    if len(boxes) == 0:
        return enlarged
    shifted = np.asarray(boxes, np.float64).reshape(-1, 4) - [top, left, top, left]
    return draw_boxes(enlarged, shifted, colors, width=width, labels=labels, scale=factor)


def tint(picture, mask, colour, alpha=0.5) -> np.ndarray:
    """A copy of ``picture`` with the pixels of ``mask`` (h, w bool) blended towards ``colour``."""
    out = np.array(picture, np.uint8, copy=True)
    mask = np.asarray(mask, bool)
    out[mask] = np.rint((1 - alpha) * out[mask] + alpha * np.asarray(colour, np.float64))
    return out


def dim(picture, amount=0.45) -> np.ndarray:
    """Darken a picture so boxes drawn over it stand out."""
    return np.rint(np.asarray(picture, np.float32) * (1 - amount)).astype(np.uint8)


def class_bars(names, probabilities, highlight=0, width=520) -> np.ndarray:
    """A horizontal bar chart of class probabilities (RGB uint8), best on top."""
    row, label_width, pad = 34, 150, 12
    bar_width = width - label_width - 70
    height = row * len(names) + 2 * pad + 22
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    label_font = font(15)
    small = font(12)
    for i, (name, p) in enumerate(zip(names, probabilities)):
        top = pad + i * row
        colour = (228, 87, 46) if i == highlight else (138, 160, 184)
        draw.text((label_width - 10, top + row // 2), str(name), font=label_font, fill=(30, 30, 30),
                  anchor="rm")
        draw.rectangle((label_width, top + 5, label_width + bar_width, top + row - 5),
                       fill=(240, 242, 246))
        length = int(round(float(p) * bar_width))
        if length > 0:
            draw.rectangle((label_width, top + 5, label_width + length, top + row - 5), fill=colour)
        draw.text((label_width + bar_width + 8, top + row // 2), f"{float(p):.3f}", font=label_font,
                  fill=(30, 30, 30), anchor="lm")
    axis = pad + row * len(names) + 4
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = label_width + int(round(tick * bar_width))
        draw.line((x, axis, x, axis + 4), fill=(120, 120, 120))
        draw.text((x, axis + 6), f"{tick:g}", font=small, fill=(90, 90, 90), anchor="mt")
    return np.asarray(canvas)
