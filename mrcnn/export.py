"""Exporting detections: COCO RLE masks, COCO results, JSON, ZIP of cut-outs."""
from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np
from pycocotools import mask as mask_utils

from mrcnn.classes import COCO_CATEGORY_IDS
from mrcnn.render import cutout, to_png_bytes

__all__ = ["coco_results", "cutouts_zip", "decode_mask", "detections_json",
           "encode_mask", "write_detections"]


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


def _encode_masks(masks: np.ndarray) -> list[dict]:
    """RLE of every mask in an ``(H, W, N)`` stack, in one pycocotools call."""
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
    rles = _encode_masks(result["masks"])
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


def _class_name(class_names, class_id: int) -> str:
    if class_names is not None and 0 <= class_id < len(class_names):
        return str(class_names[class_id])
    return f"class {class_id}"


def detections_json(result: dict, class_names, image_size=None) -> list[dict]:
    """Detections as plain JSON-able dicts, best score first.

    Each item is ``{"class_id", "class_name", "score", "box": [y1, x1, y2,
    x2], "mask": RLE}`` (the HTTP API uses the same shape). ``image_size``,
    ``(height, width)``, when given, must match the masks.
    """
    masks = np.asarray(result["masks"])
    if image_size is not None:
        h, w = (int(v) for v in tuple(image_size)[:2])
        if masks.shape[:2] != (h, w):
            raise ValueError(
                f"masks are {masks.shape[:2]} but the image is {(h, w)}")
    rois = np.asarray(result["rois"]).reshape(-1, 4)
    class_ids = np.asarray(result["class_ids"]).reshape(-1)
    scores = np.asarray(result["scores"]).reshape(-1)
    rles = _encode_masks(masks)
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    return [{
        "class_id": int(class_ids[i]),
        "class_name": _class_name(class_names, int(class_ids[i])),
        "score": float(scores[i]),
        "box": [int(v) for v in rois[i]],
        "mask": rles[i],
    } for i in order]


def _slug(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")
    return slug or "object"


def cutouts_zip(image, result: dict, class_names) -> bytes:
    """ZIP of every detection: RGBA cut-outs, full-size masks, COCO results.

    The entries are :func:`write_detections`' with no folder.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        write_detections(zf, image, result, class_names)
    return buf.getvalue()


def write_detections(zf: zipfile.ZipFile, image, result: dict, class_names, folder: str = "",
                     image_id: int = 0) -> None:
    """Write one image's detections into an open ZIP, under ``folder/`` if given.

    Entries: ``cutouts/NN_<class>_<score>.png`` (RGBA, cropped to the mask),
    ``masks/NN_<class>.png`` (8-bit, 0/255, full image size) and
    ``detections.json`` (:func:`coco_results` with ``image_id``). ``NN`` is the
    detection index (zero-padded), class names are lower-case with spaces
    as hyphens (``stop-sign``), scores have two decimals.
    """
    root = f"{folder}/" if folder else ""
    masks = np.asarray(result["masks"]).astype(bool, copy=False)
    class_ids = np.asarray(result["class_ids"]).reshape(-1)
    scores = np.asarray(result["scores"]).reshape(-1)
    n = class_ids.shape[0]
    digits = max(2, len(str(max(n - 1, 0))))
    for i in range(n):
        name = _slug(_class_name(class_names, int(class_ids[i])))
        prefix = f"{i:0{digits}d}_{name}"
        # PNG is already compressed: store without deflating again.
        zf.writestr(f"{root}cutouts/{prefix}_{float(scores[i]):.2f}.png",
                    to_png_bytes(cutout(image, masks[..., i])),
                    compress_type=zipfile.ZIP_STORED)
        zf.writestr(f"{root}masks/{prefix}.png",
                    to_png_bytes(masks[..., i].astype(np.uint8) * np.uint8(255)),
                    compress_type=zipfile.ZIP_STORED)
    zf.writestr(f"{root}detections.json",
                json.dumps(coco_results(result, image_id=image_id), indent=1))
