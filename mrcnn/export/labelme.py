"""LabelMe JSON: one file per image, each object as polygon shapes.

The document has LabelMe's keys (``version``, ``flags``, ``shapes``, ``imagePath``,
``imageData``, ``imageHeight``, ``imageWidth``); ``imageData`` is ``null``, so LabelMe
loads the picture from ``imagePath``, relative to the JSON file. Each separate part of
an object is one ``polygon`` shape with the holes of that part cut in by a zero-width
slit; the shapes of one object share its ``group_id`` (its number, 1 for the first
object), which is how LabelMe (and readers such as supervision) put the parts back
together. ``description`` holds the score. Points are ``[x, y]`` pixel centres, clamped
to the image (``0 <= x <= imageWidth - 1``), as LabelMe's canvas keeps them.
"""
from __future__ import annotations

import numpy as np

from mrcnn.classes import class_name

__all__ = ["LABELME_VERSION", "labelme_document"]

#: The LabelMe release whose file layout these documents follow.
LABELME_VERSION = "5.5.0"


def labelme_document(shapes, result: dict, class_names, image_path: str, image_shape) -> dict:
    """LabelMe's JSON for one image: a polygon per part of each :class:`ObjectShape`."""
    height, width = int(image_shape[0]), int(image_shape[1])
    class_ids = np.asarray(result["class_ids"]).reshape(-1)
    scores = np.asarray(result["scores"]).reshape(-1)
    upper = np.array([width - 1, height - 1], np.float64)
    out = []
    for number, shape in enumerate(shapes, start=1):
        label = class_name(class_names, class_ids[shape.index])
        for ring in shape.outline.slit_rings():
            points = np.round(np.clip(ring, 0.0, upper), 2)
            out.append({
                "label": label,
                "points": points.tolist(),
                "group_id": number,
                "description": f"score {float(scores[shape.index]):.3f}",
                "shape_type": "polygon",
                "flags": {},
                "mask": None,
            })
    return {
        "version": LABELME_VERSION,
        "flags": {},
        "shapes": out,
        "imagePath": image_path,
        "imageData": None,
        "imageHeight": height,
        "imageWidth": width,
    }
