"""Object masks as polygons: the outlines the annotation formats write.

Each separate part of an object's mask becomes one polygon, simplified so that no point
of its outline moves more than the tolerance in pixels; an object with a hole stays an
exact RLE mask in COCO, while YOLO and LabelMe, which hold only polygons, cut each hole
into its part with a zero-width slit (and YOLO, one line per object, joins the parts the
same way); parts and holes that simplification shrinks below three corners are dropped,
unless that would drop the whole object.

Outlines come from scikit-image: ``find_contours`` at level 0.5 on the mask padded with
one background pixel (so objects touching the image border close), diagonal neighbours
joined (``fully_connected="high"``), then ``approximate_polygon`` (Douglas-Peucker).

Shape shorthand: a *ring* is ``(K, 2) float64`` ``[x, y]`` vertices, open (the last vertex
is not repeated), in image pixels with pixel ``(row r, column c)`` centred on ``(c, r)``:
scikit-image's, OpenCV's and LabelMe's convention. COCO counts pixel ``(r, c)`` as the
square ``[c, c+1] x [r, r+1]``; :mod:`mrcnn.export.coco_instances` shifts by half a pixel.
Outer rings wind one way and holes the other (negative and positive :func:`signed_area`),
so a ring with slits fills correctly under both the even-odd and the non-zero rule.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.spatial import cKDTree
from skimage.measure import approximate_polygon, find_contours, points_in_poly

from mrcnn.draw.overlay import mask_crops

__all__ = ["DEFAULT_TOLERANCE", "POLYGON_RULE", "MaskOutline", "ObjectShape", "mask_outline",
           "object_shapes", "signed_area"]

#: Simplification tolerance (pixels) when the visitor does not choose one.
DEFAULT_TOLERANCE = 1.0

#: The rule in one sentence, as the module docstring states it, for the page's help.
POLYGON_RULE = (
    "Each separate part of an object's mask becomes one polygon, simplified so that no point "
    "of its outline moves more than the tolerance in pixels; an object with a hole stays an "
    "exact RLE mask in COCO, while YOLO and LabelMe, which hold only polygons, cut each hole "
    "into its part with a zero-width slit (and YOLO, one line per object, joins the parts the "
    "same way); parts and holes that simplification shrinks below three corners are dropped, "
    "unless that would drop the whole object.")


def signed_area(ring: np.ndarray) -> float:
    """Shoelace area of a ring in ``[x, y]`` with y pointing down: < 0 outer, > 0 hole."""
    x, y = ring[:, 0], ring[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _splice(ring: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``ring`` with ``other`` inserted at their closest vertices, joined by a zero-width cut.

    The cut is walked there and back: ``..., ring[i], other[j], ..., other[j], ring[i], ...``.
    """
    distances, nearest = cKDTree(ring).query(other)
    j = int(np.argmin(distances))
    i = int(nearest[j])
    around = np.roll(other, -j, axis=0)
    return np.concatenate([ring[:i + 1], around, around[:1], ring[i:]])


@dataclass(frozen=True)
class MaskOutline:
    """One object's mask as rings (see the module's shape shorthand).

    ``parts[i]`` is the outer ring of separate part ``i``, largest first;
    ``holes[i]`` the rings of that part's holes.
    """
    parts: tuple[np.ndarray, ...]
    holes: tuple[tuple[np.ndarray, ...], ...]

    @property
    def has_holes(self) -> bool:
        return any(self.holes)

    def slit_rings(self) -> list[np.ndarray]:
        """One ring per part, each of its holes cut in by a zero-width slit."""
        rings = []
        for part, holes in zip(self.parts, self.holes):
            for hole in holes:
                part = _splice(part, hole)
            rings.append(part)
        return rings

    def joined_ring(self) -> np.ndarray:
        """The whole outline as one ring: :meth:`slit_rings` joined by zero-width cuts.

        The way Ultralytics' COCO converter writes an object of several parts on one line.
        """
        rings = self.slit_rings()
        joined = rings[0]
        for ring in rings[1:]:
            joined = _splice(joined, ring)
        return joined


def _simplified(contour: np.ndarray, tolerance: float) -> np.ndarray | None:
    """A closed contour (first vertex repeated last) simplified to an open ring, or None."""
    ring = approximate_polygon(contour, tolerance)[:-1] if tolerance > 0 else contour[:-1]
    if len(np.unique(ring, axis=0)) < 3 or signed_area(ring) == 0:
        return None
    return ring


def mask_outline(crop, origin=(0, 0), tolerance: float = DEFAULT_TOLERANCE) -> MaskOutline:
    """Outline of the mask ``crop`` (bool ``(h, w)``) whose top-left pixel is ``origin`` (y, x).

    Returns no parts for an empty crop. Otherwise at least one part: when ``tolerance``
    would shrink every part below three corners, the unsimplified outline is returned.
    """
    crop = np.asarray(crop, dtype=bool)
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0 pixels, got {tolerance}")
    if not crop.any():
        return MaskOutline((), ())
    padded = np.pad(crop, 1).astype(np.float64)
    contours = find_contours(padded, 0.5, fully_connected="high", positive_orientation="high")
    shift = np.array([origin[1] - 1, origin[0] - 1], np.float64)
    rings = [contour[:, ::-1] + shift for contour in contours]       # (row, col) -> (x, y)
    areas = [signed_area(ring) for ring in rings]
    outer = sorted((i for i, a in enumerate(areas) if a < 0), key=lambda i: areas[i])
    holes_of = {i: [] for i in outer}
    for h in (i for i, a in enumerate(areas) if a > 0):
        # The hole belongs to the smallest outer ring around it (an island in a lake
        # has its own outer ring inside the lake, and holes of its own).
        around = [i for i in outer if points_in_poly(rings[h][:1], rings[i])[0]]
        if around:
            holes_of[max(around, key=lambda i: areas[i])].append(h)

    def build(tol: float) -> MaskOutline:
        parts, holes = [], []
        for i in outer:
            part = _simplified(rings[i], tol)
            if part is None:
                continue
            kept = (_simplified(rings[h], tol) for h in holes_of[i])
            parts.append(part)
            holes.append(tuple(hole for hole in kept if hole is not None))
        return MaskOutline(tuple(parts), tuple(holes))

    outline = build(tolerance)
    return outline if outline.parts else build(0.0)


class ObjectShape(NamedTuple):
    """One detection's mask, ready for every format.

    ``index`` is its place in the result; ``window`` ``(y1, x1, y2, x2)`` the mask's tight
    box in the image (exclusive ends); ``crop`` bool ``(y2 - y1, x2 - x1)`` the mask
    inside it; ``outline`` its :class:`MaskOutline`.
    """
    index: int
    window: tuple[int, int, int, int]
    crop: np.ndarray
    outline: MaskOutline


def object_shapes(masks, image_shape, tolerance: float = DEFAULT_TOLERANCE
                  ) -> Iterator[ObjectShape]:
    """:class:`ObjectShape` of each non-empty mask, in result order, one mask at a time.

    ``masks`` is matterport's ``(H, W, N)`` array or :class:`~mrcnn.results.CompactMasks`;
    objects whose mask is empty are skipped (no format can draw them).
    """
    for index, y0, x0, crop in mask_crops(masks, image_shape):
        rows = np.flatnonzero(crop.any(axis=1))
        if rows.size == 0:
            continue
        cols = np.flatnonzero(crop.any(axis=0))
        tight = crop[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        y1, x1 = y0 + int(rows[0]), x0 + int(cols[0])
        yield ObjectShape(index, (y1, x1, y1 + tight.shape[0], x1 + tight.shape[1]), tight,
                          mask_outline(tight, (y1, x1), tolerance))
