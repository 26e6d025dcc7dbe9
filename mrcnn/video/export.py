"""An analysed clip in files other tools open.

- MOTChallenge: ``frame,id,x,y,w,h,score,-1,-1,-1`` per tracked object and sampled frame,
  frames counted from 1 in sample order, boxes in pixels (left, top, width, height).
- COCO instances (:mod:`mrcnn.export.coco_instances`, polygons or RLE) with one image per
  sampled frame and ``attributes.track_id`` on every annotation (CVAT's COCO 1.0 import
  reads it into tracks), plus the detection's ``score``.
- The ZIP: ``images/default/frame_000001.jpg`` ... (the sampled frames as the model saw
  them), ``annotations/instances_default.json`` and ``mot/gt/gt.txt`` (the MOT file in the
  layout CVAT's *MOT 1.1* import takes), so it opens as it is.
"""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from PIL import Image

from mrcnn.classes import category_ids_for
from mrcnn.export.coco_instances import (
    coco_annotations,
    coco_categories,
    coco_image_entry,
    coco_instances_document,
)
from mrcnn.export.polygons import DEFAULT_TOLERANCE, object_shapes

__all__ = ["COCO_PATH", "IMAGES_DIR", "MOT_PATH", "FrameArchive", "coco_video_document",
           "frame_file_name", "jpeg_bytes", "mot_csv"]

IMAGES_DIR = "images/default"
COCO_PATH = "annotations/instances_default.json"
MOT_PATH = "mot/gt/gt.txt"


def frame_file_name(index: int) -> str:
    """The sampled frame ``index`` (0-based)'s file name: ``frame_000001.jpg`` for 0."""
    return f"frame_{index + 1:06d}.jpg"


def jpeg_bytes(image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def mot_csv(tracked) -> str:
    """MOTChallenge rows for :class:`~mrcnn.video.track.TrackedFrame` s (no header)."""
    lines = []
    for frame in tracked:
        rois, scores = np.asarray(frame.result["rois"]), np.asarray(frame.result["scores"])
        for (y1, x1, y2, x2), score, track_id in zip(rois, scores, frame.track_ids):
            lines.append(f"{frame.index + 1},{int(track_id)},{int(x1)},{int(y1)},"
                         f"{int(x2 - x1)},{int(y2 - y1)},{float(score):.4f},-1,-1,-1")
    return "".join(line + "\n" for line in lines)


def coco_video_document(tracked, class_names, image_shape,
                        tolerance: float = DEFAULT_TOLERANCE) -> dict:
    """COCO instances for every sampled frame (image id = frame index + 1), each
    annotation with ``attributes: {"track_id": id}`` and ``score``."""
    category_ids = category_ids_for(class_names)
    images, annotations = [], []
    for frame in tracked:
        image_id = frame.index + 1
        images.append(coco_image_entry(image_id, frame_file_name(frame.index), image_shape))
        shapes = list(object_shapes(frame.result["masks"], image_shape, tolerance))
        written = coco_annotations(shapes, frame.result, image_id, image_shape, category_ids,
                                   first_id=len(annotations) + 1)
        for shape, annotation in zip(shapes, written):
            annotation["attributes"] = {"track_id": int(frame.track_ids[shape.index]),
                                        "keyframe": True}
            annotation["score"] = round(float(frame.result["scores"][shape.index]), 4)
        annotations += written
    return coco_instances_document(images, annotations,
                                   coco_categories(class_names, category_ids))


class FrameArchive:
    """The ZIP, written as frames come (``add_frame``) and closed with the annotations
    (``finish``); ``target`` is a path or a writable binary file."""

    def __init__(self, target):
        self._zip = zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED)

    def add_frame(self, index: int, jpeg: bytes) -> None:
        self._zip.writestr(f"{IMAGES_DIR}/{frame_file_name(index)}", jpeg,
                           compress_type=zipfile.ZIP_STORED)

    def finish(self, coco_document: dict, mot_text: str) -> None:
        self._zip.writestr(COCO_PATH, json.dumps(coco_document))
        self._zip.writestr(MOT_PATH, mot_text)
        self._zip.close()
