"""From a ``Dataset`` to training batches: resize, boxes, mini masks, RPN targets.

A batch is a dict of numpy arrays (``B`` = BATCH_SIZE, ``A`` anchors,
``M`` = MAX_GT_INSTANCES):

- ``images`` [B, H, W, 3] float32, molded (MEAN_PIXEL subtracted)
- ``image_meta`` [B, IMAGE_META_SIZE] float32 (with the image's active class ids)
- ``rpn_match`` [B, A] int32 and ``rpn_bbox`` [B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4] float32
- ``gt_class_ids`` [B, M] int32, ``gt_boxes`` [B, M, (y1, x1, y2, x2)] float32 pixels,
  ``gt_masks`` [B, mask_h, mask_w, M] bool (MINI_MASK_SHAPE with USE_MINI_MASK),
  all zero-padded after the image's instances.
"""
from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import numpy as np
import skimage.transform

from mrcnn.anchors import backbone_shapes, pyramid_anchors
from mrcnn.molding import compose_image_meta, mold_image, resize_image
from mrcnn.training.targets import build_rpn_targets, extract_bboxes, minimize_mask

BATCH_KEYS = ("images", "image_meta", "rpn_match", "rpn_bbox", "gt_class_ids", "gt_boxes",
              "gt_masks")


@dataclass
class ImageTargets:
    """One image at network size with its ground truth."""
    image: np.ndarray        # [H, W, 3] uint8, resized and padded
    image_meta: np.ndarray   # [IMAGE_META_SIZE]
    class_ids: np.ndarray    # [N] int32 (negative for crowds)
    boxes: np.ndarray        # [N, (y1, x1, y2, x2)] int32 pixels, y2/x2 exclusive
    masks: np.ndarray        # [H, W, N] or [mini_h, mini_w, N] bool


def resize_mask(mask, scale, padding) -> np.ndarray:
    """Masks [h, w, N] scaled (nearest neighbour) and padded like ``resize_image`` did
    to the image."""
    if scale != 1:
        h, w = mask.shape[:2]
        mask = skimage.transform.resize(
            mask.astype(np.uint8), (round(h * scale), round(w * scale), mask.shape[2]),
            order=0, mode="constant", preserve_range=True, anti_aliasing=False) > 0
    return np.pad(mask, padding, mode="constant", constant_values=False)


def load_image_gt(dataset, config, image_id, augmentation=None) -> ImageTargets:
    """Load, resize and (optionally) augment an image and its masks.

    ``augmentation(image, masks) -> (image, masks)`` runs on the resized uint8
    image [H, W, 3] and bool masks [H, W, N] and must keep their shapes. Instances
    whose mask ends up empty are dropped.
    """
    image = dataset.load_image(image_id)
    masks, class_ids = dataset.load_mask(image_id)
    if masks.shape[:2] != image.shape[:2]:
        raise ValueError(f"{dataset.image_reference(image_id)}: masks are "
                         f"{masks.shape[:2]} but the image is {image.shape[:2]}.")
    original_shape = image.shape
    image, window, scale, padding = resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, max_dim=config.IMAGE_MAX_DIM,
        min_scale=config.IMAGE_MIN_SCALE, mode=config.IMAGE_RESIZE_MODE)
    masks = resize_mask(masks, scale, padding)
    if augmentation is not None:
        shapes = image.shape, masks.shape
        image, masks = augmentation(image, masks)
        if (image.shape, masks.shape) != shapes:
            raise ValueError("augmentation must keep the image and mask shapes.")
        masks = masks.astype(bool)
    keep = masks.any(axis=(0, 1))
    masks, class_ids = masks[:, :, keep], np.asarray(class_ids, np.int32)[keep]
    boxes = extract_bboxes(masks)
    if config.USE_MINI_MASK:
        masks = minimize_mask(boxes, masks, config.MINI_MASK_SHAPE)
    meta = compose_image_meta(image_id, original_shape, image.shape, window, scale,
                              dataset.active_class_ids(image_id))
    return ImageTargets(image, meta, class_ids, boxes, masks)


def anchors_for(config, image_shape) -> np.ndarray:
    """[A, (y1, x1, y2, x2)] pixel anchors of a molded image shape."""
    strides = config.BACKBONE_STRIDES
    return pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                           backbone_shapes(image_shape, strides), strides,
                           config.RPN_ANCHOR_STRIDE)


class TrainingBatches:
    """Endless batches from a prepared dataset, reshuffled every pass.

    Images without any instance are skipped (matterport does the same); an image
    with more than MAX_GT_INSTANCES instances keeps a random subset.
    """

    def __init__(self, dataset, config, shuffle=True, augmentation=None, seed=None):
        if len(dataset.image_ids) == 0:
            raise ValueError("The dataset has no images: call add_image() and prepare().")
        self.dataset, self.config = dataset, config
        self.shuffle, self.augmentation = shuffle, augmentation
        self.rng = np.random.default_rng(seed)
        self._order, self._position = np.array(dataset.image_ids), len(dataset.image_ids)
        self._anchors = {}

    def __iter__(self):
        return self

    def _next_image_id(self):
        if self._position >= len(self._order):
            if self.shuffle:
                self.rng.shuffle(self._order)
            self._position = 0
        self._position += 1
        return self._order[self._position - 1]

    def _next_targets(self) -> ImageTargets:
        for _ in range(len(self._order)):
            targets = load_image_gt(self.dataset, self.config, self._next_image_id(),
                                    self.augmentation)
            if np.any(targets.class_ids > 0):
                return targets
        raise ValueError("No image of the dataset has an instance to train on.")

    def __next__(self) -> dict:
        cfg = self.config
        count, limit = cfg.BATCH_SIZE, cfg.MAX_GT_INSTANCES
        items = [self._next_targets() for _ in range(count)]
        shapes = {t.image.shape for t in items}
        if len(shapes) > 1:
            raise ValueError(f"Images of one batch must mold to one shape, got {shapes}; "
                             "use IMAGE_RESIZE_MODE='square' or IMAGES_PER_GPU=1.")
        shape = items[0].image.shape
        if shape not in self._anchors:
            self._anchors[shape] = anchors_for(cfg, shape)
        anchors = self._anchors[shape]
        mask_hw = items[0].masks.shape[:2]
        batch = {
            "images": np.zeros((count,) + shape, np.float32),
            "image_meta": np.zeros((count, cfg.IMAGE_META_SIZE), np.float32),
            "rpn_match": np.zeros((count, len(anchors)), np.int32),
            "rpn_bbox": np.zeros((count, cfg.RPN_TRAIN_ANCHORS_PER_IMAGE, 4), np.float32),
            "gt_class_ids": np.zeros((count, limit), np.int32),
            "gt_boxes": np.zeros((count, limit, 4), np.float32),
            "gt_masks": np.zeros((count,) + mask_hw + (limit,), bool),
        }
        for b, t in enumerate(items):
            class_ids, boxes, masks = t.class_ids, t.boxes, t.masks
            if len(class_ids) > limit:
                keep = self.rng.choice(len(class_ids), limit, replace=False)
                class_ids, boxes, masks = class_ids[keep], boxes[keep], masks[:, :, keep]
            batch["rpn_match"][b], batch["rpn_bbox"][b] = build_rpn_targets(
                anchors, class_ids, boxes, cfg, self.rng)
            batch["images"][b] = mold_image(t.image, cfg)
            batch["image_meta"][b] = t.image_meta
            n = len(class_ids)
            batch["gt_class_ids"][b, :n] = class_ids
            batch["gt_boxes"][b, :n] = boxes
            batch["gt_masks"][b, :, :, :n] = masks
        return batch


def prefetch(batches, size=4):
    """Build the next batches in a background thread while the network trains.

    Returns an iterator; its ``close()`` stops the thread. Errors in the producer
    are raised by ``next()``.
    """
    return _Prefetcher(batches, size)


class _Prefetcher:
    def __init__(self, batches, size):
        self._queue = queue.Queue(maxsize=size)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(batches,), daemon=True,
                                        name="training-batches")
        self._thread.start()

    def _produce(self, batches):
        while not self._stop.is_set():
            try:
                item = (next(batches), None)
            except Exception as error:  # noqa: BLE001 - handed to the consumer, which raises it
                item = (None, error)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[1] is not None:
                return

    def __iter__(self):
        return self

    def __next__(self):
        batch, error = self._queue.get()
        if error is not None:
            raise error
        return batch

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
