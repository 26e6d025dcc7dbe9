"""Configuration with matterport's field names and defaults.

A matterport user's ``Config`` subclass carries over unchanged: subclass
:class:`Config`, override class attributes, instantiate. Derived values
(``BATCH_SIZE``, ``IMAGE_SHAPE``, ``IMAGE_META_SIZE``) are computed in
``__init__`` exactly as the reference does.

A few of matterport's settings are accepted, so such a subclass still loads, but not
used: ``IGNORED_SETTINGS`` lists each with the reason, and a config that changes one
from its default logs a warning when it is created. ``IMAGE_RESIZE_MODE = "crop"``
(matterport's training-time random crop) is refused with a clear message.
"""
from __future__ import annotations

import logging
from importlib import import_module

import numpy as np

#: matterport's settings accepted for compatibility but not used here: name -> why.
IGNORED_SETTINGS = {
    "COMPUTE_BACKBONE_SHAPE": "custom backbones are not supported: BACKBONE is 'resnet50' "
                              "or 'resnet101' and the pyramid shapes follow from "
                              "BACKBONE_STRIDES",
    "USE_RPN_ROIS": "the heads always train on the RPN's proposals (matterport's default); "
                    "externally given proposals are not supported",
}
#: IMAGE_RESIZE_MODE values that work, for inference and training alike.
RESIZE_MODES = ("square", "pad64", "none")


class Config:
    # Name of the configuration; checkpoints and logs are named after it.
    NAME = None
    # Devices to train on (1 here: one device per process).
    GPU_COUNT = 1
    # Images per device per step; BATCH_SIZE = IMAGES_PER_GPU * GPU_COUNT.
    IMAGES_PER_GPU = 2
    # Training steps per epoch (an epoch here is a number of steps, not a pass over the data).
    STEPS_PER_EPOCH = 1000
    # Validation steps at the end of each epoch.
    VALIDATION_STEPS = 50
    # Backbone network: "resnet50" or "resnet101".
    BACKBONE = "resnet101"
    # Accepted, not used (IGNORED_SETTINGS): custom backbones are not supported.
    COMPUTE_BACKBONE_SHAPE = None
    # Pixels per feature-map cell of each pyramid level P2..P6.
    BACKBONE_STRIDES = [4, 8, 16, 32, 64]
    # Width of the two fully connected layers of the classifier head.
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024
    # Channels of the feature pyramid P2..P6.
    TOP_DOWN_PYRAMID_SIZE = 256
    # Classes including the background (COCO: 1 + 80).
    NUM_CLASSES = 1
    # Side of the square anchors, in pixels, one per pyramid level.
    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)
    # Width / height of the anchors at each cell (1 square, 0.5 tall, 2 wide).
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]
    # Anchors at every feature-map cell (1) or every second cell (2), ...
    RPN_ANCHOR_STRIDE = 1
    # IoU above which the RPN's proposals suppress each other; higher keeps more.
    RPN_NMS_THRESHOLD = 0.7
    # Anchors per image used to train the RPN.
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256
    # Anchors with the best objectness that are refined and go into the RPN's NMS.
    PRE_NMS_LIMIT = 6000
    # Proposals kept after the RPN's NMS when training.
    POST_NMS_ROIS_TRAINING = 2000
    # Proposals kept after the RPN's NMS at inference.
    POST_NMS_ROIS_INFERENCE = 1000
    # Store training masks resized to MINI_MASK_SHAPE inside their boxes (saves memory).
    USE_MINI_MASK = True
    # (height, width) of a mini-mask.
    MINI_MASK_SHAPE = (56, 56)
    # How images are resized: "square" (pad to IMAGE_MAX_DIM squared), "pad64" or "none"
    # (matterport's "crop" is refused).
    IMAGE_RESIZE_MODE = "square"
    # The shorter side is scaled up to at least this many pixels...
    IMAGE_MIN_DIM = 800
    # ...unless the longer side would pass this; a multiple of 64 (the pyramid halves it 6 times).
    IMAGE_MAX_DIM = 1024
    # Minimum scale factor, applied after IMAGE_MIN_DIM (0: none).
    IMAGE_MIN_SCALE = 0
    # Colour channels of the input (3: RGB).
    IMAGE_CHANNEL_COUNT = 3
    # Mean RGB pixel subtracted from every input pixel.
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9])
    # RoIs per image fed to the classifier and mask heads in training.
    TRAIN_ROIS_PER_IMAGE = 200
    # Share of those RoIs that are positive (IoU >= 0.5 with an object).
    ROI_POSITIVE_RATIO = 0.33
    # Side of the RoI-align grid of the classifier head.
    POOL_SIZE = 7
    # Side of the RoI-align grid of the mask head.
    MASK_POOL_SIZE = 14
    # Output mask size of the mask head (MASK_POOL_SIZE doubled by its deconvolution).
    MASK_SHAPE = [28, 28]
    # Most ground-truth objects per training image.
    MAX_GT_INSTANCES = 100
    # Standard deviations the RPN's box deltas are scaled by.
    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    # Standard deviations the classifier head's box deltas are scaled by.
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    # Most detections per image.
    DETECTION_MAX_INSTANCES = 100
    # Detections with a lower class score are dropped (0 keeps all).
    DETECTION_MIN_CONFIDENCE = 0.7
    # IoU above which detections of one class suppress each other.
    DETECTION_NMS_THRESHOLD = 0.3
    # SGD learning rate.
    LEARNING_RATE = 0.001
    # SGD momentum.
    LEARNING_MOMENTUM = 0.9
    # L2 weight decay on weights (never on BatchNorm gamma and beta).
    WEIGHT_DECAY = 0.0001
    # Weight of each loss in the total loss.
    LOSS_WEIGHTS = {
        "rpn_class_loss": 1.0,
        "rpn_bbox_loss": 1.0,
        "mrcnn_class_loss": 1.0,
        "mrcnn_bbox_loss": 1.0,
        "mrcnn_mask_loss": 1.0,
    }
    # Accepted, not used (IGNORED_SETTINGS): the heads always train on the RPN's proposals.
    USE_RPN_ROIS = True
    # Train BatchNorm layers (False: frozen, as with small batches).
    TRAIN_BN = False
    # Gradients are clipped to this global norm.
    GRADIENT_CLIP_NORM = 5.0

    def __init__(self):
        if self.IMAGE_RESIZE_MODE not in RESIZE_MODES:
            raise ValueError(f"IMAGE_RESIZE_MODE {self.IMAGE_RESIZE_MODE!r} is not supported; "
                             f"use one of {', '.join(map(repr, RESIZE_MODES))}.")
        for name, why in IGNORED_SETTINGS.items():
            if getattr(self, name) != getattr(Config, name):
                logging.getLogger(__name__).warning("%s is set but not used: %s.", name, why)
        self.BATCH_SIZE = self.IMAGES_PER_GPU * self.GPU_COUNT
        self.IMAGE_SHAPE = np.array(
            [self.IMAGE_MAX_DIM, self.IMAGE_MAX_DIM, self.IMAGE_CHANNEL_COUNT])
        # image_id, original shape (3), molded shape (3), window (4), scale, class ids
        self.IMAGE_META_SIZE = 1 + 3 + 3 + 4 + 1 + self.NUM_CLASSES

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in sorted(dir(self))
                if name.isupper() and not callable(getattr(self, name))}

    def display(self) -> None:
        print("\nConfigurations:")
        for key, value in self.to_dict().items():
            print(f"{key:30} {value}")
        print()


class CocoConfig(Config):
    """The configuration the published COCO weights were trained with, for inference."""
    NAME = "coco"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    NUM_CLASSES = 1 + 80      # background + COCO's 80 classes


#: The import path of the published weights' config: the default of the app and service.
DEFAULT_CONFIG_PATH = "mrcnn.config:CocoConfig"


def config_from_path(import_path: str = DEFAULT_CONFIG_PATH,
                     overrides: dict | None = None) -> Config:
    """An instance of the config class at ``import_path`` with ``overrides`` applied.

    The overrides become class attributes of a subclass, so the derived values
    (``IMAGE_SHAPE``, ``IMAGE_META_SIZE``, ...) are computed from them. Lists
    are turned back into arrays where the base class has an array (YAML and
    JSON have no numpy).
    """
    module_name, _, class_name = import_path.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"config must look like 'package.module:ClassName', got {import_path!r}.")
    base = getattr(import_module(module_name), class_name, None)
    if not (isinstance(base, type) and issubclass(base, Config)):
        raise ValueError(f"{import_path} is not a subclass of mrcnn.config.Config.")
    attributes = {}
    for key, value in (overrides or {}).items():
        if not key.isupper() or not hasattr(base, key):
            raise ValueError(f"{key!r} is not a setting of {import_path}; "
                             "config overrides use the config's upper-case names.")
        if isinstance(getattr(base, key), np.ndarray):
            value = np.asarray(value, dtype=getattr(base, key).dtype)
        attributes[key] = value
    if not attributes:
        return base()
    return type(f"Configured{base.__name__}", (base,), attributes)()


def config_overrides_of(config: Config) -> dict:
    """The class attributes a config's own class sets over ``Config`` (JSON-able).

    The inverse of :func:`config_from_path` for configs written as a subclass of
    ``Config``, such as the tests' small network.
    """
    overrides = {}
    for klass in reversed(type(config).__mro__):
        if klass is object or not issubclass(klass, Config) or klass is Config:
            continue
        for key, value in vars(klass).items():
            if key.isupper():
                overrides[key] = value.tolist() if isinstance(value, np.ndarray) else value
    return overrides
