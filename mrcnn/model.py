"""The Mask R-CNN inference model: build, load weights, detect.

- ``keras_model`` is the reference's inference graph (image, image_meta, anchors ->
  detections, class probabilities, box deltas, masks for all DETECTION_MAX_INSTANCES
  slots, proposals, RPN outputs), with the reference's layer names. It is what the
  weights file describes and what the folded path is tested against.
- ``forward()`` runs the same computation with BatchNorm folded into the
  convolutions (``mrcnn.folded``) in three compiled steps: everything up to the
  classified RoIs, the detection layer (its thresholds are inputs, so they change
  without retracing), then the mask head on only the detections that exist (each
  RoI's mask depends on that RoI alone, so skipping the empty slots changes
  nothing). It returns every stage (``NetworkOutputs``), in the molded frame.
- ``detect()`` is ``forward()`` then unmolding to matterport's result dicts (full
  ``(H, W, N)`` masks); ``detect_compact()`` the same with each mask kept inside
  its box (``mrcnn.results.CompactMasks``), which the app and the service use.
"""
from __future__ import annotations

import copy
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mrcnn.anchors import get_anchors
from mrcnn.backbone import feature_pyramid, resnet
from mrcnn.config import CocoConfig, Config
from mrcnn.folded import FoldedNetwork
from mrcnn.heads import Heads, build_rpn_model
from mrcnn.layers import DetectionLayer, ProposalLayer, detect_batch
from mrcnn.molding import mold, unmold_detections, unmold_detections_compact
from mrcnn.pixels import to_rgb_array

#: The intermediate tensors of a run, in network order.
STAGES = ("C2", "C3", "C4", "C5", "P2", "P3", "P4", "P5", "P6", "rpn_probs", "rpn_deltas",
          "proposals", "class_probs", "class_deltas")
RUNTIME_SETTINGS = {"DETECTION_MIN_CONFIDENCE", "DETECTION_NMS_THRESHOLD",
                    "DETECTION_MAX_INSTANCES", "IMAGE_MIN_DIM", "IMAGE_MAX_DIM"}


def configure_devices() -> str:
    """Enable GPU memory growth and describe the device inference runs on."""
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised: growth was set (or not) earlier in this process
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU ({details.get('device_name', gpus[0].name)})"
    return f"CPU ({os.cpu_count()} cores)"


@dataclass
class Timings:
    """Seconds spent in each step of the last ``detect()`` call."""
    mold: float = 0.0
    network: float = 0.0
    masks: float = 0.0
    unmold: float = 0.0
    input_shape: tuple = ()   # (h, w) the network saw

    def as_dict(self) -> dict:
        return {"mold": self.mold, "network": self.network, "masks": self.masks,
                "unmold": self.unmold}


@dataclass
class NetworkOutputs:
    """What one batch through the network computed, in the molded frame (before unmolding)."""
    config: Config                 # the config of this run (overrides applied)
    molded: list                   # MoldedImage per image
    metas: np.ndarray              # (B, IMAGE_META_SIZE) float32
    anchors: np.ndarray            # (A, 4) normalised
    stages: dict                   # STAGES name -> tf.Tensor (batch first)
    detections: np.ndarray         # (B, DETECTION_MAX_INSTANCES, 6) normalised, zero-padded
    masks: np.ndarray              # (B, n, 28, 28) soft mask of each detection's own class
    timings: Timings


class MaskRCNN:
    """Mask R-CNN: detect, and train on your own data.

    >>> model = MaskRCNN(CocoConfig())
    >>> model.load_weights("weights/mask_rcnn_coco.h5")
    >>> results = model.detect([image])

    matterport's training script carries over (see ``mrcnn.training``):

    >>> model = MaskRCNN(mode="training", config=config, model_dir="logs")
    >>> model.load_weights(path, by_name=True, exclude=["mrcnn_class_logits", ...])
    >>> model.train(train_dataset, val_dataset, config.LEARNING_RATE, epochs=1, layers="heads")
    """

    def __init__(self, config: Config | None = None, *, mode: str = "inference",
                 model_dir=None):
        if mode not in ("inference", "training"):
            raise ValueError(f"mode must be 'inference' or 'training', not {mode!r}.")
        self.mode = mode
        self.model_dir = Path(model_dir or "logs")
        self.epoch = 0            # epochs trained so far; train(epochs=N) continues up to N
        self.config = config or CocoConfig()
        self.device = configure_devices()
        logging.getLogger(__name__).info("Mask R-CNN (%s) runs on %s",
                                         self.config.BACKBONE, self.device)
        self.last_timings = Timings()
        self._build()

    # ------------------------------------------------------------------ graph
    def _build(self):
        cfg = self.config
        channels = cfg.IMAGE_SHAPE[2]
        image = keras.Input(shape=(None, None, channels), name="input_image")
        image_meta = keras.Input(shape=(cfg.IMAGE_META_SIZE,), name="input_image_meta")
        anchors = keras.Input(shape=(None, 4), name="input_anchors")

        c2, c3, c4, c5 = resnet(image, cfg.BACKBONE)
        p2, p3, p4, p5, p6 = feature_pyramid(c2, c3, c4, c5, cfg.TOP_DOWN_PYRAMID_SIZE)
        rpn_maps = [p2, p3, p4, p5, p6]
        mrcnn_maps = [p2, p3, p4, p5]

        rpn = build_rpn_model(len(cfg.RPN_ANCHOR_RATIOS), cfg.RPN_ANCHOR_STRIDE,
                              cfg.TOP_DOWN_PYRAMID_SIZE)
        level_outputs = [rpn(p) for p in rpn_maps]
        rpn_logits, rpn_probs, rpn_deltas = (
            keras.layers.Concatenate(axis=1, name=name)([out[i] for out in level_outputs])
            for i, name in enumerate(["rpn_class_logits", "rpn_class", "rpn_bbox"]))

        proposal_layer = ProposalLayer(
            proposal_count=cfg.POST_NMS_ROIS_INFERENCE, nms_threshold=cfg.RPN_NMS_THRESHOLD,
            pre_nms_limit=cfg.PRE_NMS_LIMIT, rpn_bbox_std_dev=cfg.RPN_BBOX_STD_DEV,
            name="ROI")
        proposals = proposal_layer(rpn_probs, rpn_deltas, anchors)

        self.heads = heads = Heads(cfg)
        _, class_probs, class_deltas = heads.classifier(proposals, image_meta, mrcnn_maps)
        detections = DetectionLayer(cfg, name="mrcnn_detection")(
            proposals, class_probs, class_deltas, image_meta)
        detection_boxes = keras.layers.Lambda(lambda d: d[..., :4], name="detection_boxes")(detections)
        masks = heads.mask(detection_boxes, image_meta, mrcnn_maps)

        inputs = [image, image_meta, anchors]
        self.keras_model = keras.Model(
            inputs, [detections, class_probs, class_deltas, masks, proposals, rpn_probs, rpn_deltas],
            name="mask_rcnn")
        self.feature_maps = {"C2": c2, "C3": c3, "C4": c4, "C5": c5,
                             "P2": p2, "P3": p3, "P4": p4, "P5": p5, "P6": p6}
        self.folded = FoldedNetwork(self)

        spec_image = tf.TensorSpec([None, None, None, channels], tf.float32)
        spec_meta = tf.TensorSpec([None, cfg.IMAGE_META_SIZE], tf.float32)
        spec_boxes = tf.TensorSpec([None, None, 4], tf.float32)
        spec_map = tf.TensorSpec([None, None, None, cfg.TOP_DOWN_PYRAMID_SIZE], tf.float32)
        scalar = tf.TensorSpec([], tf.float32)

        @tf.function(input_signature=[spec_image, spec_meta, spec_boxes])
        def classify_step(images, metas, anchors):
            """Molded images -> every stage up to the classified RoIs, by name (STAGES)."""
            net = self.folded
            c_maps = net.backbone(images)
            p_maps = net.pyramid(*c_maps)
            rpn_probs, rpn_deltas = net.rpn(p_maps)
            proposals = proposal_layer(rpn_probs, rpn_deltas, anchors)
            class_probs, class_deltas = net.classifier(proposals, metas, p_maps[:4])
            return dict(zip(STAGES, (*c_maps, *p_maps, rpn_probs, rpn_deltas, proposals,
                                     class_probs, class_deltas)))

        @tf.function(input_signature=[spec_boxes, tf.TensorSpec([None, None, cfg.NUM_CLASSES]),
                                      tf.TensorSpec([None, None, cfg.NUM_CLASSES, 4]), spec_meta,
                                      scalar, scalar, tf.TensorSpec([], tf.int32)])
        def detections_step(rois, probs, deltas, metas, min_confidence, nms_threshold,
                            max_instances):
            return detect_batch(rois, probs, deltas, metas, cfg.BBOX_STD_DEV, min_confidence,
                                nms_threshold, max_instances)

        @tf.function(input_signature=[spec_boxes, tf.TensorSpec([], tf.int32), spec_meta,
                                      tf.TensorSpec([None, None], tf.int32)] + [spec_map] * 4)
        def masks_step(slots, count, metas, class_ids, p2, p3, p4, p5):
            masks = self.folded.masks(slots, count, metas, [p2, p3, p4, p5])
            # (B, N, h, w, C) -> the channel of each detection's own class: (B, N, h, w)
            masks = tf.transpose(masks, [0, 1, 4, 2, 3])
            return tf.gather(masks, class_ids, axis=2, batch_dims=2)

        self._steps = (classify_step, detections_step, masks_step)

    # ---------------------------------------------------------------- weights
    def load_weights(self, path, by_name=True, exclude=()):
        """Load a Keras 2 HDF5 weights file by layer name; see ``mrcnn.weights.keras_h5``.

        Always by name, every shape checked; ``by_name`` is accepted so matterport's
        ``load_weights(path, by_name=True, exclude=[...])`` carries over.
        """
        exclude = exclude or ()
        from mrcnn.weights.keras_h5 import load_h5_weights
        load_h5_weights(self.keras_model, path, exclude=exclude)
        self.folded.refresh()
        return self

    # ------------------------------------------------------------------ train
    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
              augmentation=None, **options):
        """Train up to ``epochs`` epochs in total (matterport's meaning); see
        ``mrcnn.training.trainer.train`` for ``layers`` and the options."""
        if self.mode != "training":
            raise ValueError('Create the model with MaskRCNN(mode="training", ...) to train it.')
        from mrcnn.training.trainer import train
        return train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
                     augmentation=augmentation, **options)

    # ----------------------------------------------------------------- detect
    def mold_inputs(self, images, config=None):
        """Images -> (molded float32 batch, metas float32, list of MoldedImage)."""
        config = config or self.config
        molded = [mold(to_rgb_array(image), config) for image in images]
        shapes = {m.image.shape for m in molded}
        if len(shapes) > 1:
            raise ValueError("Images in one detect() call must mold to the same shape; "
                             "with IMAGE_RESIZE_MODE='square' they always do.")
        batch = np.stack([m.image for m in molded]).astype(np.float32)
        metas = np.stack([m.meta for m in molded]).astype(np.float32)
        return batch, metas, molded

    def with_overrides(self, **overrides) -> Config:
        """A copy of the config with some run-time settings changed.

        Allowed: DETECTION_MIN_CONFIDENCE, DETECTION_NMS_THRESHOLD,
        DETECTION_MAX_INSTANCES, IMAGE_MIN_DIM, IMAGE_MAX_DIM. None of them needs a
        new graph: the compiled steps take them as inputs or are shape-agnostic.
        """
        unknown = set(overrides) - RUNTIME_SETTINGS
        if unknown:
            raise ValueError(f"Cannot change {sorted(unknown)} at run time; "
                             f"allowed: {sorted(RUNTIME_SETTINGS)}.")
        config = copy.copy(self.config)
        for key, value in overrides.items():
            if value is not None:
                setattr(config, key, value)
        if config.IMAGE_RESIZE_MODE == "square" and config.IMAGE_MAX_DIM % 64:
            raise ValueError("IMAGE_MAX_DIM must be a multiple of 64.")
        return config

    def forward(self, images, **overrides) -> NetworkOutputs:
        """Images through the network, before unmolding: what ``detect()`` computes.

        ``NetworkOutputs.stages`` keeps every intermediate tensor (``STAGES``); the
        teaching page reads them, ``detect()`` only unmolds the detections and masks.
        """
        config = self.with_overrides(**overrides)
        classify_step, detections_step, masks_step = self._steps
        t0 = time.perf_counter()
        batch, metas, molded = self.mold_inputs(images, config)
        anchors = get_anchors(config, batch.shape[1:3])
        metas_t = tf.constant(metas)
        t1 = time.perf_counter()
        stages = classify_step(tf.constant(batch), metas_t, tf.constant(
            np.broadcast_to(anchors, (len(images),) + anchors.shape)))
        detections = detections_step(
            stages["proposals"], stages["class_probs"], stages["class_deltas"], metas_t,
            tf.constant(config.DETECTION_MIN_CONFIDENCE or 0.0, tf.float32),
            tf.constant(config.DETECTION_NMS_THRESHOLD, tf.float32),
            tf.constant(config.DETECTION_MAX_INSTANCES, tf.int32)).numpy()
        t2 = time.perf_counter()
        count = int((detections[:, :, 4] > 0).sum(axis=1).max())
        if count:
            masks = masks_step(
                tf.constant(detections[:, :, :4]), tf.constant(count, tf.int32), metas_t,
                tf.constant(detections[:, :count, 4].astype(np.int32)),
                *(stages[name] for name in ("P2", "P3", "P4", "P5"))).numpy()
        else:
            masks = np.zeros((len(images), 0) + tuple(config.MASK_SHAPE), np.float32)
        t3 = time.perf_counter()
        timings = Timings(mold=t1 - t0, network=t2 - t1, masks=t3 - t2,
                          input_shape=tuple(batch.shape[1:3]))
        return NetworkOutputs(config, molded, metas, anchors, stages, detections, masks, timings)

    def detect(self, images, verbose=0, **overrides):
        """Detect objects in a list of RGB images (any size).

        Returns one dict per image with ``rois`` (N, 4) int32 [y1, x1, y2, x2] in the
        image's pixels, ``class_ids`` (N,) int32, ``scores`` (N,) float32 and ``masks``
        (H, W, N) bool, ordered by score, exactly like matterport's ``detect()``.
        Keyword overrides (see ``with_overrides``) apply to this call only.
        ``verbose`` is accepted for matterport compatibility and ignored.
        """
        return self._detect(images, overrides, unmold_detections)

    def detect_compact(self, images, **overrides):
        """``detect()`` with ``masks`` as :class:`mrcnn.results.CompactMasks`.

        Each mask is kept inside its box (``masks.windows`` equals ``rois``) as COCO
        RLE: the same pixels as ``detect()``'s masks (``masks.stack()`` gives them),
        in kilobytes instead of H*W bytes per object, and without building the
        full-frame stack at all.
        """
        return self._detect(images, overrides, unmold_detections_compact)

    def _detect(self, images, overrides, unmold) -> list[dict]:
        if len(images) == 0:
            return []
        outputs = self.forward(images, **overrides)
        start = time.perf_counter()
        results = []
        for i, m in enumerate(outputs.molded):
            rois, class_ids, scores, masks = unmold(
                outputs.detections[i], outputs.masks[i], m.original_shape, m.image.shape,
                m.window)
            results.append({"rois": rois, "class_ids": class_ids, "scores": scores,
                            "masks": masks})
        outputs.timings.unmold = time.perf_counter() - start
        self.last_timings = outputs.timings
        return results

    def trace_count(self) -> int:
        """Graphs traced by the compiled steps so far (3 after the first call, for good)."""
        return sum(step.experimental_get_tracing_count() for step in self._steps)


def load_model(weights_path=None, config=None, exclude=()) -> MaskRCNN:
    """Build Mask R-CNN for ``config`` (COCO by default) and load ``weights_path``.

    ``weights_path`` defaults to ``mrcnn.weights.default_weights_path()``
    ($MRCNN_WEIGHTS or weights/mask_rcnn_coco.h5). The file is checked before
    anything is built, so a missing or truncated file fails fast with advice.
    """
    from mrcnn.weights.check import check_weights_file, default_weights_path
    path = weights_path or default_weights_path()
    check_weights_file(path)
    model = MaskRCNN(config or CocoConfig())
    model.load_weights(path, exclude=exclude)
    return model


_SHARED: dict = {}
_SHARED_LOCK = threading.Lock()


def shared_model(weights_path=None, config=None) -> MaskRCNN:
    """One loaded model per (weights file, config) for the whole process.

    Several front ends in one process (the app's pages, a notebook's cells) get the
    same object instead of one ~1 GB copy each. A weights file replaced on disk
    (another size or modification time) loads anew.
    """
    from mrcnn.weights.check import default_weights_path
    path = Path(weights_path or default_weights_path()).resolve()
    config = config or CocoConfig()
    stat = path.stat() if path.exists() else None
    key = (str(path), stat and (stat.st_size, stat.st_mtime_ns), type(config).__qualname__,
           repr(sorted((k, repr(v)) for k, v in config.to_dict().items())))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = load_model(path, config)
        return _SHARED[key]
