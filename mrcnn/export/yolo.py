"""Ultralytics YOLO segmentation labels: one ``.txt`` per image and the ``data.yaml``.

A label line is ``<class> x1 y1 x2 y2 ...``: the class in YOLO's contiguous 0-based order
(the model's class id - 1, background dropped) and the object's outline normalised by the
image's width and height. One line per object: its parts and holes are joined into one
ring by zero-width cuts (:meth:`~mrcnn.export.polygons.MaskOutline.joined_ring`), so a
trainer counts one instance per object. Vertices are pixel centres clamped to the image
(``0 <= x <= W - 1``), so every coordinate lies in [0, 1] as Ultralytics requires.
"""
from __future__ import annotations

import json

import numpy as np

__all__ = ["yolo_data_yaml", "yolo_label_text"]


def yolo_label_text(shapes, result: dict, image_shape) -> str:
    """The ``.txt`` for one image: a line per :class:`~mrcnn.export.polygons.ObjectShape`.

    Empty (no lines) when nothing was found: Ultralytics reads that as a background image.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    class_ids = np.asarray(result["class_ids"]).reshape(-1)
    scale = np.array([width, height], np.float64)
    upper = np.array([width - 1, height - 1], np.float64)
    lines = []
    for shape in shapes:
        ring = np.clip(shape.outline.joined_ring(), 0.0, upper) / scale
        coords = " ".join(f"{v:.6f}" for v in ring.ravel())
        lines.append(f"{int(class_ids[shape.index]) - 1} {coords}")
    return "".join(line + "\n" for line in lines)


def yolo_data_yaml(class_names, images_dir: str) -> str:
    """``data.yaml``: ``train``/``val`` at ``images_dir`` and ``names`` as ``{index: name}``.

    ``names`` are ``class_names[1:]`` (YOLO has no background class), each quoted as a
    JSON string, which is also a valid YAML scalar. No ``path``: Ultralytics then
    resolves the image folders next to this file.
    """
    names = [str(name) for name in class_names[1:]]
    lines = ["# Ultralytics YOLO segmentation dataset written by Mask R-CNN Studio.",
             f"train: {images_dir}", f"val: {images_dir}", f"nc: {len(names)}", "names:"]
    lines += [f"  {index}: {json.dumps(name)}" for index, name in enumerate(names)]
    return "\n".join(lines) + "\n"
