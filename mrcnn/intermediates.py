"""Every stage of one Mask R-CNN run on one image, as plain numpy arrays.

``compute_intermediates(model, image)`` runs the network once, through the very
computation ``model.detect()`` uses (``model.forward()``), but keeps what
``detect()`` throws away: C2..C5, P2..P6, RPN objectness and deltas, proposals
and the anchor each grew from, class probabilities and deltas, the raw
detections and the RoI each refined, the soft masks. Its final detections
therefore equal ``model.detect([image])`` bit for bit. Everything the "How it
works" page shows is derived from that one run in numpy and kept in an
:class:`Intermediates` (no TensorFlow tensors inside, so it pickles and caches),
with P2..P5 themselves, so the proposal layer and the heads can run again on
them with other settings (``mrcnn.what_if``) without the backbone.

The numpy explanations of the stages (IoU, NMS, detections at another threshold,
anchors at a point, the level formula) are in :mod:`mrcnn.explain`; the pictures
are drawn by :mod:`mrcnn.draw.figures`. TensorFlow is imported only by
``compute_intermediates``.

Coordinates: "normalised" boxes are [y1, x1, y2, x2] in the molded frame divided
by (H-1, W-1) after the (0, 0, 1, 1) shift, as the network uses them; pixel boxes
of the molded frame come from ``mrcnn.anchors.denorm_boxes``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from mrcnn.anchors import backbone_shapes, denorm_boxes, norm_boxes
from mrcnn.classes import class_name, class_names_for
from mrcnn.molding import unmold_boxes, unmold_detections
from mrcnn.pixels import to_rgb_array

__all__ = ["FEATURE_NAMES", "HEAD_MAPS", "TRAINING_POSITIVE_IOU", "Intermediates",
           "anchor_counts", "compute_intermediates"]

FEATURE_NAMES = ("C2", "C3", "C4", "C5", "P2", "P3", "P4", "P5", "P6")
HEAD_MAPS = ("P2", "P3", "P4", "P5")     # what RoI align reads; kept for reruns of the heads
CROP_COUNT = 6
TRAINING_POSITIVE_IOU = 0.5   # a training RoI is positive (foreground) when IoU >= 0.5


@dataclass
class Intermediates:
    """Everything one run of the network computed for one image, as numpy."""
    # 1. input
    image: np.ndarray               # (h, w, 3) uint8, the original
    molded_image: np.ndarray        # (H, W, 3) uint8, resized and padded (before mean subtraction)
    window: np.ndarray              # (4,) int y1, x1, y2, x2 of the image inside the molded frame
    scale: float
    resize_limits: tuple            # (IMAGE_MIN_DIM, IMAGE_MAX_DIM) the scale was chosen from
    mean_pixel: np.ndarray          # (3,) subtracted from every pixel
    # 2. backbone and FPN
    backbone: str                   # BACKBONE: "resnet50" or "resnet101"
    feature_shapes: dict            # name -> (h, w, channels)
    feature_means: dict             # name -> (h, w) float32, mean over channels
    # 3. anchors
    anchor_scales: tuple            # one per RPN level
    anchor_ratios: tuple            # width / height
    anchor_stride: int
    level_shapes: np.ndarray        # (5, 2) feature rows, cols of P2..P6
    anchors_per_level: np.ndarray   # (5,) rows * cols * len(ratios)
    anchors: np.ndarray             # (A, 4) float32 normalised, get_anchors order
    # 4. RPN
    objectness: np.ndarray          # (A,) float32 foreground probability of each anchor
    rpn_deltas: np.ndarray          # (A, 4) float32 the RPN's raw deltas of each anchor
    pre_nms_anchor_ids: np.ndarray  # (K,) anchors with the highest objectness, best first
    pre_nms_scores: np.ndarray      # (K,)
    pre_nms_deltas: np.ndarray      # (K, 4) RPN deltas times RPN_BBOX_STD_DEV
    pre_nms_boxes: np.ndarray       # (K, 4) anchors refined by the deltas, clipped to [0, 1]
    nms_kept: np.ndarray            # (P,) indices into the K boxes that NMS kept, in order
    proposals: np.ndarray           # (R, 4) the proposal layer's output, zero-padded
    proposal_anchors: np.ndarray    # (P,) int32 the anchor each real proposal grew from (the run's)
    proposal_count: int             # P: real (not padding) rows of ``proposals``
    rpn_nms_threshold: float
    proposal_slots: int             # R: POST_NMS_ROIS_INFERENCE
    # 5. RoI align
    proposal_levels: np.ndarray     # (P,) pyramid level 2..5 of each real proposal
    crop_ids: np.ndarray            # (k,) proposals whose crops are kept
    crops_classifier: np.ndarray    # (k, POOL_SIZE, POOL_SIZE, C) float32
    crops_mask: np.ndarray          # (k, MASK_POOL_SIZE, MASK_POOL_SIZE, C) float32
    pyramid: dict                   # HEAD_MAPS name -> (h, w, C) float32, the maps RoI align reads
    image_meta: np.ndarray          # (IMAGE_META_SIZE,) float32, the network's image meta
    # 6. classifier and box heads
    classifier_fc_size: int         # FPN_CLASSIF_FC_LAYERS_SIZE: width of its two FC layers
    class_probs: np.ndarray         # (R, num_classes) softmax of every RoI
    roi_class_ids: np.ndarray       # (R,) argmax class
    roi_scores: np.ndarray          # (R,) probability of that class
    roi_deltas: np.ndarray          # (R, 4) that class's deltas times BBOX_STD_DEV
    roi_refined_boxes: np.ndarray   # (R, 4) normalised, clipped to the window
    window_normalized: np.ndarray   # (4,) float32
    detection_min_confidence: float
    detection_nms_threshold: float
    detection_max_instances: int
    detections: np.ndarray          # (D, 6) normalised [y1, x1, y2, x2, class, score]
    detection_rois: np.ndarray      # (D,) int32 the RoI each detection refined (the run's)
    # 7. masks and the final result, as detect() returns it
    soft_masks: np.ndarray          # (N, mask h, w) float32 sigmoid mask of the detection's class
    rois: np.ndarray                # (N, 4) int32 original-image pixels
    class_ids: np.ndarray           # (N,) int32
    scores: np.ndarray              # (N,) float32
    masks: np.ndarray               # (h, w, N) bool
    roi_indices: np.ndarray         # (N,) int32 the RoI of each final detection
    detection_levels: np.ndarray    # (N,) pyramid level the mask head read each box from
    detection_crops_classifier: np.ndarray  # (N, POOL_SIZE, ..., C): the classifier's input
    detection_crops_mask: np.ndarray        # (N, MASK_POOL_SIZE, ..., C): the mask head's input
    class_names: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)

    @property
    def result(self) -> dict:
        """The final detections in ``model.detect()``'s format."""
        return {"rois": self.rois, "class_ids": self.class_ids, "scores": self.scores,
                "masks": self.masks}

    @property
    def molded_shape(self) -> tuple:
        return tuple(self.molded_image.shape[:2])

    @property
    def anchor_count(self) -> int:
        return int(self.anchors_per_level.sum())

    def class_name(self, class_id: int) -> str:
        return class_name(self.class_names, class_id)

    def to_pixels(self, boxes) -> np.ndarray:
        """Normalised boxes (..., 4) to int32 pixels of the molded frame."""
        return denorm_boxes(np.asarray(boxes, np.float32), self.molded_shape)

    @property
    def nbytes(self) -> int:
        """Memory its arrays hold (P2 dominates: 64 MB of the ~100 MB at 1024x1024)."""
        total = 0
        for value in vars(self).values():
            for item in (value.values() if isinstance(value, dict) else [value]):
                total += getattr(item, "nbytes", 0)
        return total


# ---------------------------------------------------------------- the run

def anchor_counts(image_shape, strides, ratios, anchor_stride=1) -> np.ndarray:
    """Anchors on each level: ceil(H/s) * ceil(W/s) / anchor_stride**2 * len(ratios)."""
    shapes = backbone_shapes(image_shape, strides)
    per_cell = len(ratios)
    return np.array([math.ceil(rows / anchor_stride) * math.ceil(cols / anchor_stride) * per_cell
                     for rows, cols in shapes], dtype=np.int64)


def _choose_crops(levels, count=CROP_COUNT) -> np.ndarray:
    """The best proposal of each pyramid level present, then the next best, up to ``count``."""
    chosen = [int(np.flatnonzero(levels == level)[0]) for level in range(2, 6)
              if (levels == level).any()]
    for i in range(len(levels)):
        if len(chosen) >= count:
            break
        if i not in chosen:
            chosen.append(i)
    return np.array(sorted(chosen[:count]), dtype=np.int64)


def compute_intermediates(model, image) -> Intermediates:
    """Run ``model`` once on ``image`` and keep every stage's result as numpy.

    The final detections (``rois``, ``class_ids``, ``scores``, ``masks``) equal
    ``model.detect([image])[0]`` for the model's config.
    """
    import tensorflow as tf

    from mrcnn.box_ops import clip_boxes, decode_boxes

    cfg = model.config
    image = to_rgb_array(image)
    started = time.perf_counter()
    outputs = model.forward([image])           # exactly what detect() computes
    (molded,) = outputs.molded
    metas, anchors, stages = outputs.metas, outputs.anchors, outputs.stages
    molded_shape = outputs.timings.input_shape
    prepared = started + outputs.timings.mold
    raw_detections = outputs.detections[0]
    detection_count = int((raw_detections[:, 4] > 0).sum())
    soft_masks = outputs.masks[0, :detection_count]
    detections = raw_detections[:detection_count]
    detection_rois = outputs.detection_rois[0, :detection_count]
    maps = {name: stages[name][0].numpy() for name in FEATURE_NAMES}
    objectness = stages["rpn_probs"][0, :, 1].numpy()
    rpn_deltas = stages["rpn_deltas"][0].numpy()
    proposals = stages["proposals"][0].numpy()
    proposal_count = int((outputs.proposal_anchors[0] >= 0).sum())
    proposal_anchors = outputs.proposal_anchors[0, :proposal_count]
    class_probs = stages["class_probs"][0].numpy()
    class_deltas = stages["class_deltas"][0].numpy()
    ran = time.perf_counter()

    # RPN: the boxes before NMS, which the run does not keep: the proposal layer's
    # top_k order (lower index first among equals) and refinement on numpy copies,
    # over all K rows as the layer does (TensorFlow's exp can differ in the last bit
    # with a row's position). Which of them NMS kept is the run's own answer.
    pre_nms_limit = min(int(cfg.PRE_NMS_LIMIT), len(anchors))
    top = np.argsort(-objectness, kind="stable")[:pre_nms_limit]
    pre_nms_scores = objectness[top]
    pre_nms_deltas = rpn_deltas[top] * np.asarray(cfg.RPN_BBOX_STD_DEV, np.float32)
    pre_nms_boxes = clip_boxes(decode_boxes(tf.constant(anchors[top]),
                                            tf.constant(pre_nms_deltas)),
                               tf.constant([0.0, 0.0, 1.0, 1.0])).numpy()
    rank = np.full(len(anchors), -1, np.int64)
    rank[top] = np.arange(len(top))
    nms_kept = rank[proposal_anchors]

    # RoI align: the level of every proposal, computed over all R rows as the classifier
    # does (TensorFlow's float32 log can differ in the last bit with the tensor's length),
    # and crops through the heads' own RoI-align layers at those levels: a few proposals
    # for section 5, and every final detection's RoI (POOL_SIZE) and box (MASK_POOL_SIZE,
    # its level over all detection slots, as the mask head computes it).
    meta = tf.constant(metas)
    roi_align_classifier, roi_align_mask = (model.heads.roi_align_classifier,
                                            model.heads.roi_align_mask)
    all_levels = roi_align_classifier.levels(tf.constant(proposals[None]), meta)
    levels = all_levels.numpy()[0, :proposal_count]
    pyramid = [tf.constant(maps[name][None]) for name in HEAD_MAPS]

    def crops(layer, boxes, box_levels):
        return layer(tf.constant(boxes[None]), meta, pyramid,
                     levels=tf.constant(box_levels[None]))[0].numpy()

    crop_ids = _choose_crops(levels)
    crops_classifier = crops(roi_align_classifier, proposals[crop_ids], levels[crop_ids])
    crops_mask = crops(roi_align_mask, proposals[crop_ids], levels[crop_ids])

    # Classifier: each RoI's best class and its refined box, as the detection layer does.
    roi_class_ids = np.argmax(class_probs, axis=1).astype(np.int32)
    rows = np.arange(len(class_probs))
    roi_scores = class_probs[rows, roi_class_ids]
    roi_deltas = class_deltas[rows, roi_class_ids] * np.asarray(cfg.BBOX_STD_DEV, np.float32)
    window_normalized = norm_boxes(np.asarray(molded.window), molded_shape)
    roi_refined = clip_boxes(decode_boxes(tf.constant(proposals), tf.constant(roi_deltas)),
                             tf.constant(window_normalized)).numpy()

    # Final detections, unmolded exactly as detect() does, and their RoI-align crops.
    rois, class_ids, scores, masks = unmold_detections(
        raw_detections, soft_masks, molded.original_shape, molded.image.shape, molded.window)
    kept = unmold_boxes(raw_detections, molded.original_shape, molded.image.shape,
                        molded.window)[0]
    roi_indices = detection_rois[kept]
    mask_levels = roi_align_mask.levels(tf.constant(raw_detections[None, :, :4]),
                                        meta).numpy()[0, kept]
    detection_crops_classifier = crops(roi_align_classifier, proposals[roi_indices],
                                       all_levels.numpy()[0, roi_indices])
    detection_crops_mask = crops(roi_align_mask, raw_detections[kept, :4], mask_levels)
    finished = time.perf_counter()

    class_names = class_names_for(cfg)
    return Intermediates(
        image=image,
        molded_image=np.rint(molded.image + np.asarray(cfg.MEAN_PIXEL)).astype(np.uint8),
        window=np.asarray(molded.window, np.int64), scale=float(molded.scale),
        resize_limits=(int(cfg.IMAGE_MIN_DIM), int(cfg.IMAGE_MAX_DIM)),
        mean_pixel=np.asarray(cfg.MEAN_PIXEL, np.float64), backbone=str(cfg.BACKBONE),
        feature_shapes={name: tuple(int(d) for d in maps[name].shape) for name in FEATURE_NAMES},
        feature_means={name: maps[name].mean(axis=2) for name in FEATURE_NAMES},
        anchor_scales=tuple(int(s) for s in cfg.RPN_ANCHOR_SCALES),
        anchor_ratios=tuple(float(r) for r in cfg.RPN_ANCHOR_RATIOS),
        anchor_stride=int(cfg.RPN_ANCHOR_STRIDE),
        level_shapes=backbone_shapes(molded_shape, cfg.BACKBONE_STRIDES),
        anchors_per_level=anchor_counts(molded_shape, cfg.BACKBONE_STRIDES,
                                        cfg.RPN_ANCHOR_RATIOS, cfg.RPN_ANCHOR_STRIDE),
        anchors=np.array(anchors),
        objectness=objectness, rpn_deltas=rpn_deltas, pre_nms_anchor_ids=top,
        pre_nms_scores=pre_nms_scores, pre_nms_deltas=pre_nms_deltas,
        pre_nms_boxes=pre_nms_boxes, nms_kept=nms_kept,
        proposals=proposals, proposal_anchors=proposal_anchors, proposal_count=proposal_count,
        rpn_nms_threshold=float(cfg.RPN_NMS_THRESHOLD),
        proposal_slots=int(cfg.POST_NMS_ROIS_INFERENCE),
        proposal_levels=levels.astype(np.int64), crop_ids=crop_ids,
        crops_classifier=crops_classifier, crops_mask=crops_mask,
        pyramid={name: maps[name] for name in HEAD_MAPS}, image_meta=metas[0],
        classifier_fc_size=int(cfg.FPN_CLASSIF_FC_LAYERS_SIZE),
        class_probs=class_probs, roi_class_ids=roi_class_ids, roi_scores=roi_scores,
        roi_deltas=roi_deltas, roi_refined_boxes=roi_refined,
        window_normalized=window_normalized,
        detection_min_confidence=float(cfg.DETECTION_MIN_CONFIDENCE or 0.0),
        detection_nms_threshold=float(cfg.DETECTION_NMS_THRESHOLD),
        detection_max_instances=int(cfg.DETECTION_MAX_INSTANCES),
        detections=detections, detection_rois=detection_rois, soft_masks=soft_masks[kept],
        rois=rois, class_ids=class_ids, scores=scores, masks=masks,
        roi_indices=roi_indices, detection_levels=mask_levels.astype(np.int64),
        detection_crops_classifier=detection_crops_classifier,
        detection_crops_mask=detection_crops_mask,
        class_names=class_names,
        seconds={"mold": prepared - started, "network": ran - prepared,
                 "derive": finished - ran, "total": finished - started})
