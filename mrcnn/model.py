"""The Mask R-CNN inference model: build, load weights, detect.

- ``keras_model`` is the reference's inference graph (image, image_meta, anchors ->
  detections, class probabilities, box deltas, masks for all DETECTION_MAX_INSTANCES
  slots, proposals, RPN outputs), with the reference's layer names. It is what the
  weights file describes and what inference is tested against.
- ``forward()`` runs the same layers with BatchNorm folded into the convolutions
  (``mrcnn.folding``, a transformation of this graph and its current weights, so
  nothing goes stale) in three compiled steps (``mrcnn.compiled_steps``):
  everything up to the classified RoIs, the detection layer (its thresholds are
  inputs, so they change without retracing), then the mask head on only the
  detections that exist (each RoI's mask depends on that RoI alone, so skipping the
  empty slots changes nothing). It returns every stage (``NetworkOutputs``), in the
  molded frame, and where each result came from: the anchor behind each proposal
  and the RoI behind each detection, read from the proposal and detection layers'
  own selections.
- ``heads_from_pyramid()`` reruns only the proposal layer and the heads on an
  earlier run's feature maps, with other proposal or detection settings.
- ``detect()`` is ``forward()`` then unmolding to matterport's result dicts (full
  ``(H, W, N)`` masks); ``detect_compact()`` the same with each mask kept inside
  its box (``mrcnn.results.CompactMasks``), which the app and the service use, plus
  each detection's RoI and class probabilities.
"""
from __future__ import annotations

import copy
import logging
import os
import threading
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mrcnn.anchors import get_anchors
from mrcnn.backbone import feature_pyramid, resnet
from mrcnn.compiled_steps import STAGES, NetworkOutputs, Timings, compile_steps  # noqa: F401
from mrcnn.config import CocoConfig, Config
from mrcnn.folding import FEATURES, InferenceNetwork
from mrcnn.heads import Heads, build_rpn_model
from mrcnn.layers import DetectionLayer, ProposalLayer
from mrcnn.molding import compact_masks, mold, unmold_boxes, unmold_detections
from mrcnn.pixels import to_rgb_array
from mrcnn.precision import DTYPES, check_precision, default_precision, resolve_precision

DETECTION_SETTINGS = {"DETECTION_MIN_CONFIDENCE", "DETECTION_NMS_THRESHOLD",
                      "DETECTION_MAX_INSTANCES"}
#: Settings detect() and forward() take per call.
RUNTIME_SETTINGS = DETECTION_SETTINGS | {"IMAGE_MIN_DIM", "IMAGE_MAX_DIM"}
#: Settings heads_from_pyramid() takes per call (the feature maps fix the image size).
HEADS_SETTINGS = DETECTION_SETTINGS | {"RPN_NMS_THRESHOLD", "POST_NMS_ROIS_INFERENCE"}


def configure_devices() -> str:
    """Enable GPU memory growth and describe the device inference runs on.

    On a GPU, TensorFlow's default TensorFloat-32 matrix products (10-bit mantissa on
    Ampere and later) are switched off for the process: float32 means float32 here
    (``mrcnn.precision``), and reduced precision is asked for by name.
    """
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        tf.config.experimental.enable_tensor_float_32_execution(False)
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            pass  # already initialised: growth was set (or not) earlier in this process
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"GPU ({details.get('device_name', gpus[0].name)})"
    return f"CPU ({os.cpu_count()} cores)"


class MaskRCNN:
    """Mask R-CNN: detect, and train on your own data.

    >>> model = MaskRCNN(CocoConfig())
    >>> model.load_weights("weights/mask_rcnn_coco.h5")
    >>> results = model.detect([image])

    matterport's training script carries over, with ``model.train(...)`` spelled
    ``Trainer(model).train(...)`` (``mrcnn.training.Trainer``, which owns the training
    state; this class knows nothing of training):

    >>> model = MaskRCNN(mode="training", config=config, model_dir="logs")
    >>> model.load_weights(path, by_name=True, exclude=["mrcnn_class_logits", ...])
    >>> Trainer(model).train(train_set, val_set, config.LEARNING_RATE, epochs=1, layers="heads")

    ``mode`` ("inference" or "training") is accepted for matterport compatibility: both
    build the same layers. ``model_dir`` is where a ``Trainer`` writes its log folders.
    ``precision`` ("auto", "fp32", "bf16", "fp16"; default ``$MRCNN_PRECISION``, else
    "auto") is what inference computes in (``mrcnn.precision``); ``detect()`` takes
    ``precision=`` for one call. ``fp32`` gives matterport's answers.
    """

    def __init__(self, config: Config | None = None, *, mode: str = "inference",
                 model_dir=None, precision: str | None = None):
        if mode not in ("inference", "training"):
            raise ValueError(f"mode must be 'inference' or 'training', not {mode!r}.")
        self.precision = check_precision(precision) if precision else default_precision()
        self.mode = mode
        self.model_dir = Path(model_dir or "logs")
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
        detection_boxes = keras.layers.Lambda(lambda d: d[..., :4],
                                              name="detection_boxes")(detections)
        masks = heads.mask(detection_boxes, image_meta, mrcnn_maps)

        inputs = [image, image_meta, anchors]
        self.keras_model = keras.Model(
            inputs,
            [detections, class_probs, class_deltas, masks, proposals, rpn_probs, rpn_deltas],
            name="mask_rcnn")
        self.feature_maps = {"C2": c2, "C3": c3, "C4": c4, "C5": c5,
                             "P2": p2, "P3": p3, "P4": p4, "P5": p5, "P6": p6}
        self.feature_model = keras.Model(
            image, [*self.feature_maps.values(), rpn_probs, rpn_deltas], name="features")
        assert tuple(self.feature_maps) + ("rpn_probs", "rpn_deltas") == FEATURES
        self.network = InferenceNetwork(self)
        self._proposal_layer = proposal_layer

        self._compiled = steps = compile_steps(cfg, self.network, proposal_layer)
        self._compiled_in = {"fp32": steps}   # resolved precision -> its compiled steps
        self._compile_lock = threading.Lock()

        def detections_alone(*args):
            """The detection step without its RoI indices: (B, D, 6)."""
            return steps.detections(*args)[0]

        # detect()'s three steps as callers outside the model use them
        self._steps = (steps.classify, detections_alone, steps.masks)

    def steps_in(self, precision: str):
        """The compiled steps computing in a resolved ``precision`` ("fp32", "bf16",
        "fp16"), built on first use: the same layers and variables, other casts."""
        steps = self._compiled_in.get(precision)
        if steps is None:
            with self._compile_lock:
                steps = self._compiled_in.get(precision)
                if steps is None:
                    network = self.network.in_dtype(DTYPES[precision])
                    steps = compile_steps(self.config, network, self._proposal_layer)
                    self._compiled_in[precision] = steps
        return steps

    def resolve_precision(self, input_pixels: int, precision: str | None = None) -> str:
        """What a run with ``input_pixels`` network-input pixels computes in, for
        ``precision`` (default: the model's own)."""
        return resolve_precision(precision or self.precision, self.device, int(input_pixels))

    # ---------------------------------------------------------------- weights
    def load_weights(self, path, by_name=True, exclude=()):
        """Load a Keras 2 HDF5 weights file by layer name; see ``mrcnn.weights.keras_h5``.

        Always by name, every shape checked; ``by_name`` is accepted so matterport's
        ``load_weights(path, by_name=True, exclude=[...])`` carries over.
        """
        exclude = exclude or ()
        from mrcnn.weights.keras_h5 import load_h5_weights
        load_h5_weights(self.keras_model, path, exclude=exclude)
        return self

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

    def with_overrides(self, allowed=RUNTIME_SETTINGS, **overrides) -> Config:
        """A copy of the config with some run-time settings changed.

        Allowed (``RUNTIME_SETTINGS``): DETECTION_MIN_CONFIDENCE, DETECTION_NMS_THRESHOLD,
        DETECTION_MAX_INSTANCES, IMAGE_MIN_DIM, IMAGE_MAX_DIM. None of them needs a
        new graph: the compiled steps take them as inputs or are shape-agnostic.
        """
        unknown = set(overrides) - set(allowed)
        if unknown:
            raise ValueError(f"Cannot change {sorted(unknown)} at run time; "
                             f"allowed: {sorted(allowed)}.")
        config = copy.copy(self.config)
        for key, value in overrides.items():
            if value is not None:
                setattr(config, key, value)
        if config.IMAGE_RESIZE_MODE == "square" and config.IMAGE_MAX_DIM % 64:
            raise ValueError("IMAGE_MAX_DIM must be a multiple of 64.")
        return config

    def forward(self, images, precision: str | None = None, **overrides) -> NetworkOutputs:
        """Images through the network, before unmolding: what ``detect()`` computes.

        ``NetworkOutputs.stages`` keeps every intermediate tensor (``STAGES``); the
        teaching page reads them, ``detect()`` only unmolds the detections and masks.
        ``precision``: for this call instead of the model's (``mrcnn.precision``).
        """
        config = self.with_overrides(**overrides)
        t0 = time.perf_counter()
        batch, metas, molded = self.mold_inputs(images, config)
        resolved = self.resolve_precision(batch.shape[1] * batch.shape[2], precision)
        steps = self.steps_in(resolved)
        classify_step = steps.classify
        anchors = get_anchors(config, batch.shape[1:3])
        metas_t = tf.constant(metas)
        t1 = time.perf_counter()
        stages = classify_step(tf.constant(batch), metas_t, tf.constant(
            np.broadcast_to(anchors, (len(images),) + anchors.shape)))
        proposal_anchors = stages.pop("proposal_anchors").numpy()
        return self._detect_and_mask(config, molded, metas, anchors, stages, proposal_anchors,
                                     Timings(mold=t1 - t0, input_shape=tuple(batch.shape[1:3]),
                                             precision=resolved), t1, steps)

    def heads_from_pyramid(self, pyramid, objectness, rpn_deltas, anchors, metas, molded=(),
                           precision: str | None = None, **overrides) -> NetworkOutputs:
        """The proposal layer and the heads again on an earlier run's feature maps.

        pyramid: P2..P5 of that run, each (B, h, w, TOP_DOWN_PYRAMID_SIZE) float32;
        objectness (B, A) its RPN foreground probabilities (``rpn_probs[..., 1]``);
        rpn_deltas (B, A, 4); anchors (A, 4); metas (B, IMAGE_META_SIZE); molded is
        passed through to the result for unmolding. ``overrides`` (``HEADS_SETTINGS``):
        RPN_NMS_THRESHOLD, POST_NMS_ROIS_INFERENCE and the detection settings.
        The backbone, FPN and RPN do not run. With the config's own settings the
        result is ``forward()``'s bit for bit; with others it is what ``forward()``
        of a model configured with them computes (``tests/test_what_if.py``).
        ``stages`` holds P2..P5, rpn_deltas, proposals, class_probs, class_deltas.
        ``precision`` resolves as ``forward()``'s would for that run's input (16 pixels
        per P2 cell).
        """
        config = self.with_overrides(HEADS_SETTINGS, **overrides)
        if int(config.POST_NMS_ROIS_INFERENCE) < 1:
            raise ValueError("POST_NMS_ROIS_INFERENCE must be at least 1.")
        start = time.perf_counter()
        pyramid = [tf.constant(p, tf.float32) for p in pyramid]
        anchors = np.asarray(anchors, np.float32)
        metas = np.asarray(metas, np.float32)
        resolved = self.resolve_precision(16 * pyramid[0].shape[1] * pyramid[0].shape[2],
                                          precision)
        steps = self.steps_in(resolved)
        stages = steps.heads(
            tf.constant(objectness, tf.float32), tf.constant(rpn_deltas, tf.float32),
            tf.constant(np.broadcast_to(anchors, (len(metas),) + anchors.shape)),
            tf.constant(metas), *pyramid,
            tf.constant(int(config.POST_NMS_ROIS_INFERENCE), tf.int32),
            tf.constant(float(config.RPN_NMS_THRESHOLD), tf.float32))
        proposal_anchors = stages.pop("proposal_anchors").numpy()
        stages.update(zip(("P2", "P3", "P4", "P5"), pyramid))
        stages["rpn_deltas"] = tf.constant(rpn_deltas, tf.float32)
        return self._detect_and_mask(config, list(molded), metas, anchors, stages,
                                     proposal_anchors, Timings(precision=resolved), start, steps)

    def _detect_and_mask(self, config, molded, metas, anchors, stages, proposal_anchors,
                         timings, started, steps) -> NetworkOutputs:
        """The detection layer and the mask head on classified RoIs (``stages``)."""
        detections_step, masks_step = steps.detections, steps.masks
        metas_t = tf.constant(metas)
        detections, detection_rois = detections_step(
            stages["proposals"], stages["class_probs"], stages["class_deltas"], metas_t,
            tf.constant(config.DETECTION_MIN_CONFIDENCE or 0.0, tf.float32),
            tf.constant(config.DETECTION_NMS_THRESHOLD, tf.float32),
            tf.constant(config.DETECTION_MAX_INSTANCES, tf.int32))
        detections, detection_rois = detections.numpy(), detection_rois.numpy()
        t2 = time.perf_counter()
        count = int((detections[:, :, 4] > 0).sum(axis=1).max())
        if count:
            masks = masks_step(
                tf.constant(detections[:, :, :4]), tf.constant(count, tf.int32), metas_t,
                tf.constant(detections[:, :count, 4].astype(np.int32)),
                *(stages[name] for name in ("P2", "P3", "P4", "P5"))).numpy()
        else:
            masks = np.zeros((len(metas), 0) + tuple(config.MASK_SHAPE), np.float32)
        timings.network = t2 - started
        timings.masks = time.perf_counter() - t2
        return NetworkOutputs(config, molded, metas, anchors, stages, detections, masks,
                              timings, proposal_anchors=proposal_anchors,
                              detection_rois=detection_rois)

    def detect(self, images, verbose=0, precision: str | None = None, **overrides):
        """Detect objects in a list of RGB images (any size).

        Returns one dict per image with ``rois`` (N, 4) int32 [y1, x1, y2, x2] in the
        image's pixels, ``class_ids`` (N,) int32, ``scores`` (N,) float32 and ``masks``
        (H, W, N) bool, ordered by score, exactly like matterport's ``detect()``.
        Keyword overrides (see ``with_overrides``) and ``precision`` apply to this call
        only; ``last_timings.precision`` says what it computed in.
        ``verbose`` is accepted for matterport compatibility and ignored.
        """
        return self._detect(images, overrides, compact=False, precision=precision)

    def detect_compact(self, images, precision: str | None = None, **overrides):
        """``detect()`` with ``masks`` as :class:`mrcnn.results.CompactMasks`, plus
        where each detection came from.

        Each mask is kept inside its box (``masks.windows`` equals ``rois``) as COCO
        RLE: the same pixels as ``detect()``'s masks (``masks.stack()`` gives them),
        in kilobytes instead of H*W bytes per object, and without building the
        full-frame stack at all. Two more keys: ``roi_indices`` (N,) int32, the RoI
        (row of the proposals) each detection refined, and ``class_probs``
        (N, NUM_CLASSES) float32, that RoI's softmax from the classifier head
        (``class_probs[i, class_ids[i]] == scores[i]``).
        """
        return self._detect(images, overrides, compact=True, precision=precision)

    def _detect(self, images, overrides, compact: bool, precision=None) -> list[dict]:
        if len(images) == 0:
            return []
        outputs = self.forward(images, precision=precision, **overrides)
        start = time.perf_counter()
        results = [self.unmold_image(outputs, i, compact) for i in range(len(outputs.molded))]
        outputs.timings.unmold = time.perf_counter() - start
        self.last_timings = outputs.timings
        return results

    @staticmethod
    def unmold_image(outputs: NetworkOutputs, i: int, compact: bool = True) -> dict:
        """Image ``i`` of a run as ``detect_compact()``'s dict (``compact``) or ``detect()``'s."""
        m = outputs.molded[i]
        if not compact:
            rois, class_ids, scores, masks = unmold_detections(
                outputs.detections[i], outputs.masks[i], m.original_shape, m.image.shape,
                m.window)
            return {"rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks}
        rows, rois, class_ids, scores = unmold_boxes(
            outputs.detections[i], m.original_shape, m.image.shape, m.window)
        roi_indices = outputs.detection_rois[i, rows]
        return {"rois": rois, "class_ids": class_ids, "scores": scores,
                "masks": compact_masks(outputs.masks[i], rows, rois, m.original_shape),
                "roi_indices": roi_indices,
                "class_probs": np.asarray(outputs.stages["class_probs"][i]).take(
                    roi_indices, axis=0).astype(np.float32)}

    def trace_count(self) -> int:
        """Graphs traced by the compiled steps so far (3 after the first ``detect()``,
        one more after the first ``heads_from_pyramid()``, for good; as many again
        for each other precision used)."""
        return sum(step.experimental_get_tracing_count()
                   for steps in list(self._compiled_in.values()) for step in steps)


def load_model(weights_path=None, config=None, exclude=(), precision=None) -> MaskRCNN:
    """Build Mask R-CNN for ``config`` (COCO by default) and load ``weights_path``.

    ``precision``: see ``MaskRCNN`` (default ``$MRCNN_PRECISION``, else "auto").

    ``weights_path`` defaults to ``mrcnn.weights.default_weights_path()``
    ($MRCNN_WEIGHTS or weights/mask_rcnn_coco.h5). The file is checked before
    anything is built, so a missing or truncated file fails fast with advice.
    """
    from mrcnn.weights.check import check_weights_file, default_weights_path
    path = weights_path or default_weights_path()
    check_weights_file(path)
    model = MaskRCNN(config or CocoConfig(), precision=precision)
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
