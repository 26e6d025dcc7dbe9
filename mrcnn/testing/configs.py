"""Small network configurations for tests and benchmarks (seconds per build, not minutes)."""
from __future__ import annotations

from mrcnn.config import Config

__all__ = ["TINY_SHAPES", "SmallConfig", "small_config"]


class SmallConfig(Config):
    """ResNet-50, 3 classes + background, 256 px: the stages of the COCO model, small."""
    NAME = "small"
    BACKBONE = "resnet50"
    NUM_CLASSES = 4
    IMAGES_PER_GPU = 1
    IMAGE_MIN_DIM = 256
    IMAGE_MAX_DIM = 256
    PRE_NMS_LIMIT = 1000
    POST_NMS_ROIS_INFERENCE = 200
    DETECTION_MAX_INSTANCES = 20
    FPN_CLASSIF_FC_LAYERS_SIZE = 128
    DETECTION_MIN_CONFIDENCE = 0.5


def small_config(**changes) -> SmallConfig:
    """A :class:`SmallConfig` with some settings changed (a subclass, so derived values follow)."""
    if not changes:
        return SmallConfig()
    return type("SmallConfig", (SmallConfig,), dict(changes))()


#: Overrides of ``ShapesConfig`` for a 64-px shapes network that builds and trains in seconds.
TINY_SHAPES = {"IMAGE_MIN_DIM": 64, "IMAGE_MAX_DIM": 64, "IMAGES_PER_GPU": 1,
               "TOP_DOWN_PYRAMID_SIZE": 32, "FPN_CLASSIF_FC_LAYERS_SIZE": 32,
               "TRAIN_ROIS_PER_IMAGE": 12, "POST_NMS_ROIS_TRAINING": 60,
               "POST_NMS_ROIS_INFERENCE": 30}
