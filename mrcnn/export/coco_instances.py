"""COCO *instances* (the ground-truth layout annotation tools import), with polygons.

Unlike :func:`mrcnn.export.coco.coco_results` (a list of scored detections for
``COCO.loadRes``), this is a whole dataset document: ``images``, ``annotations``
and ``categories``. Each annotation's ``segmentation`` is a list of polygons
(``[x1, y1, x2, y2, ...]``, one per separate part) or, for an object with a hole,
the exact compressed RLE (``iscrowd`` stays 0 either way: the object is one instance);
see :data:`mrcnn.export.polygons.POLYGON_RULE`. ``bbox`` ``[x, y, width, height]`` and
``area`` are the mask's own tight box and pixel count, as in COCO's annotations.
Polygon vertices follow COCO's pixel convention (pixel ``(r, c)`` is the square
``[c, c+1] x [r, r+1]``), so pycocotools rasterises an unsimplified outline back to
exactly the mask.
"""
from __future__ import annotations

import numpy as np

from mrcnn.classes import category_ids_for
from mrcnn.export.polygons import ObjectShape
from mrcnn.results import CompactMasks

__all__ = ["coco_annotations", "coco_categories", "coco_image_entry",
           "coco_instances_document"]


def coco_categories(class_names, category_ids=None) -> list[dict]:
    """``categories`` for every class but the background, in class-id order."""
    category_ids = category_ids_for(class_names) if category_ids is None else category_ids
    return [{"id": int(category_ids[class_id]), "name": str(class_names[class_id]),
             "supercategory": ""}
            for class_id in range(1, len(class_names)) if category_ids[class_id] is not None]


def coco_image_entry(image_id: int, file_name: str, image_shape) -> dict:
    return {"id": int(image_id), "file_name": file_name,
            "height": int(image_shape[0]), "width": int(image_shape[1])}


def _polygon(ring: np.ndarray) -> list[float]:
    """COCO's flat ``[x1, y1, ...]`` of a ring, shifted to COCO's pixel convention."""
    return [round(float(v), 2) for v in (ring + 0.5).ravel()]


def _full_image_rle(shape: ObjectShape, image_shape) -> dict:
    y1, x1, y2, x2 = shape.window
    masks = CompactMasks.from_crops(image_shape[:2], [(y1, x1, y2, x2)], [shape.crop])
    return masks.coco_rle(0)


def coco_annotations(shapes, result: dict, image_id: int, image_shape, category_ids,
                     first_id: int = 1) -> list[dict]:
    """One annotation per :class:`~mrcnn.export.polygons.ObjectShape`, ids from ``first_id``.

    ``result`` gives each shape's class (``class_ids[shape.index]``); ``category_ids``
    maps it as :func:`mrcnn.classes.category_ids_for` does.
    """
    class_ids = np.asarray(result["class_ids"]).reshape(-1)
    out = []
    for shape in shapes:
        class_id = int(class_ids[shape.index])
        category = category_ids[class_id] if 0 <= class_id < len(category_ids) else None
        if category is None:
            raise ValueError(f"class id {class_id} has no category id; pass category ids "
                             f"for all {len(category_ids) - 1} classes")
        if shape.outline.has_holes:
            segmentation = _full_image_rle(shape, image_shape)
        else:
            segmentation = [_polygon(ring) for ring in shape.outline.parts]
        y1, x1, y2, x2 = shape.window
        out.append({
            "id": first_id + len(out),
            "image_id": int(image_id),
            "category_id": int(category),
            "segmentation": segmentation,
            "area": int(np.count_nonzero(shape.crop)),
            "bbox": [x1, y1, x2 - x1, y2 - y1],
            "iscrowd": 0,
        })
    return out


def coco_instances_document(images: list[dict], annotations: list[dict],
                            categories: list[dict]) -> dict:
    """The whole JSON document (``info`` and ``licenses`` included, which some readers want)."""
    return {
        "info": {"description": "Mask R-CNN Studio detections", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
