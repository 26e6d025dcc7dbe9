"""Mask R-CNN (ResNet-FPN) inference on TensorFlow 2 / Keras 3.

Light imports only at package level: ``import mrcnn`` does not load TensorFlow.
``mrcnn.load_model`` and ``mrcnn.MaskRCNN`` import it on first use.
"""
from mrcnn.classes import COCO_CATEGORY_IDS, COCO_CLASS_NAMES
from mrcnn.config import CocoConfig, Config

__all__ = ["COCO_CATEGORY_IDS", "COCO_CLASS_NAMES", "CocoConfig", "Config",
           "MaskRCNN", "load_model"]


def __getattr__(name):
    if name in ("MaskRCNN", "load_model"):
        from mrcnn import model
        return getattr(model, name)
    raise AttributeError(f"module 'mrcnn' has no attribute {name!r}")
