"""Detection results (no TensorFlow): matterport's dict, and its compact form.

A result is ``{"rois": (N,4) int32 y1,x1,y2,x2, "class_ids": (N,) int32,
"scores": (N,) float32, "masks": ...}``, ordered by score descending. In
matterport's form (``detect()``) ``masks`` is an ``(H, W, N)`` bool array; in
the compact form (``detect_compact()``, what the app and the service keep) it is
a :class:`CompactMasks`: each mask cropped to the rectangle that holds it and
stored as COCO RLE, a few kB per object instead of H*W bytes, expanded only
where it is drawn or exported.
"""
from __future__ import annotations

from functools import cached_property

import numpy as np
from pycocotools import mask as mask_utils

__all__ = ["PER_DETECTION_KEYS", "PROVENANCE_KEYS", "CompactMasks", "empty_result",
           "filter_detections", "kept_indices", "mask_areas", "num_detections", "take_masks"]

#: Keys whose arrays have one entry per detection along axis 0.
PER_DETECTION_KEYS = ("rois", "class_ids", "scores")
#: Per-detection keys of ``detect_compact()`` in this process only (the service's answers
#: lack them): ``roi_indices`` (N,) int32 and ``class_probs`` (N, NUM_CLASSES) float32.
PROVENANCE_KEYS = ("roi_indices", "class_probs")


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


def kept_indices(result: dict, min_score: float = 0.0, class_ids=None) -> np.ndarray:
    """Indices (ascending) of the detections that pass both filters.

    Kept: ``score >= min_score`` (compared in the scores' own precision, so a
    float32 score equal to the threshold as typed is kept) and, when
    ``class_ids`` is given, ``class_id in class_ids`` (an empty collection
    keeps nothing).
    """
    scores = np.asarray(result["scores"])
    ids = np.asarray(result["class_ids"])
    threshold = np.asarray(min_score, dtype=scores.dtype if scores.dtype.kind == "f"
                           else np.float64)
    keep = scores >= threshold
    if class_ids is not None:
        wanted = np.fromiter((int(c) for c in class_ids), dtype=np.int64)
        keep &= np.isin(ids, wanted)
    return np.flatnonzero(keep)


def take_masks(masks: np.ndarray, index) -> np.ndarray:
    """``masks[..., index]`` as a new (H, W, K) array, fast for either memory layout.

    An (H, W, N) view of one-plane-per-object storage (``np.moveaxis`` of an
    (N, H, W) array, as the app keeps its runs) is sliced plane by plane: a block
    copy instead of a gather along the last axis, which is ~40x slower at 1024 px.
    """
    masks = np.asarray(masks)
    if masks.ndim == 3 and masks.strides[-1] > masks.strides[0]:
        return np.moveaxis(np.moveaxis(masks, -1, 0)[index], 0, -1)
    return masks[..., index].copy()


def filter_detections(result: dict, min_score: float = 0.0,
                      class_ids=None) -> dict:
    """A new result with only the detections that pass ``kept_indices``' filters.

    Order, keys and dtypes are unchanged; ``masks`` is sliced along its last
    axis. Other keys are copied through unchanged. The input is not modified and
    the output shares no arrays with it.
    """
    index = kept_indices(result, min_score, class_ids)
    out = {}
    for key, value in result.items():
        if key in PER_DETECTION_KEYS or key in PROVENANCE_KEYS:
            out[key] = np.asarray(value)[index].copy()
        elif key == "masks" and isinstance(value, CompactMasks):
            out[key] = value.take(index)
        elif key == "masks":
            out[key] = take_masks(value, index)
        else:
            out[key] = value
    return out


def mask_areas(result: dict) -> np.ndarray:
    """Pixel count of each detection's mask, ``(N,) int64``."""
    if isinstance(result["masks"], CompactMasks):
        return result["masks"].areas.copy()
    masks = np.asarray(result["masks"])
    if masks.ndim != 3:
        raise ValueError(f"masks must be HxWxN, got shape {masks.shape}")
    return np.count_nonzero(masks, axis=(0, 1)).astype(np.int64)


def _encode(crop: np.ndarray) -> dict:
    """COCO RLE of a bool crop (column-major crops, as the engine makes them, need no copy)."""
    crop = np.asarray(crop)
    if crop.dtype == bool and crop.flags.f_contiguous:
        return mask_utils.encode(crop.view(np.uint8))
    return mask_utils.encode(np.asfortranarray(crop, dtype=np.uint8))


class CompactMasks:
    """N instance masks of an ``(H, W)`` image, each kept as the rectangle that holds it.

    ``windows`` (N, 4) int32 ``[y1, x1, y2, x2]`` is each crop's place in the image
    (for the engine's masks: the detection's box, which holds the whole mask);
    ``rles`` are the crops as pycocotools RLE (``{"size": [h, w], "counts": bytes}``).
    Immutable: :meth:`take` returns a new object sharing the encodings.
    """

    def __init__(self, image_shape, windows, rles):
        self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        self.windows = np.asarray(windows, np.int32).reshape(-1, 4)
        self.rles = list(rles)
        if len(self.rles) != len(self.windows):
            raise ValueError(f"{len(self.rles)} masks for {len(self.windows)} windows")

    # ------------------------------------------------------------ building
    @classmethod
    def from_crops(cls, image_shape, windows, crops) -> CompactMasks:
        """From bool crops, ``crops[i]`` of shape ``(y2 - y1, x2 - x1)`` of ``windows[i]``."""
        return cls(image_shape, windows, [_encode(c) for c in crops])

    @classmethod
    def from_full(cls, masks) -> CompactMasks:
        """From an ``(H, W, N)`` stack: each mask cropped to its own bounding rectangle."""
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 3:
            raise ValueError(f"masks must be HxWxN, got shape {masks.shape}")
        return cls.from_masks(masks.shape[:2], (masks[:, :, i] for i in range(masks.shape[2])))

    @classmethod
    def from_masks(cls, image_shape, masks) -> CompactMasks:
        """From full-size ``(H, W)`` masks, one at a time (only one is expanded at once)."""
        windows, crops = [], []
        for mask in masks:
            mask = np.asarray(mask, dtype=bool)
            if mask.shape != tuple(image_shape[:2]):
                raise ValueError(f"a mask is {mask.shape}, the image {tuple(image_shape[:2])}")
            rows = np.flatnonzero(mask.any(axis=1))
            if rows.size == 0:
                windows.append((0, 0, 0, 0))
                crops.append(np.zeros((0, 0), bool))
                continue
            cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
            y1, y2, x1, x2 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
            windows.append((y1, x1, y2, x2))
            crops.append(mask[y1:y2, x1:x2])
        return cls.from_crops(image_shape, windows, crops)

    @classmethod
    def empty(cls, image_shape) -> CompactMasks:
        return cls(image_shape, np.zeros((0, 4), np.int32), [])

    # ------------------------------------------------------------ reading
    def __len__(self) -> int:
        return len(self.rles)

    @property
    def shape(self) -> tuple:
        """``(H, W, N)``: the shape of the matterport array these masks stand for."""
        return self.image_shape + (len(self),)

    dtype = np.dtype(bool)

    @cached_property
    def areas(self) -> np.ndarray:
        """Pixels in each mask, ``(N,) int64``."""
        if not self.rles:
            return np.zeros(0, np.int64)
        return np.asarray(mask_utils.area(self.rles), np.int64)

    @property
    def nbytes(self) -> int:
        """Bytes held by the encodings and windows (what a stored run costs)."""
        return int(self.windows.nbytes + sum(len(r["counts"]) + 64 for r in self.rles))

    def crop(self, index: int) -> np.ndarray:
        """Mask ``index`` inside its window: bool ``(y2 - y1, x2 - x1)``."""
        y1, x1, y2, x2 = (int(v) for v in self.windows[index])
        if y2 <= y1 or x2 <= x1:
            return np.zeros((max(y2 - y1, 0), max(x2 - x1, 0)), bool)
        return mask_utils.decode(self.rles[index]).astype(bool)

    def full(self, index: int) -> np.ndarray:
        """Mask ``index`` at image size: bool ``(H, W)``."""
        out = np.zeros(self.image_shape, bool)
        y1, x1, y2, x2 = (int(v) for v in self.windows[index])
        if y2 > y1 and x2 > x1:
            out[y1:y2, x1:x2] = self.crop(index)
        return out

    def stack(self, indices=None) -> np.ndarray:
        """matterport's ``(H, W, K)`` bool masks of ``indices`` (default: all)."""
        indices = range(len(self)) if indices is None else np.asarray(indices).reshape(-1)
        out = np.zeros(self.image_shape + (len(indices),), bool)
        for k, i in enumerate(indices):
            y1, x1, y2, x2 = (int(v) for v in self.windows[i])
            if y2 > y1 and x2 > x1:
                out[y1:y2, x1:x2, k] = self.crop(int(i))
        return out

    def take(self, indices) -> CompactMasks:
        """The masks at ``indices``, in that order."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        taken = CompactMasks(self.image_shape, self.windows[indices],
                             [self.rles[i] for i in indices])
        if "areas" in self.__dict__:
            taken.__dict__["areas"] = self.areas[indices]
        return taken

    def coco_rle(self, index: int) -> dict:
        """Mask ``index`` at image size as COCO compressed RLE (``counts`` str, JSON-able).

        Computed from the crop: the runs of the window's columns, between the
        zeros of the columns before and after it (COCO counts column by column).
        """
        height, width = self.image_shape
        y1, x1, y2, x2 = (int(v) for v in self.windows[index])
        counts = [height * width]
        if y2 > y1 and x2 > x1:
            columns = np.zeros((height, x2 - x1), np.uint8)
            columns[y1:y2] = self.crop(index)
            flat = columns.ravel(order="F")
            edges = np.flatnonzero(np.diff(flat)) + 1
            runs = np.diff(np.concatenate([[0], edges, [flat.size]]))
            if flat[0]:                     # COCO counts start with a run of zeros
                runs = np.concatenate([[0], runs])
            runs[0] += x1 * height
            if len(runs) % 2 == 1:          # ends in zeros: the columns after join them
                runs[-1] += (width - x2) * height
            elif x2 < width:
                runs = np.concatenate([runs, [(width - x2) * height]])
            counts = runs.tolist()
        rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        return {"size": [height, width], "counts": rle["counts"].decode("ascii")}
