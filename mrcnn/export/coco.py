"""COCO formats of detections: RLE masks and the results list ``COCO.loadRes`` reads."""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from mrcnn.classes import COCO_CATEGORY_IDS
from mrcnn.results import CompactMasks

__all__ = ["coco_results", "decode_mask", "encode_mask", "encode_masks"]


def _rle_to_json(rle: dict) -> dict:
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def encode_mask(mask) -> dict:
    """COCO compressed RLE of an ``HxW`` mask: ``{"size": [h, w], "counts": str}``."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask.shape}")
    fortran = np.asfortranarray(mask.astype(bool).astype(np.uint8))
    return _rle_to_json(mask_utils.encode(fortran))


def encode_masks(masks) -> list[dict]:
    """COCO RLE (JSON-able) of every mask: an ``(H, W, N)`` stack or :class:`CompactMasks`."""
    if isinstance(masks, CompactMasks):
        return [masks.coco_rle(i) for i in range(len(masks))]
    masks = np.asarray(masks)
    if masks.ndim != 3:
        raise ValueError(f"masks must be HxWxN, got shape {masks.shape}")
    if masks.shape[2] == 0:
        return []
    fortran = np.asfortranarray(masks.astype(bool).astype(np.uint8))
    return [_rle_to_json(r) for r in mask_utils.encode(fortran)]


def decode_mask(rle: dict) -> np.ndarray:
    """``HxW`` bool mask from a COCO RLE (compressed str/bytes or uncompressed list)."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        compressed = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        if isinstance(counts, str):
            counts = counts.encode("ascii")
        compressed = {"size": [h, w], "counts": counts}
    return mask_utils.decode(compressed).astype(bool)


def _category_id(class_id: int, mapping) -> int:
    try:
        category = mapping[class_id] if class_id >= 0 else None
    except (IndexError, KeyError):
        category = None
    if category is None:
        raise ValueError(f"class id {class_id} has no COCO category id")
    return int(category)


def coco_results(result: dict, image_id=0,
                 class_ids_to_category=COCO_CATEGORY_IDS) -> list[dict]:
    """Detections in COCO's results format (what ``COCO.loadRes`` reads).

    ``bbox`` is ``[x, y, width, height]`` in float pixels from ``rois``;
    ``category_id`` maps the model's class id through
    ``class_ids_to_category``; ``score`` is the full-precision float;
    ``segmentation`` is the compressed RLE with ``counts`` as str.
    """
    rois = np.asarray(result["rois"]).reshape(-1, 4)
    class_ids = np.asarray(result["class_ids"]).reshape(-1)
    scores = np.asarray(result["scores"]).reshape(-1)
    rles = encode_masks(result["masks"])
    out = []
    for i in range(class_ids.shape[0]):
        y1, x1, y2, x2 = (float(v) for v in rois[i])
        out.append({
            "image_id": image_id,
            "category_id": _category_id(int(class_ids[i]), class_ids_to_category),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "score": float(scores[i]),
            "segmentation": rles[i],
        })
    return out
