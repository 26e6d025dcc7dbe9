"""Annotation exports that labelling tools open: one ZIP, the formats a visitor ticks.

Every format shares one layout, so the ZIP unpacks into a folder each tool can be
pointed at (and CVAT can import it as uploaded)::

    images/default/<name>                 the pictures, as the model saw them
    annotations/instances_default.json    coco: COCO instances (CVAT's "COCO 1.0" layout)
    data.yaml, labels/default/<stem>.txt  yolo: Ultralytics YOLO segmentation
    labelme/<stem>.json                   labelme: LabelMe, imagePath ../images/default/<name>
    SegmentationClass/<stem>.png, SegmentationObject/<stem>.png, Annotations/<stem>.xml,
    ImageSets/Segmentation/default.txt, labelmap.txt
                                          voc: Pascal VOC masks (CVAT's "Segmentation mask 1.1")
    README.txt                            what is inside, the tolerance and the polygon rule

``default`` is the subset name CVAT gives a task's images. Pictures keep the name they
were given when it is a JPEG or PNG name (other types are written as PNG); a name used
twice gets ``_<image id>`` added. Objects with an empty mask are left out of every format.
"""
from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
from PIL import Image

from mrcnn.classes import category_ids_for
from mrcnn.export.coco_instances import (
    coco_annotations,
    coco_categories,
    coco_image_entry,
    coco_instances_document,
)
from mrcnn.export.labelme import labelme_document
from mrcnn.export.polygons import DEFAULT_TOLERANCE, POLYGON_RULE, object_shapes
from mrcnn.export.voc import voc_annotation_xml, voc_label_pngs, voc_labelmap
from mrcnn.export.yolo import yolo_data_yaml, yolo_label_text
from mrcnn.pixels import to_rgb_array

__all__ = ["DEFAULT_TOLERANCE", "FORMATS", "IMAGES_DIR", "AnnotationFormat", "annotations_zip",
           "write_annotations"]

#: Where the pictures go: CVAT's folder for the images of its "default" subset.
IMAGES_DIR = "images/default"


@dataclass(frozen=True)
class AnnotationFormat:
    """What the page says about a format: its name, what it writes, who reads it."""
    label: str
    description: str
    readers: str


FORMATS: dict[str, AnnotationFormat] = {
    "coco": AnnotationFormat(
        "COCO instances (polygons)",
        "annotations/instances_default.json with images, annotations and categories "
        "(COCO's ids 1-90 for the COCO model); with the images beside it, the archive "
        "CVAT imports as COCO 1.0.",
        "CVAT (COCO 1.0), pycocotools, Detectron2, Roboflow, FiftyOne, "
        "Label Studio (through label-studio-converter)"),
    "yolo": AnnotationFormat(
        "YOLO segmentation",
        "labels/default/<image>.txt, one normalised polygon line per object, and "
        "data.yaml naming the classes in YOLO's 0-based order.",
        "Ultralytics (train with data.yaml), CVAT (Ultralytics YOLO Segmentation 1.0), "
        "Roboflow, supervision"),
    "labelme": AnnotationFormat(
        "LabelMe JSON",
        "labelme/<image>.json, one per image: a polygon shape per object part, the parts "
        "of one object sharing a group id.",
        "LabelMe, Roboflow, supervision"),
    "voc": AnnotationFormat(
        "Pascal VOC masks",
        "SegmentationClass/ and SegmentationObject/ palette PNGs (class and object "
        "indices, VOC colours) with Annotations/ XML boxes and labelmap.txt.",
        "CVAT (Segmentation mask 1.1), supervision (the XML boxes), any PNG reader"),
}


def _image_names(file_name: str, image_id: int, taken: set) -> tuple[str, str]:
    """(stem, file name) for a picture in the ZIP: its own name where it can be kept."""
    name = PurePosixPath(str(file_name).replace("\\", "/")).name
    stem, suffix = PurePosixPath(name).stem, PurePosixPath(name).suffix.lower()
    stem = re.sub(r"[\x00-\x1f]", "", stem).strip() or f"image_{image_id}"
    candidate, number = stem, image_id
    while candidate.lower() in taken:          # "a_3" may itself be a picture's own name
        candidate, number = f"{stem}_{number}", number + 1
    stem = candidate
    taken.add(stem.lower())
    return stem, stem + (suffix if suffix in (".jpg", ".jpeg", ".png") else ".png")


def _encoded_image(image, file_name: str) -> bytes:
    picture = Image.fromarray(to_rgb_array(image))
    buffer = io.BytesIO()
    if file_name.lower().endswith((".jpg", ".jpeg")):
        picture.save(buffer, format="JPEG", quality=95)
    else:
        picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _readme(formats, tolerance: float, count: int) -> str:
    lines = [f"Mask R-CNN Studio: annotations of {count} image{'s' * (count != 1)}.", "",
             f"Polygon tolerance: {tolerance:g} px. {POLYGON_RULE}", ""]
    for key in formats:
        spec = FORMATS[key]
        lines += [f"{spec.label}: {spec.description}", f"  Read by: {spec.readers}.", ""]
    return "\n".join(lines)


def write_annotations(zf: zipfile.ZipFile, items, class_names, formats,
                      tolerance: float = DEFAULT_TOLERANCE, category_ids=None) -> None:
    """Write the ticked ``formats`` (keys of :data:`FORMATS`) for ``items`` into an open ZIP.

    ``items`` are ``(image_id, file_name, image, result)``: the picture as an
    ``(H, W, 3)`` array and its result dict (masks ``(H, W, N)`` or ``CompactMasks``),
    one at a time, so Run all never holds more than one image's masks expanded.
    ``tolerance`` is the polygon simplification in pixels; ``category_ids`` maps class
    ids to COCO category ids (default: :func:`~mrcnn.classes.category_ids_for`).
    """
    formats = list(dict.fromkeys(formats))
    unknown = [key for key in formats if key not in FORMATS]
    if unknown or not formats:
        raise ValueError(f"formats must be some of {list(FORMATS)}, got {formats}")
    category_ids = category_ids_for(class_names) if category_ids is None else category_ids
    taken, stems, images, annotations = set(), [], [], []
    for image_id, file_name, image, result in items:
        image_shape = np.asarray(image).shape[:2]
        stem, name = _image_names(file_name, image_id, taken)
        stems.append(stem)
        zf.writestr(f"{IMAGES_DIR}/{name}", _encoded_image(image, name),
                    compress_type=zipfile.ZIP_STORED)
        shapes = list(object_shapes(result["masks"], image_shape, tolerance))
        if "coco" in formats:
            images.append(coco_image_entry(image_id, name, image_shape))
            annotations += coco_annotations(shapes, result, image_id, image_shape,
                                            category_ids, first_id=len(annotations) + 1)
        if "yolo" in formats:
            zf.writestr(f"labels/default/{stem}.txt",
                        yolo_label_text(shapes, result, image_shape))
        if "labelme" in formats:
            document = labelme_document(shapes, result, class_names,
                                        f"../{IMAGES_DIR}/{name}", image_shape)
            zf.writestr(f"labelme/{stem}.json", json.dumps(document, indent=1))
        if "voc" in formats:
            class_png, object_png = voc_label_pngs(shapes, result, image_shape)
            zf.writestr(f"SegmentationClass/{stem}.png", class_png,
                        compress_type=zipfile.ZIP_STORED)
            zf.writestr(f"SegmentationObject/{stem}.png", object_png,
                        compress_type=zipfile.ZIP_STORED)
            zf.writestr(f"Annotations/{stem}.xml",
                        voc_annotation_xml(shapes, result, class_names, name, image_shape))
    if "coco" in formats:
        document = coco_instances_document(images, annotations,
                                           coco_categories(class_names, category_ids))
        zf.writestr("annotations/instances_default.json", json.dumps(document))
    if "yolo" in formats:
        zf.writestr("data.yaml", yolo_data_yaml(class_names, IMAGES_DIR))
    if "voc" in formats:
        zf.writestr("labelmap.txt", voc_labelmap(class_names))
        zf.writestr("ImageSets/Segmentation/default.txt", "".join(s + "\n" for s in stems))
    zf.writestr("README.txt", _readme(formats, tolerance, len(stems)))


def annotations_zip(items, class_names, formats, tolerance: float = DEFAULT_TOLERANCE,
                    category_ids=None) -> bytes:
    """The ZIP of :func:`write_annotations`, as bytes (what the download button serves)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        write_annotations(zf, items, class_names, formats, tolerance, category_ids)
    return buffer.getvalue()
