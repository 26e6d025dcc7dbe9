"""ZIP downloads: each object's cut-out and mask, with the one file-name rule."""
from __future__ import annotations

import io
import json
import re
import zipfile

import numpy as np

from mrcnn.classes import category_ids_for, class_name
from mrcnn.draw.overlay import cutout_from_crop, mask_crops, to_png_bytes
from mrcnn.export.coco import coco_results

__all__ = ["cutout_filename", "cutouts_zip", "slug", "write_detections"]


def slug(name: str) -> str:
    """Lower-case letters and digits, other runs as one hyphen: ``"stop sign"`` -> ``stop-sign``."""
    text = re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")
    return text or "object"


def _digits(count: int) -> int:
    return max(2, len(str(max(count - 1, 0))))


def cutout_filename(index: int, count: int, class_name_: str, score: float) -> str:
    """The one name of object ``index`` (of ``count``)'s cut-out, in the gallery and the ZIP.

    ``NN_<class>_<score>.png``: ``NN`` the object's place among the ones shown
    (zero-padded to the width ``count`` needs), the class as :func:`slug`, the
    score with two decimals.
    """
    return f"{index:0{_digits(count)}d}_{slug(class_name_)}_{float(score):.2f}.png"


def mask_filename(index: int, count: int, class_name_: str) -> str:
    """``NN_<class>.png``, the binary mask's name beside :func:`cutout_filename`."""
    return f"{index:0{_digits(count)}d}_{slug(class_name_)}.png"


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

    Entries: ``cutouts/`` + :func:`cutout_filename` (RGBA, cropped to the mask),
    ``masks/`` + :func:`mask_filename` (8-bit, 0/255, full image size) and
    ``detections.json`` (:func:`coco_results` with ``image_id``, category ids as
    :func:`~mrcnn.classes.category_ids_for` gives them). ``result["masks"]``
    may be an ``(H, W, N)`` stack or :class:`~mrcnn.results.CompactMasks`.
    """
    root = f"{folder}/" if folder else ""
    height, width = np.asarray(image).shape[:2]
    class_ids = np.asarray(result["class_ids"]).reshape(-1)
    scores = np.asarray(result["scores"]).reshape(-1)
    n = class_ids.shape[0]
    crops = {i: (y0, x0, crop) for i, y0, x0, crop in mask_crops(result["masks"], (height, width))}
    for i in range(n):
        name = class_name(class_names, class_ids[i])
        y0, x0, crop = crops.get(i, (0, 0, np.zeros((0, 0), bool)))
        full = np.zeros((height, width), np.uint8)
        full[y0:y0 + crop.shape[0], x0:x0 + crop.shape[1]] = crop * np.uint8(255)
        # PNG is already compressed: store without deflating again.
        zf.writestr(f"{root}cutouts/{cutout_filename(i, n, name, scores[i])}",
                    to_png_bytes(cutout_from_crop(image, crop, (y0, x0))),
                    compress_type=zipfile.ZIP_STORED)
        zf.writestr(f"{root}masks/{mask_filename(i, n, name)}", to_png_bytes(full),
                    compress_type=zipfile.ZIP_STORED)
    zf.writestr(f"{root}detections.json",
                json.dumps(coco_results(result, image_id, category_ids_for(class_names)),
                           indent=1))
