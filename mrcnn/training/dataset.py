"""Datasets for training, with matterport's ``Dataset`` API.

A dataset lists classes (``add_class``) and images (``add_image``), then
``prepare()`` numbers them: class ids are 0 (``BG``) then 1.. in the order the
classes were added, image ids 0.. in the order images were added. A subclass
overrides ``load_mask`` (and ``load_image`` if its images are not files):

>>> class BalloonDataset(Dataset):
...     def load_balloons(self, folder): ...          # add_class / add_image
...     def load_mask(self, image_id): ...            # [H, W, N] bool, [N] int32

``CocoDataset`` reads a COCO instances JSON (polygons, uncompressed or
compressed RLE) and its image folder: what annotation tools export.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import skimage.color
import skimage.io


class Dataset:
    """matterport's dataset base class: classes, images, masks."""

    def __init__(self, class_map=None):
        self._image_ids = np.zeros(0, np.int64)
        self.image_info = []
        self.class_info = [{"source": "", "id": 0, "name": "BG"}]   # background is class 0
        self.source_class_ids = {}

    def add_class(self, source: str, class_id: int, class_name: str) -> None:
        """Declare class ``class_id`` of ``source``; adding the same pair twice is a no-op."""
        if "." in source:
            raise ValueError(f"A source name cannot contain a dot: {source!r}.")
        if any(c["source"] == source and c["id"] == class_id for c in self.class_info):
            return
        self.class_info.append({"source": source, "id": class_id, "name": class_name})

    def add_image(self, source: str, image_id, path, **kwargs) -> None:
        """Declare an image; ``kwargs`` are kept in ``image_info`` for ``load_mask``."""
        self.image_info.append({"id": image_id, "source": source, "path": path, **kwargs})

    def image_reference(self, image_id) -> str:
        """Where an image comes from, for messages; override to say more."""
        return str(self.image_info[image_id]["path"])

    def prepare(self, class_map=None) -> None:
        """Number classes and images; call after the last add_class / add_image."""
        self.num_classes = len(self.class_info)
        self.class_ids = np.arange(self.num_classes)
        self.class_names = [c["name"].split(",")[0] for c in self.class_info]
        self.num_images = len(self.image_info)
        self._image_ids = np.arange(self.num_images)
        self.class_from_source_map = {f"{c['source']}.{c['id']}": i
                                      for i, c in enumerate(self.class_info)}
        self.image_from_source_map = {f"{info['source']}.{info['id']}": i
                                      for i, info in enumerate(self.image_info)}
        self.sources = sorted({c["source"] for c in self.class_info})
        self.source_class_ids = {
            source: [i for i, c in enumerate(self.class_info) if i == 0 or c["source"] == source]
            for source in self.sources}

    def map_source_class_id(self, source_class_id: str) -> int:
        """``"coco.12"`` -> the internal class id it was given."""
        return self.class_from_source_map[source_class_id]

    def get_source_class_id(self, class_id: int, source: str):
        """Internal class id -> the id it has in ``source``."""
        info = self.class_info[class_id]
        if info["source"] != source:
            raise ValueError(f"Class {class_id} belongs to {info['source']!r}, not {source!r}.")
        return info["id"]

    @property
    def image_ids(self) -> np.ndarray:
        return self._image_ids

    def source_image_link(self, image_id):
        return self.image_info[image_id]["path"]

    def active_class_ids(self, image_id) -> np.ndarray:
        """[num_classes] int32: 1 for the classes of this image's source (and BG)."""
        active = np.zeros(self.num_classes, np.int32)
        active[self.source_class_ids[self.image_info[image_id]["source"]]] = 1
        return active

    def load_image(self, image_id) -> np.ndarray:
        """[H, W, 3] uint8 RGB from the image's file (grey expanded, alpha dropped)."""
        image = skimage.io.imread(self.image_info[image_id]["path"])
        if image.ndim != 3:
            image = skimage.color.gray2rgb(image)
        if image.shape[-1] == 4:
            image = image[..., :3]
        return image

    def load_mask(self, image_id):
        """Instance masks [H, W, N] bool and their class ids [N] int32.

        Override it: the base class knows nothing about your annotations.
        """
        raise NotImplementedError(
            f"{type(self).__name__}.load_mask is not defined: override it to return "
            "(masks [H, W, N] bool, class_ids [N] int32) for an image.")


class CocoDataset(Dataset):
    """Images and instance masks from a COCO instances JSON and an image folder.

    >>> train = CocoDataset()
    >>> train.load_coco("annotations/instances_train.json", "images/train")
    >>> train.prepare()

    Segmentations may be polygons, uncompressed RLE (``counts`` a list) or
    compressed RLE (``counts`` a string); ``iscrowd`` annotations become crowd
    regions (negative class ids) that training neither matches nor calls background.
    """

    def load_coco(self, annotation_json, image_dir, class_ids=None, source="coco"):
        """Add the file's categories (or only ``class_ids``) and the images that have
        annotations of them (every image when ``class_ids`` is None)."""
        data = json.loads(Path(annotation_json).read_text())
        for key in ("images", "annotations", "categories"):
            if key not in data:
                raise ValueError(f"{annotation_json} has no {key!r}: it is not a COCO instances "
                                 "file (a results file lists only detections).")
        categories = {c["id"]: c["name"] for c in data["categories"]}
        wanted = sorted(categories) if class_ids is None else list(class_ids)
        for category_id in wanted:
            self.add_class(source, category_id, categories[category_id])
        by_image = {}
        for annotation in data["annotations"]:
            if annotation["category_id"] in wanted:
                by_image.setdefault(annotation["image_id"], []).append(annotation)
        image_dir = Path(image_dir)
        for image in data["images"]:
            if class_ids is not None and image["id"] not in by_image:
                continue
            self.add_image(source, image["id"], image_dir / image["file_name"],
                           width=int(image["width"]), height=int(image["height"]),
                           annotations=by_image.get(image["id"], []))
        return data

    def load_image(self, image_id) -> np.ndarray:
        image = super().load_image(image_id)
        info = self.image_info[image_id]
        if image.shape[:2] != (info["height"], info["width"]):
            raise ValueError(
                f"{info['path']} is {image.shape[1]}x{image.shape[0]} pixels but the "
                f"annotations say {info['width']}x{info['height']}: the file is not the image "
                "that was annotated (or it carries an EXIF rotation the tool applied).")
        return image

    def load_mask(self, image_id):
        from pycocotools import mask as mask_utils
        info = self.image_info[image_id]
        source = info["source"]
        height, width = info["height"], info["width"]
        masks, class_ids = [], []
        for annotation in info["annotations"]:
            class_id = self.map_source_class_id(f"{source}.{annotation['category_id']}")
            mask = _decode_segmentation(mask_utils, annotation["segmentation"], height, width)
            if not mask.any():
                continue                 # degenerate annotation (e.g. a zero-area polygon)
            if annotation.get("iscrowd"):
                class_id = -class_id
            masks.append(mask)
            class_ids.append(class_id)
        if not masks:
            return np.zeros((height, width, 0), bool), np.zeros(0, np.int32)
        return np.stack(masks, axis=2), np.array(class_ids, np.int32)

    def image_reference(self, image_id) -> str:
        info = self.image_info[image_id]
        return f"{info['path']} (COCO image id {info['id']})"


def _decode_segmentation(mask_utils, segmentation, height, width) -> np.ndarray:
    """A COCO segmentation (polygons or RLE) -> [height, width] bool."""
    if isinstance(segmentation, list):                       # polygons
        polygons = [p for p in segmentation if len(p) >= 6]
        if not polygons:
            return np.zeros((height, width), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation.get("counts"), list):       # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:                                                    # compressed RLE
        counts = segmentation["counts"]
        rle = {"size": segmentation["size"],
               "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    mask = mask_utils.decode(rle).astype(bool)
    if mask.shape != (height, width):
        raise ValueError(f"An RLE of size {list(mask.shape)} is annotated on an image of "
                         f"size {[height, width]}.")
    return mask
