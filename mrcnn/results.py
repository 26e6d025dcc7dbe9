"""Helpers on matterport's detection result dict (no TensorFlow).

A result is ``{"rois": (N,4) int32 y1,x1,y2,x2, "class_ids": (N,) int32,
"scores": (N,) float32, "masks": (H,W,N) bool}``, ordered by score
descending.
"""
from __future__ import annotations

import numpy as np

__all__ = ["PER_DETECTION_KEYS", "empty_result", "filter_detections",
           "mask_areas", "num_detections"]

#: Keys whose arrays have one entry per detection along axis 0.
PER_DETECTION_KEYS = ("rois", "class_ids", "scores")


def num_detections(result: dict) -> int:
    """Number of detections in ``result``."""
    return int(np.asarray(result["class_ids"]).shape[0])


def empty_result(height: int, width: int) -> dict:
    """A result with no detections for an ``height x width`` image."""
    return {
        "rois": np.zeros((0, 4), np.int32),
        "class_ids": np.zeros((0,), np.int32),
        "scores": np.zeros((0,), np.float32),
        "masks": np.zeros((height, width, 0), bool),
    }


def filter_detections(result: dict, min_score: float = 0.0,
                      class_ids=None) -> dict:
    """A new result with only the detections that pass both filters.

    Kept: ``score >= min_score`` (compared in the scores' own precision, so a
    float32 score equal to the threshold as typed is kept) and, when
    ``class_ids`` is given, ``class_id in class_ids`` (an empty collection
    keeps nothing). Order, keys and dtypes are unchanged; ``masks`` is
    sliced along its last axis. Other keys are copied through unchanged.
    The input is not modified and the output shares no arrays with it.
    """
    scores = np.asarray(result["scores"])
    ids = np.asarray(result["class_ids"])
    threshold = np.asarray(min_score, dtype=scores.dtype if scores.dtype.kind == "f"
                           else np.float64)
    keep = scores >= threshold
    if class_ids is not None:
        wanted = np.fromiter((int(c) for c in class_ids), dtype=np.int64)
        keep &= np.isin(ids, wanted)
    index = np.flatnonzero(keep)

    out = {}
    for key, value in result.items():
        if key in PER_DETECTION_KEYS:
            out[key] = np.asarray(value)[index].copy()
        elif key == "masks":
            out[key] = np.asarray(value)[..., index].copy()
        else:
            out[key] = value
    return out


def mask_areas(result: dict) -> np.ndarray:
    """Pixel count of each detection's mask, ``(N,) int64``."""
    masks = np.asarray(result["masks"])
    if masks.ndim != 3:
        raise ValueError(f"masks must be HxWxN, got shape {masks.shape}")
    return np.count_nonzero(masks, axis=(0, 1)).astype(np.int64)
