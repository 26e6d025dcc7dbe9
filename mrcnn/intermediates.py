"""Every stage of one Mask R-CNN run on one image, as plain numpy arrays.

``compute_intermediates(model, image)`` runs the network once, through the very
computation ``model.detect()`` uses (the engine's BatchNorm-folded network
``model.folded``, its proposal layer ``ROI``, then ``detect()``'s own compiled
detection and mask steps), but keeps what ``detect()`` throws away: C2..C5,
P2..P6, RPN objectness and deltas, proposals, class probabilities and deltas, the raw detections and the
28x28 soft masks. Its final detections therefore equal ``model.detect([image])``
bit for bit. Everything the "How it works" page shows is derived from that one
run in numpy and kept in an :class:`Inspection` (no TensorFlow tensors inside, so
it pickles and caches).

The helpers after it (IoU, NMS, detections at another threshold, anchors at a
point, the level formula) are pure numpy, so a page control that changes only a
picture never touches the network; the pictures themselves are drawn by
:mod:`mrcnn.draw.figures`. TensorFlow is imported only by ``compute_intermediates``.

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
from mrcnn.pixels import to_rgb_array
from mrcnn.molding import sk_resize, unmold_boxes, unmold_detections

FEATURE_NAMES = ("C2", "C3", "C4", "C5", "P2", "P3", "P4", "P5", "P6")
FEATURE_STRIDES = {"C2": 4, "C3": 8, "C4": 16, "C5": 32,
                   "P2": 4, "P3": 8, "P4": 16, "P5": 32, "P6": 64}
RPN_LEVELS = ("P2", "P3", "P4", "P5", "P6")
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
    pre_nms_anchor_ids: np.ndarray  # (K,) anchors with the highest objectness, best first
    pre_nms_scores: np.ndarray      # (K,)
    pre_nms_deltas: np.ndarray      # (K, 4) RPN deltas times RPN_BBOX_STD_DEV
    pre_nms_boxes: np.ndarray       # (K, 4) anchors refined by the deltas, clipped to [0, 1]
    nms_kept: np.ndarray            # (P,) indices into the K boxes that NMS kept, in order
    proposals: np.ndarray           # (R, 4) the proposal layer's output, zero-padded
    proposal_count: int             # P: non-zero rows of ``proposals``
    rpn_nms_threshold: float
    # 5. RoI align
    proposal_levels: np.ndarray     # (P,) pyramid level 2..5 of each real proposal
    crop_ids: np.ndarray            # (k,) proposals whose crops are kept
    crops_classifier: np.ndarray    # (k, 7, 7, C) float32
    crops_mask: np.ndarray          # (k, 14, 14, C) float32
    # 6. classifier and box heads
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
    # 7. masks and the final result, as detect() returns it
    soft_masks: np.ndarray          # (N, 28, 28) float32 sigmoid mask of each detection's class
    rois: np.ndarray                # (N, 4) int32 original-image pixels
    class_ids: np.ndarray           # (N,) int32
    scores: np.ndarray              # (N,) float32
    masks: np.ndarray               # (h, w, N) bool
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
    from mrcnn.box_ops import apply_box_deltas, clip_boxes

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
    maps = {name: stages[name][0].numpy() for name in FEATURE_NAMES}
    objectness = stages["rpn_probs"][0, :, 1].numpy()
    rpn_deltas = stages["rpn_deltas"][0].numpy()
    proposals = stages["proposals"][0].numpy()
    class_probs = stages["class_probs"][0].numpy()
    class_deltas = stages["class_deltas"][0].numpy()
    ran = time.perf_counter()

    # RPN: the proposal layer's steps again, on numpy copies of the same tensors.
    pre_nms_limit = min(int(cfg.PRE_NMS_LIMIT), len(anchors))
    top = np.argsort(-objectness, kind="stable")[:pre_nms_limit]   # top_k: lower index wins ties
    pre_nms_scores = objectness[top]
    pre_nms_deltas = rpn_deltas[top] * np.asarray(cfg.RPN_BBOX_STD_DEV, np.float32)
    pre_nms_anchors = anchors[top]
    pre_nms_boxes = clip_boxes(apply_box_deltas(tf.constant(pre_nms_anchors),
                                                tf.constant(pre_nms_deltas)),
                               tf.constant([0.0, 0.0, 1.0, 1.0])).numpy()
    nms_kept = tf.image.non_max_suppression(
        pre_nms_boxes, pre_nms_scores, int(cfg.POST_NMS_ROIS_INFERENCE),
        float(cfg.RPN_NMS_THRESHOLD)).numpy()
    proposal_count = int(np.any(proposals != 0, axis=1).sum())

    # RoI align: the level of every proposal, computed over all R rows as the classifier
    # does (TensorFlow's float32 log can differ in the last bit with the tensor's length),
    # and a few crops through the heads' own RoI-align layers at those levels.
    meta = tf.constant(metas)
    all_levels = model.heads.roi_align_classifier.levels(tf.constant(proposals[None]), meta)
    levels = all_levels.numpy()[0, :proposal_count]
    crop_ids = _choose_crops(levels)
    pyramid = [tf.constant(maps[name][None]) for name in ("P2", "P3", "P4", "P5")]
    crop_boxes = tf.constant(proposals[crop_ids][None])
    crop_levels = tf.constant(levels[crop_ids][None])
    crops_classifier = model.heads.roi_align_classifier(
        crop_boxes, meta, pyramid, levels=crop_levels)[0].numpy()
    crops_mask = model.heads.roi_align_mask(
        crop_boxes, meta, pyramid, levels=crop_levels)[0].numpy()

    # Classifier: each RoI's best class and its refined box, as the detection layer does.
    roi_class_ids = np.argmax(class_probs, axis=1).astype(np.int32)
    rows = np.arange(len(class_probs))
    roi_scores = class_probs[rows, roi_class_ids]
    roi_deltas = class_deltas[rows, roi_class_ids] * np.asarray(cfg.BBOX_STD_DEV, np.float32)
    window_normalized = norm_boxes(np.asarray(molded.window), molded_shape)
    roi_refined = clip_boxes(apply_box_deltas(tf.constant(proposals), tf.constant(roi_deltas)),
                             tf.constant(window_normalized)).numpy()

    # Final detections, unmolded exactly as detect() does.
    rois, class_ids, scores, masks = unmold_detections(
        raw_detections, soft_masks, molded.original_shape, molded.image.shape, molded.window)
    kept = unmold_boxes(raw_detections, molded.original_shape, molded.image.shape,
                        molded.window)[0]
    finished = time.perf_counter()

    class_names = class_names_for(cfg)
    return Intermediates(
        image=image,
        molded_image=np.rint(molded.image + np.asarray(cfg.MEAN_PIXEL)).astype(np.uint8),
        window=np.asarray(molded.window, np.int64), scale=float(molded.scale),
        resize_limits=(int(cfg.IMAGE_MIN_DIM), int(cfg.IMAGE_MAX_DIM)),
        mean_pixel=np.asarray(cfg.MEAN_PIXEL, np.float64),
        feature_shapes={name: tuple(int(d) for d in maps[name].shape) for name in FEATURE_NAMES},
        feature_means={name: maps[name].mean(axis=2) for name in FEATURE_NAMES},
        anchor_scales=tuple(int(s) for s in cfg.RPN_ANCHOR_SCALES),
        anchor_ratios=tuple(float(r) for r in cfg.RPN_ANCHOR_RATIOS),
        anchor_stride=int(cfg.RPN_ANCHOR_STRIDE),
        level_shapes=backbone_shapes(molded_shape, cfg.BACKBONE_STRIDES),
        anchors_per_level=anchor_counts(molded_shape, cfg.BACKBONE_STRIDES,
                                        cfg.RPN_ANCHOR_RATIOS, cfg.RPN_ANCHOR_STRIDE),
        anchors=np.array(anchors),
        objectness=objectness, pre_nms_anchor_ids=top, pre_nms_scores=pre_nms_scores,
        pre_nms_deltas=pre_nms_deltas, pre_nms_boxes=pre_nms_boxes, nms_kept=nms_kept,
        proposals=proposals, proposal_count=proposal_count,
        rpn_nms_threshold=float(cfg.RPN_NMS_THRESHOLD),
        proposal_levels=levels.astype(np.int64), crop_ids=crop_ids,
        crops_classifier=crops_classifier, crops_mask=crops_mask,
        class_probs=class_probs, roi_class_ids=roi_class_ids, roi_scores=roi_scores,
        roi_deltas=roi_deltas, roi_refined_boxes=roi_refined,
        window_normalized=window_normalized,
        detection_min_confidence=float(cfg.DETECTION_MIN_CONFIDENCE or 0.0),
        detection_nms_threshold=float(cfg.DETECTION_NMS_THRESHOLD),
        detection_max_instances=int(cfg.DETECTION_MAX_INSTANCES),
        detections=detections, soft_masks=soft_masks[kept],
        rois=rois, class_ids=class_ids, scores=scores, masks=masks,
        class_names=class_names,
        seconds={"mold": prepared - started, "network": ran - prepared,
                 "derive": finished - ran, "total": finished - started})


# ------------------------------------------------------- numpy explanations

def iou(box, boxes) -> np.ndarray:
    """IoU of one box with each of ``boxes`` (n, 4), as TensorFlow's NMS computes it.

    Corners may come in either order; a box of zero area has IoU 0 with everything.
    """
    box = np.asarray(box, np.float32)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    ay1, ay2 = min(box[0], box[2]), max(box[0], box[2])
    ax1, ax2 = min(box[1], box[3]), max(box[1], box[3])
    by1, by2 = np.minimum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 0], boxes[:, 2])
    bx1, bx2 = np.minimum(boxes[:, 1], boxes[:, 3]), np.maximum(boxes[:, 1], boxes[:, 3])
    area_a = (ay2 - ay1) * (ax2 - ax1)
    area_b = (by2 - by1) * (bx2 - bx1)
    inter = (np.maximum(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0)
             * np.maximum(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0))
    union = area_a + area_b - inter
    valid = (area_a > 0) & (area_b > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(valid, inter / np.where(valid, union, 1), 0.0).astype(np.float32)


def nms(boxes, scores, threshold, max_output) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, best first.

    Boxes are visited by score (lower index first among equals); a box is dropped
    when its IoU with an already kept box is strictly above ``threshold``.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float32), kind="stable")
    kept = []
    for i in order:
        if len(kept) >= max_output:
            break
        if not kept or not (iou(boxes[i], boxes[kept]) > threshold).any():
            kept.append(int(i))
    return np.array(kept, dtype=np.int64)


def detections_at(record: Intermediates, min_confidence: float,
                  nms_threshold: float | None = None) -> dict:
    """The detection layer's selection redone in numpy for another confidence cut.

    Returns ``{"candidates": RoI indices with a non-background class and score >=
    min_confidence, "kept": RoI indices that survive per-class NMS, best first, at
    most DETECTION_MAX_INSTANCES}``. At the config's own settings ``kept`` picks
    exactly the RoIs behind the engine's detections.
    """
    insp = record
    threshold = insp.detection_nms_threshold if nms_threshold is None else nms_threshold
    limit = insp.detection_max_instances
    candidate = insp.roi_class_ids > 0
    if min_confidence:
        candidate &= insp.roi_scores >= np.float32(min_confidence)
    candidates = np.flatnonzero(candidate)
    kept = []
    for class_id in np.unique(insp.roi_class_ids[candidates]):
        members = candidates[insp.roi_class_ids[candidates] == class_id]
        keep = nms(insp.roi_refined_boxes[members], insp.roi_scores[members], threshold, limit)
        kept.extend(members[keep])
    kept = np.sort(np.array(kept, dtype=np.int64))
    kept = kept[np.argsort(-insp.roi_scores[kept], kind="stable")][:limit]
    return {"candidates": candidates, "kept": kept}


def anchors_at(record: Intermediates, level: int, y: float, x: float) -> dict:
    """The anchors of pyramid level ``level`` (2..6) centred nearest to pixel (y, x).

    Returns the feature-map cell, its centre in molded pixels, the anchors' indices
    in ``inspection.anchors``, their pixel boxes (float, y1 x1 y2 x2) and objectness.
    """
    insp = record
    i = level - 2
    stride = FEATURE_STRIDES[f"P{level}"] * insp.anchor_stride
    rows, cols = (int(math.ceil(n / insp.anchor_stride)) for n in insp.level_shapes[i])
    row = int(np.clip(round(y / stride), 0, rows - 1))
    col = int(np.clip(round(x / stride), 0, cols - 1))
    per_cell = len(insp.anchor_ratios)
    first = int(insp.anchors_per_level[:i].sum()) + (row * cols + col) * per_cell
    ids = np.arange(first, first + per_cell)
    h, w = insp.molded_shape
    pixels = insp.anchors[ids].astype(np.float64) * [h - 1, w - 1, h - 1, w - 1] + [0, 0, 1, 1]
    return {"row": row, "col": col, "center": (row * stride, col * stride), "ids": ids,
            "boxes": pixels, "objectness": insp.objectness[ids], "stride": stride,
            "scale": insp.anchor_scales[i]}


def level_formula(record: Intermediates, proposal: int) -> dict:
    """The numbers in level = min(5, max(2, 4 + round(log2(sqrt(h*w) / (224 / sqrt(H*W))))))."""
    insp = record
    y1, x1, y2, x2 = insp.proposals[proposal].astype(np.float32)
    h, w = insp.molded_shape
    side = float(np.sqrt((y2 - y1) * (x2 - x1)))
    ratio = side / (224.0 / math.sqrt(h * w))
    log2 = math.log2(ratio) if ratio > 0 else float("-inf")
    return {"h": float(y2 - y1), "w": float(x2 - x1), "side": side,
            "side_px": side * math.sqrt(h * w), "ratio": ratio, "log2": log2,
            "rounded": int(np.round(log2)) if np.isfinite(log2) else None,
            "level": int(insp.proposal_levels[proposal])}


def objectness_maps(record: Intermediates) -> dict:
    """Per RPN level, the best objectness of the anchors at each cell: name -> (rows, cols)."""
    insp = record
    maps, start = {}, 0
    for name, (rows, cols), count in zip(RPN_LEVELS, insp.level_shapes, insp.anchors_per_level):
        level = insp.objectness[start:start + int(count)]
        maps[name] = level.reshape(-(-rows // insp.anchor_stride),
                                   -(-cols // insp.anchor_stride), -1).max(axis=2)
        start += int(count)
    return maps


def intersection(box_a, box_b):
    """The overlap of two pixel boxes [y1, x1, y2, x2], or None when they do not overlap."""
    y1, x1 = max(box_a[0], box_b[0]), max(box_a[1], box_b[1])
    y2, x2 = min(box_a[2], box_b[2]), min(box_a[3], box_b[3])
    return [y1, x1, y2, x2] if y2 > y1 and x2 > x1 else None


def image_patch(record: Intermediates, box_px) -> np.ndarray:
    """The molded image under a pixel box (at least 1x1)."""
    y1, x1, y2, x2 = (int(v) for v in box_px)
    y1, x1 = max(y1, 0), max(x1, 0)
    return record.molded_image[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]


def paste_soft_mask(soft_mask, box, image_shape) -> np.ndarray:
    """A 28x28 soft mask resized onto its box, inside a float32 (h, w) image of zeros.

    Thresholding it at 0.5 gives exactly ``unmold_mask``'s mask.
    """
    y1, x1, y2, x2 = (int(v) for v in box)
    full = np.zeros(tuple(image_shape[:2]), np.float32)
    if y2 > y1 and x2 > x1:
        full[y1:y2, x1:x2] = sk_resize(soft_mask, (y2 - y1, x2 - x1))
    return full
