"""Numpy explanations of one run's stages, computed from its record
(:class:`mrcnn.intermediates.Intermediates`): IoU and NMS as TensorFlow computes
them, the detection layer's selection at another threshold, the anchors at a
point, the RoI level formula, objectness per level, pasting a soft mask.

No TensorFlow: a page control that changes only a picture never touches the network.
``record`` arguments are :class:`~mrcnn.intermediates.Intermediates` (this module does
not import it: the record depends on these helpers, not the other way round).
"""
from __future__ import annotations

import math

import numpy as np

from mrcnn.box_ops import box_iou
from mrcnn.molding import stretch_mask

FEATURE_STRIDES = {"C2": 4, "C3": 8, "C4": 16, "C5": 32,
                   "P2": 4, "P3": 8, "P4": 16, "P5": 32, "P6": 64}
RPN_LEVELS = ("P2", "P3", "P4", "P5", "P6")


def iou(box, boxes) -> np.ndarray:
    """IoU of one box with each of ``boxes`` (n, 4), as TensorFlow's NMS computes it
    (float32, :func:`mrcnn.box_ops.box_iou`).

    Corners may come in either order; a box of zero area has IoU 0 with everything.
    """
    box = np.asarray(box, np.float32).reshape(1, 4)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    return box_iou(box, boxes, either_order=True)[0]


def nms(boxes, scores, threshold, max_output) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best first.

    Boxes are visited by score (lower index first among equals); a box is dropped
    when its IoU with an already kept box is strictly above ``threshold``.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float32), kind="stable")
    kept = []
    for i in order:
        if len(kept) >= max_output:
            break
        if not kept or not (iou(boxes[i], boxes[kept]) > threshold).any():
            kept.append(int(i))
    return np.array(kept, dtype=np.int64)


def detections_at(record, min_confidence: float,
                  nms_threshold: float | None = None, class_agnostic: bool = False) -> dict:
    """The detection layer's selection redone in numpy for another confidence cut.

    Returns ``{"candidates": RoI indices with a non-background class and score >=
    min_confidence, "kept": RoI indices that survive NMS, best first, at most
    DETECTION_MAX_INSTANCES}``. NMS runs per class as in the detection layer, or
    over all classes together with ``class_agnostic`` (a what-if: a box then also
    suppresses overlapping boxes of other classes). At the config's own settings
    ``kept`` picks exactly the RoIs behind the engine's detections.
    """
    insp = record
    threshold = insp.detection_nms_threshold if nms_threshold is None else nms_threshold
    limit = insp.detection_max_instances
    candidate = insp.roi_class_ids > 0
    if min_confidence:
        candidate &= insp.roi_scores >= np.float32(min_confidence)
    candidates = np.flatnonzero(candidate)
    groups = ([candidates] if class_agnostic else
              [candidates[insp.roi_class_ids[candidates] == class_id]
               for class_id in np.unique(insp.roi_class_ids[candidates])])
    kept = []
    for members in groups:
        keep = nms(insp.roi_refined_boxes[members], insp.roi_scores[members], threshold, limit)
        kept.extend(members[keep])
    kept = np.sort(np.array(kept, dtype=np.int64))
    kept = kept[np.argsort(-insp.roi_scores[kept], kind="stable")][:limit]
    return {"candidates": candidates, "kept": kept}


def anchors_at(record, level: int, y: float, x: float) -> dict:
    """The anchors of pyramid level ``level`` (2..6) centred nearest to pixel (y, x).

    Returns the feature-map cell, its centre in molded pixels, the anchors' indices
    in ``inspection.anchors``, their pixel boxes (float, y1 x1 y2 x2) and objectness.
    """
    insp = record
    i = level - 2
    stride = FEATURE_STRIDES[f"P{level}"] * insp.anchor_stride
    rows, cols = (int(math.ceil(n / insp.anchor_stride)) for n in insp.level_shapes[i])
    row = int(np.clip(round(y / stride), 0, rows - 1))
    col = int(np.clip(round(x / stride), 0, cols - 1))
    per_cell = len(insp.anchor_ratios)
    first = int(insp.anchors_per_level[:i].sum()) + (row * cols + col) * per_cell
    ids = np.arange(first, first + per_cell)
    h, w = insp.molded_shape
    pixels = insp.anchors[ids].astype(np.float64) * [h - 1, w - 1, h - 1, w - 1] + [0, 0, 1, 1]
    return {"row": row, "col": col, "center": (row * stride, col * stride), "ids": ids,
            "boxes": pixels, "objectness": insp.objectness[ids], "stride": stride,
            "scale": insp.anchor_scales[i]}


def level_formula(record, proposal: int) -> dict:
    """The numbers in level = min(5, max(2, 4 + round(log2(sqrt(h*w) / (224 / sqrt(H*W))))))."""
    insp = record
    y1, x1, y2, x2 = insp.proposals[proposal].astype(np.float32)
    h, w = insp.molded_shape
    side = float(np.sqrt((y2 - y1) * (x2 - x1)))
    ratio = side / (224.0 / math.sqrt(h * w))
    log2 = math.log2(ratio) if ratio > 0 else float("-inf")
    return {"h": float(y2 - y1), "w": float(x2 - x1), "side": side,
            "side_px": side * math.sqrt(h * w), "ratio": ratio, "log2": log2,
            "rounded": int(np.round(log2)) if np.isfinite(log2) else None,
            "level": int(insp.proposal_levels[proposal])}


def objectness_maps(record) -> dict:
    """Per RPN level, the best objectness of the anchors at each cell: name -> (rows, cols)."""
    insp = record
    maps, start = {}, 0
    for name, (rows, cols), count in zip(RPN_LEVELS, insp.level_shapes, insp.anchors_per_level):
        level = insp.objectness[start:start + int(count)]
        maps[name] = level.reshape(-(-rows // insp.anchor_stride),
                                   -(-cols // insp.anchor_stride), -1).max(axis=2)
        start += int(count)
    return maps


def intersection(box_a, box_b):
    """The overlap of two pixel boxes [y1, x1, y2, x2], or None when they do not overlap."""
    y1, x1 = max(box_a[0], box_b[0]), max(box_a[1], box_b[1])
    y2, x2 = min(box_a[2], box_b[2]), min(box_a[3], box_b[3])
    return [y1, x1, y2, x2] if y2 > y1 and x2 > x1 else None


def image_patch(record, box_px) -> np.ndarray:
    """The molded image under a pixel box (at least 1x1)."""
    y1, x1, y2, x2 = (int(v) for v in box_px)
    y1, x1 = max(y1, 0), max(x1, 0)
    return record.molded_image[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]


def paste_soft_mask(soft_mask, box, image_shape) -> np.ndarray:
    """A 28x28 soft mask resized onto its box, inside a float32 (h, w) image of zeros.

    Thresholding it at 0.5 gives exactly ``unmold_mask``'s mask.
    """
    y1, x1, y2, x2 = (int(v) for v in box)
    full = np.zeros(tuple(image_shape[:2]), np.float32)
    if y2 > y1 and x2 > x1:
        full[y1:y2, x1:x2] = stretch_mask(soft_mask, y2 - y1, x2 - x1)
    return full
