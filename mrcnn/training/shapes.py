"""A generated dataset of squares, circles and triangles, and the config to train on it.

Every image is drawn from its own seed (``(seed, index)``), so a dataset is the
same on every machine and any image can be regenerated alone. An image has a
plain background and one to four shapes of random colour and size that do not
touch each other, so every mask is the whole shape.

>>> train = ShapesDataset()
>>> train.load_shapes(500, seed=1)
>>> train.prepare()
>>> image, masks, class_ids = draw_shapes(np.random.default_rng(0))
"""
from __future__ import annotations

import numpy as np
import skimage.draw

from mrcnn.config import Config
from mrcnn.training.dataset import Dataset

CLASS_NAMES = ["BG", "square", "circle", "triangle"]


class ShapesConfig(Config):
    """Mask R-CNN sized for 128x128 shapes images, trainable from scratch on a CPU."""
    NAME = "shapes"
    CLASS_NAMES = CLASS_NAMES
    NUM_CLASSES = 1 + 3                      # background + square, circle, triangle
    IMAGES_PER_GPU = 4
    BACKBONE = "resnet50"
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    # Anchor sides in pixels, one per pyramid level, matched to the shapes (20-55 px):
    # with matterport's shapes anchors (8 ... 128) 93% of the shapes have no anchor at
    # IoU >= 0.7, with these 70%, and the best anchor's IoU is 0.65 on average, not 0.56.
    RPN_ANCHOR_SCALES = (12, 24, 48, 96, 192)
    TOP_DOWN_PYRAMID_SIZE = 128              # feature pyramid channels (COCO: 256)
    MASK_POOL_SIZE = 7                       # 14x14 masks (COCO: 28x28): a quarter of the work
    MASK_SHAPE = [14, 14]
    PRE_NMS_LIMIT = 2000
    POST_NMS_ROIS_TRAINING = 500
    POST_NMS_ROIS_INFERENCE = 250
    TRAIN_ROIS_PER_IMAGE = 32                # few objects per image: 32 RoIs, a third positive
    MAX_GT_INSTANCES = 8
    FPN_CLASSIF_FC_LAYERS_SIZE = 256
    DETECTION_MAX_INSTANCES = 20
    DETECTION_MIN_CONFIDENCE = 0.7
    STEPS_PER_EPOCH = 50
    VALIDATION_STEPS = 2
    LEARNING_RATE = 0.01
    # From scratch there are no statistics worth freezing: the backbone's BatchNorm
    # trains (batch statistics), measured against frozen calibrated statistics, which
    # stall (README, "Train on your own data").
    TRAIN_BN = True


def _polygon(kind, cy, cx, r):
    """Vertices (rows, cols) of a square of half-side r or an upright equilateral
    triangle of height 2r, centred on (cy, cx)."""
    if kind == "square":
        return (np.array([cy - r, cy - r, cy + r, cy + r]),
                np.array([cx - r, cx + r, cx + r, cx - r]))
    half_base = 2 * r / np.sqrt(3)
    return np.array([cy - r, cy + r, cy + r]), np.array([cx, cx - half_base, cx + half_base])


def _colour(rng, far_from=(), distance=90):
    """A random RGB colour at least ``distance`` away from each of ``far_from``."""
    for _ in range(100):
        colour = rng.integers(0, 256, 3)
        if all(np.linalg.norm(colour - np.asarray(c)) >= distance for c in far_from):
            return colour
    return 255 - np.asarray(far_from[0])


#: With ``occlusion``, the least share of each shape left visible by those drawn over it.
MIN_VISIBLE = 0.4


def draw_shapes(rng, height=128, width=128, max_shapes=4, sizes=None, occlusion=False):
    """One image: (image [H, W, 3] uint8, masks [H, W, N] bool, class_ids [N] int32).

    Shapes are drawn with ``rng`` only. ``sizes`` bounds the half-size r in pixels
    (square half-side, circle radius, half the triangle's height), by default 10-24
    pixels per 128 of the image's smaller side (matterport's shapes are 20-32);
    shapes keep a gap of 2 pixels between their boxes and stay inside the image.

    With ``occlusion`` (the video's shapes cross each other), shapes may overlap: each
    is drawn over those before it, each mask is the shape's visible part, and a shape
    that would leave less than :data:`MIN_VISIBLE` of one already drawn is not drawn.
    """
    if sizes is None:
        sizes = (10 * min(height, width) / 128, 24 * min(height, width) / 128)
    background = rng.integers(0, 256, 3)
    image = np.broadcast_to(background.astype(np.uint8), (height, width, 3)).copy()
    masks, class_ids, boxes, areas, colours = [], [], [], [], []
    wanted = int(rng.integers(1, max_shapes + 1))
    for _ in range(50 * wanted):
        if len(masks) == wanted:
            break
        class_id = int(rng.integers(1, 4))
        r = float(rng.uniform(*sizes))
        cy = float(rng.uniform(r + 1, height - r - 2))
        cx = float(rng.uniform(r * 1.2 + 1, width - r * 1.2 - 2))
        box = np.array([cy - r - 2, cx - 1.2 * r - 2, cy + r + 2, cx + 1.2 * r + 2])
        if not occlusion and any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3]
                                 and b[1] < box[3] for b in boxes):
            continue
        mask = np.zeros((height, width), bool)
        if class_id == 2:
            mask[skimage.draw.disk((cy, cx), r, shape=(height, width))] = True
        else:
            rows, cols = _polygon(CLASS_NAMES[class_id], cy, cx, r)
            mask[skimage.draw.polygon(rows, cols, shape=(height, width))] = True
        if mask.sum() < 16:
            continue
        if occlusion:
            left = [m & ~mask for m in masks]
            if any(after.sum() < MIN_VISIBLE * area
                   for after, area in zip(left, areas, strict=True)):
                continue
            masks = left
            areas.append(int(mask.sum()))
            colours.append(_colour(rng, [background, *colours]))
            image[mask] = colours[-1]
        else:
            image[mask] = _colour(rng, [background])
        masks.append(mask)
        class_ids.append(class_id)
        boxes.append(box)
    masks = np.stack(masks, axis=2) if masks else np.zeros((height, width, 0), bool)
    return image, masks, np.array(class_ids, np.int32)


class ShapesDataset(Dataset):
    """``count`` generated images; image i is drawn from the seed ``(seed, i)``."""

    def load_shapes(self, count, height=128, width=128, seed=0, occlusion=False):
        for class_id, name in enumerate(CLASS_NAMES[1:], start=1):
            self.add_class("shapes", class_id, name)
        for i in range(count):
            self.add_image("shapes", image_id=i, path=None, height=height, width=width,
                           seed=(seed, i), occlusion=bool(occlusion))

    def _draw(self, image_id):
        info = self.image_info[image_id]
        return draw_shapes(np.random.default_rng(list(info["seed"])), info["height"],
                           info["width"], occlusion=info.get("occlusion", False))

    def load_image(self, image_id):
        return self._draw(image_id)[0]

    def load_mask(self, image_id):
        _, masks, class_ids = self._draw(image_id)
        return masks, class_ids

    def image_reference(self, image_id):
        return f"shapes image seed={self.image_info[image_id]['seed']}"


#: The clips :class:`ClipFramesDataset` takes its frames from: this long, at this rate.
CLIP_SECONDS, CLIP_FPS = 4.0, 25.0


class ClipFramesDataset(ShapesDataset):
    """``count`` frames of generated clips (:func:`mrcnn.video.samples.moving_shapes`, the
    video benchmark's generator), loaded with ``load_shapes``: frame i is one frame, at a
    random time, of a clip of 3 to 5 shapes crossing each other, all drawn from the seed
    ``(seed, i)``. Each mask is a shape's visible part; shapes hidden down to under 16
    pixels are not labelled."""

    def _draw(self, image_id):
        from mrcnn.video.samples import moving_shapes
        info = self.image_info[image_id]
        rng = np.random.default_rng(list(info["seed"]))
        clip_seed = int(rng.integers(0, 2**31))
        shapes = int(rng.integers(3, 6))
        frame = int(rng.integers(0, int(CLIP_SECONDS * CLIP_FPS)))
        image, truth = next(moving_shapes(CLIP_SECONDS, CLIP_FPS, info["height"], shapes,
                                          clip_seed, first=frame))
        kept = [shape for shape in truth if shape.mask.sum() >= 16]
        masks = (np.stack([shape.mask for shape in kept], axis=2) if kept
                 else np.zeros((*image.shape[:2], 0), bool))
        return image, masks, np.array([shape.class_id for shape in kept], np.int32)


#: What the shapes pictures look like: shapes apart (matterport's), overlapping and
#: hiding each other (:func:`draw_shapes` with ``occlusion``), or frames of clips.
PICTURES = ("apart", "overlapping", "clips")


def shapes_dataset(count, seed, size=128, pictures="apart") -> Dataset:
    """``count`` prepared ``size`` x ``size`` pictures drawn from ``seed``, of the kind
    ``pictures`` names (:data:`PICTURES`)."""
    if pictures not in PICTURES:
        raise ValueError(f"pictures must be one of {', '.join(PICTURES)}, got {pictures!r}")
    dataset = ClipFramesDataset() if pictures == "clips" else ShapesDataset()
    dataset.load_shapes(count, size, size, seed=seed, occlusion=pictures == "overlapping")
    dataset.prepare()
    return dataset


def train_shapes_from_scratch(config, model_dir, epochs, low_lr_epochs=5, train_images=10000,
                              seed=0, val_dataset=None, weights=None, callbacks=(), verbose=1,
                              pictures="apart"):
    """The benchmark's recipe (``benchmarks/train_shapes.py``), for anyone who needs a
    trained shapes model: Keras' initialisers seeded by ``seed`` (or ``weights``), the
    BatchNorm statistics calibrated on 32 training images, all layers trained for
    ``epochs - low_lr_epochs`` epochs at LEARNING_RATE and the last ``low_lr_epochs``
    at a tenth of it, on ``train_images`` pictures drawn from seed 1, of the kind
    ``pictures`` names (see :func:`shapes_dataset`).

    Returns (model, marks): ``marks`` lists (what, seconds since the start) for the
    calibration and each epoch's checkpoint; the last one is the trained file.
    """
    import time

    import keras

    from mrcnn.model import MaskRCNN
    from mrcnn.training.calibration import calibrate_batchnorm
    from mrcnn.training.trainer import Trainer
    train_set = shapes_dataset(train_images, 1, config.IMAGE_MAX_DIM, pictures)
    keras.utils.set_random_seed(seed)
    model = MaskRCNN(mode="training", config=config, model_dir=model_dir)
    started = time.perf_counter()
    if weights:
        model.load_weights(weights)
    calibrate_batchnorm(model, train_set, images=32, seed=seed)
    marks = [("calibrated", time.perf_counter() - started)]

    class Clock:
        def on_epoch_end(self, epoch, logs):
            marks.append((logs["checkpoint"], time.perf_counter() - started))

    high = max(epochs - low_lr_epochs, 1)
    hooks = [Clock(), *callbacks]
    trainer = Trainer(model)
    trainer.train(train_set, val_dataset, config.LEARNING_RATE, epochs=high, layers="all",
                  custom_callbacks=hooks, seed=seed, verbose=verbose)
    if epochs > high:
        trainer.train(train_set, val_dataset, config.LEARNING_RATE / 10, epochs=epochs,
                      layers="all", custom_callbacks=hooks, seed=seed + 1, verbose=verbose)
    return model, marks
