"""Clips made by code (nothing to download, nothing binary in the repository): moving
shapes with known ids, for the shapes model, the benchmark and the tests; a slow pan
over a public-domain photo, for the COCO model.

Shapes are drawn as :mod:`mrcnn.training.shapes` draws its training pictures (squares,
circles, upright triangles of one flat colour on a plain background), but they move:
straight lines at constant speed, bouncing off the frame's edges, so their paths cross
and two of them sometimes overlap for a moment (the one with the higher id on top). The
ground truth of every frame is each shape's id, class and visible mask.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import skimage.draw

from mrcnn.video.encode import H264Writer

__all__ = ["SHAPE_CLASS_NAMES", "GroundTruth", "moving_shapes", "panning_photo", "write_clip"]

#: The shapes model's classes (``mrcnn.training.shapes.CLASS_NAMES``).
SHAPE_CLASS_NAMES = ["BG", "square", "circle", "triangle"]


@dataclass(frozen=True)
class GroundTruth:
    """One shape in one frame: its id (from 1), class id and visible mask."""
    id: int
    class_id: int
    mask: np.ndarray            # (H, W) bool, what is not hidden by shapes on top

    @property
    def box(self) -> np.ndarray:
        """``[y1, x1, y2, x2]`` of the visible mask (zeros when fully hidden)."""
        rows, cols = np.flatnonzero(self.mask.any(axis=1)), np.flatnonzero(self.mask.any(axis=0))
        if not rows.size:
            return np.zeros(4, np.int32)
        return np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1], np.int32)


def _shape_mask(class_id: int, cy: float, cx: float, r: float, height: int, width: int):
    mask = np.zeros((height, width), bool)
    if class_id == 2:
        mask[skimage.draw.disk((cy, cx), r, shape=(height, width))] = True
        return mask
    if class_id == 1:
        rows = np.array([cy - r, cy - r, cy + r, cy + r])
        cols = np.array([cx - r, cx + r, cx + r, cx - r])
    else:
        half_base = 2 * r / np.sqrt(3)
        rows, cols = np.array([cy - r, cy + r, cy + r]), np.array([cx, cx - half_base,
                                                                    cx + half_base])
    mask[skimage.draw.polygon(rows, cols, shape=(height, width))] = True
    return mask


def _bounce(position: float, low: float, high: float) -> float:
    """``position`` folded back into ``[low, high]`` (a reflection at each edge)."""
    span = high - low
    folded = (position - low) % (2 * span)
    return low + (folded if folded <= span else 2 * span - folded)


def moving_shapes(seconds: float = 10.0, fps: float = 25.0, size: int = 256, count: int = 4,
                  seed: int = 0, speed=(0.35, 0.8), first: int = 0) -> Iterator[
                      tuple[np.ndarray, list[GroundTruth]]]:
    """``(frame, ground truth)`` for each of ``seconds * fps`` frames of ``count`` shapes
    moving over a ``size`` x ``size`` picture. Shapes start spread around the centre and
    head across it, each at a ``speed`` between the two given (shares of the frame per
    second), so their paths cross. ``first`` skips the frames before it (nothing is drawn
    for them; the frames from ``first`` on are the same)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, 3)
    colours, shapes = [], []
    for i in range(count):
        while True:
            colour = rng.integers(0, 256, 3)
            if all(np.linalg.norm(colour - c) >= 90 for c in [background, *colours]):
                break
        colours.append(colour)
        r = float(rng.uniform(0.085, 0.115) * size)
        angle = 2 * np.pi * i / count + rng.uniform(-0.3, 0.3)
        start = size / 2 + 0.32 * size * np.array([np.sin(angle), np.cos(angle)])
        heading = angle + np.pi + rng.uniform(-0.5, 0.5)
        pace = rng.uniform(*speed) * size
        shapes.append((i % 3 + 1, r, start, pace * np.array([np.sin(heading),
                                                             np.cos(heading)])))
    for frame_index in range(int(first), int(round(seconds * fps))):
        t = frame_index / fps
        image = np.broadcast_to(background.astype(np.uint8), (size, size, 3)).copy()
        masks = []
        for class_id, r, start, velocity in shapes:
            margin = 1.2 * r + 1
            cy = _bounce(start[0] + velocity[0] * t, margin, size - margin)
            cx = _bounce(start[1] + velocity[1] * t, margin, size - margin)
            masks.append(_shape_mask(class_id, cy, cx, r, size, size))
        truth = []
        for i, mask in enumerate(masks):
            visible = mask & ~np.any(masks[i + 1:], axis=0) if i + 1 < count else mask
            image[mask] = colours[i]
            truth.append(GroundTruth(i + 1, shapes[i][0], visible))
        yield image, truth


def panning_photo(photo: np.ndarray, seconds: float = 5.0, fps: float = 10.0,
                  window=384) -> Iterator[np.ndarray]:
    """A view of ``window`` pixels (a side, or ``(height, width)``) moving diagonally
    across ``photo`` (H x W x 3) from its top-left corner to its bottom-right one."""
    height, width = photo.shape[:2]
    view_h, view_w = (window, window) if np.isscalar(window) else window
    view_h, view_w = min(int(view_h), height), min(int(view_w), width)
    frames = int(round(seconds * fps))
    for k in range(frames):
        share = k / max(frames - 1, 1)
        y = int(round(share * (height - view_h)))
        x = int(round(share * (width - view_w)))
        yield np.ascontiguousarray(photo[y:y + view_h, x:x + view_w])


def write_clip(path, frames, fps: float, crf: int = 18) -> int:
    """Encode ``frames`` (RGB arrays) as an H.264 MP4 at ``path``; returns the count."""
    with H264Writer(path, fps, crf=crf) as writer:
        for frame in frames:
            writer.write(frame)
        return writer.frames
