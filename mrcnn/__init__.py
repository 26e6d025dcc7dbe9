"""Mask R-CNN (ResNet-FPN) inference on TensorFlow 2 / Keras 3.

Light imports only at package level: ``import mrcnn`` does not load TensorFlow.
``mrcnn.load_model`` and ``mrcnn.MaskRCNN`` import it on first use.

Each stage of the network is written once, in one module:

- ``config``: ``Config`` / ``CocoConfig``; ``classes``: COCO's class names and ids;
- ``pixels``: any picture to RGB uint8; ``molding``: resize, pad, normalise (and back);
- ``anchors``: the anchors of every pyramid level;
- ``backbone``: ResNet-50/101 (C2..C5) and the feature pyramid (P2..P6);
- ``heads``: the RPN head, the classifier head and the mask head;
- ``layers``: RoI pooling (``PyramidROIAlign``), the proposal and detection layers;
- ``box_ops``: the one box codec (encode, decode, clip) and the one IoU;
- ``folding``: inference on those same layers with BatchNorm folded (a transformation,
  not a second network);
- ``compiled_steps``: the compiled inference steps; ``model``: ``MaskRCNN``
  (build, load, ``detect()``); ``precision``: float32 or bfloat16 (``MRCNN_PRECISION``);
- ``results``: result dicts, filtering and ``CompactMasks``;
- ``intermediates``, ``explain``, ``follow``, ``what_if``: one run's stages as numpy
  for the teaching page; ``retry``: the one retry policy.

Subpackages: ``weights`` (the file: check, download, read/write), ``inputs`` (uploads
and samples), ``draw``, ``export``, ``serve`` (Ray Serve), ``training`` (matterport's
training workflow; the engine never imports it) and ``testing`` (test helpers).
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
