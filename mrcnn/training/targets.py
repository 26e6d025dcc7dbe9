"""Training targets: what the RPN and the heads are asked to predict.

Shape shorthand: ``A`` anchors, ``G`` ground-truth instances, ``R``
TRAIN_ROIS_PER_IMAGE, ``P`` POST_NMS_ROIS_TRAINING. Boxes are
``(y1, x1, y2, x2)``; pixel boxes have an exclusive ``y2, x2`` (a one-pixel
object at row 3 spans 3..4), normalised boxes follow ``mrcnn.anchors.norm_boxes``.

- RPN targets (numpy, per image, in the data pipeline): an anchor is positive at
  IoU >= 0.7 with some box, negative below 0.3, and every box's best anchors are
  positive whatever their IoU. Positives are capped at half of
  RPN_TRAIN_ANCHORS_PER_IMAGE and negatives fill the rest; the surplus turns
  neutral at random. Crowd boxes (negative class ids) are never matched and
  anchors touching them are never negative.
- Detection targets (TensorFlow, per image, inside the training step): proposals
  at IoU >= 0.5 with a box are positive, below 0.5 negative; at most
  ``R * ROI_POSITIVE_RATIO`` positives, then negatives up to the ratio, then zero
  padding. Positives come first, so the mask head only needs the first
  ``max_positive_rois(config)`` slots.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from mrcnn.box_ops import box_iou, encode_boxes
from mrcnn.molding import sk_resize


# --------------------------------------------------------------------------- #
#  numpy: boxes and masks
# --------------------------------------------------------------------------- #
def extract_bboxes(mask) -> np.ndarray:
    """Tight boxes of instance masks.

    mask: [height, width, G] bool.
    Returns [G, (y1, x1, y2, x2)] int32 pixels, y2/x2 exclusive; all zeros for an
    empty mask.
    """
    boxes = np.zeros((mask.shape[-1], 4), np.int32)
    for i in range(mask.shape[-1]):
        rows = np.flatnonzero(mask[:, :, i].any(axis=1))
        cols = np.flatnonzero(mask[:, :, i].any(axis=0))
        if rows.size:
            boxes[i] = rows[0], cols[0], rows[-1] + 1, cols[-1] + 1
    return boxes


def minimize_mask(boxes, mask, mini_shape) -> np.ndarray:
    """Crop each mask to its box and resize it: [H, W, G] -> [mini_h, mini_w, G] bool.

    Bilinear resize of the 0/1 crop, then >= 0.5 (``expand_mask`` undoes it up to
    the resampling error at the edges).
    """
    mini = np.zeros(tuple(mini_shape) + (mask.shape[-1],), bool)
    for i, (y1, x1, y2, x2) in enumerate(np.asarray(boxes)[:, :4]):
        crop = mask[y1:y2, x1:x2, i].astype(np.float32)
        if crop.size == 0:
            raise ValueError(f"Instance {i} has an empty box {[y1, x1, y2, x2]}: drop empty "
                             "masks before minimising.")
        mini[:, :, i] = sk_resize(crop, mini_shape) >= 0.5
    return mini


def expand_mask(boxes, mini_mask, image_shape) -> np.ndarray:
    """Paste mini masks back into full-size masks: [mini_h, mini_w, G] -> [H, W, G] bool."""
    mask = np.zeros(tuple(image_shape[:2]) + (mini_mask.shape[-1],), bool)
    for i, (y1, x1, y2, x2) in enumerate(np.asarray(boxes)[:, :4]):
        resized = sk_resize(mini_mask[:, :, i].astype(np.float32), (y2 - y1, x2 - x1))
        mask[y1:y2, x1:x2, i] = resized >= 0.5
    return mask


# --------------------------------------------------------------------------- #
#  numpy: RPN targets
# --------------------------------------------------------------------------- #
def build_rpn_targets(anchors, gt_class_ids, gt_boxes, config, rng=None):
    """Label anchors and compute the deltas of the positive ones.

    anchors: [A, (y1, x1, y2, x2)] pixels (``mrcnn.anchors.pyramid_anchors``).
    gt_class_ids: [G] int; negative ids mark crowd boxes.
    gt_boxes: [G, (y1, x1, y2, x2)] pixels.
    rng: ``np.random.Generator`` choosing which surplus anchors turn neutral.

    Returns:
        rpn_match: [A] int32, 1 positive, -1 negative, 0 neutral.
        rpn_bbox: [RPN_TRAIN_ANCHORS_PER_IMAGE, (dy, dx, log(dh), log(dw))] float32,
            the positives' deltas in anchor order divided by RPN_BBOX_STD_DEV,
            zero-padded.
    """
    rng = rng or np.random.default_rng()
    budget = config.RPN_TRAIN_ANCHORS_PER_IMAGE
    gt_class_ids = np.asarray(gt_class_ids)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    crowd = gt_class_ids < 0
    if crowd.any():
        no_crowd = box_iou(anchors, gt_boxes[crowd]).max(axis=1) < 0.001
        gt_boxes = gt_boxes[~crowd]
    else:
        no_crowd = np.ones(len(anchors), bool)

    rpn_match = np.zeros(len(anchors), np.int32)
    rpn_bbox = np.zeros((budget, 4), np.float32)
    if len(gt_boxes) == 0:
        rpn_match[no_crowd] = -1
        best = np.zeros(len(anchors), np.int64)
    else:
        overlaps = box_iou(anchors, gt_boxes)             # [A, G]
        best = overlaps.argmax(axis=1)
        best_iou = overlaps[np.arange(len(anchors)), best]
        rpn_match[(best_iou < 0.3) & no_crowd] = -1
        # Each box's best anchors (all of them when tied) are positive, whatever the IoU.
        rpn_match[np.nonzero(overlaps == overlaps.max(axis=0))[0]] = 1
        rpn_match[best_iou >= 0.7] = 1

    positives = np.flatnonzero(rpn_match == 1)
    surplus = len(positives) - budget // 2
    if surplus > 0:
        rpn_match[rng.choice(positives, surplus, replace=False)] = 0
    negatives = np.flatnonzero(rpn_match == -1)
    surplus = len(negatives) - (budget - np.sum(rpn_match == 1))
    if surplus > 0:
        rpn_match[rng.choice(negatives, surplus, replace=False)] = 0

    positives = np.flatnonzero(rpn_match == 1)
    if len(positives):
        deltas = encode_boxes(anchors[positives], gt_boxes[best[positives]])
        rpn_bbox[:len(positives)] = deltas / np.asarray(config.RPN_BBOX_STD_DEV)
    return rpn_match, rpn_bbox


# --------------------------------------------------------------------------- #
#  TensorFlow: detection targets
# --------------------------------------------------------------------------- #
def max_positive_rois(config) -> int:
    """Most positive RoIs one image can get: int(R * ROI_POSITIVE_RATIO)."""
    return int(config.TRAIN_ROIS_PER_IMAGE * config.ROI_POSITIVE_RATIO)


def detection_targets_graph(proposals, gt_class_ids, gt_boxes, gt_masks, config):
    """Sample RoIs of one image and their targets.

    proposals: [P, 4] normalised, zero-padded.
    gt_class_ids: [MAX_GT_INSTANCES] int32, zero-padded; negative ids are crowds.
    gt_boxes: [MAX_GT_INSTANCES, 4] normalised, zero-padded.
    gt_masks: [mask_h, mask_w, MAX_GT_INSTANCES] bool: mini masks (USE_MINI_MASK) or
        full-image masks.

    Returns, each with R rows, positives first, then negatives, then zeros:
        rois [R, 4], class_ids [R] int32, deltas [R, 4] (divided by BBOX_STD_DEV),
        masks [R, MASK_SHAPE[0], MASK_SHAPE[1]] float32 of 0/1.
    """
    count = config.TRAIN_ROIS_PER_IMAGE
    proposals = tf.boolean_mask(proposals, tf.reduce_any(proposals != 0, axis=1))
    real = tf.reduce_any(gt_boxes != 0, axis=1)
    crowd = tf.logical_and(real, gt_class_ids < 0)
    instance = tf.logical_and(real, gt_class_ids > 0)
    crowd_boxes = tf.boolean_mask(gt_boxes, crowd)
    class_ids = tf.boolean_mask(gt_class_ids, instance)
    boxes = tf.boolean_mask(gt_boxes, instance)
    masks = tf.transpose(tf.boolean_mask(tf.transpose(gt_masks, [2, 0, 1]), instance), [1, 2, 0])

    # A column of -1 keeps the reductions defined when the image has no instance.
    overlaps = tf.concat([box_iou(proposals, boxes), -tf.ones_like(proposals[:, :1])], 1)
    best_iou = tf.reduce_max(overlaps, axis=1)                            # [p]
    crowd_iou = tf.reduce_max(tf.concat(
        [box_iou(proposals, crowd_boxes), tf.zeros_like(proposals[:, :1])], 1), axis=1)
    positive = tf.random.shuffle(tf.where(best_iou >= 0.5)[:, 0])[:max_positive_rois(config)]
    positive_count = tf.shape(positive)[0]
    negative_count = tf.cast(
        (1.0 / config.ROI_POSITIVE_RATIO) * tf.cast(positive_count, tf.float32),
        tf.int32) - positive_count
    negative = tf.where(tf.logical_and(best_iou < 0.5, crowd_iou < 0.001))[:, 0]
    negative = tf.random.shuffle(negative)[:negative_count]

    positive_rois = tf.gather(proposals, positive)
    assignment = tf.argmax(tf.gather(overlaps, positive), axis=1, output_type=tf.int32)
    roi_boxes = tf.gather(boxes, assignment)
    roi_class_ids = tf.gather(class_ids, assignment)
    deltas = encode_boxes(positive_rois, roi_boxes) / tf.constant(
        np.asarray(config.BBOX_STD_DEV), tf.float32)

    crop_boxes = positive_rois
    if config.USE_MINI_MASK:
        # The RoI in the frame of its box's mini mask: (roi - box origin) / box size.
        origin = tf.concat([roi_boxes[:, :2], roi_boxes[:, :2]], axis=1)
        size = roi_boxes[:, 2:] - roi_boxes[:, :2]
        crop_boxes = (positive_rois - origin) / tf.concat([size, size], axis=1)
    roi_masks = tf.image.crop_and_resize(
        tf.cast(tf.transpose(masks, [2, 0, 1])[..., None], tf.float32), crop_boxes,
        assignment, list(config.MASK_SHAPE))
    roi_masks = tf.round(roi_masks[..., 0])

    rois = tf.concat([positive_rois, tf.gather(proposals, negative)], axis=0)
    padding = count - tf.shape(rois)[0]
    pad_rest = count - positive_count
    return (tf.pad(rois, [(0, padding), (0, 0)]),
            tf.pad(roi_class_ids, [(0, pad_rest)]),
            tf.pad(deltas, [(0, pad_rest), (0, 0)]),
            tf.pad(roi_masks, [(0, pad_rest), (0, 0), (0, 0)]))


def detection_targets(proposals, gt_class_ids, gt_boxes, gt_masks, config):
    """``detection_targets_graph`` over a batch: each input and output gains a
    leading batch axis ([B, R, 4], [B, R], [B, R, 4], [B, R, mask_h, mask_w])."""
    count = config.TRAIN_ROIS_PER_IMAGE
    mask_shape = list(config.MASK_SHAPE)
    return tf.map_fn(
        lambda args: detection_targets_graph(*args, config),
        (proposals, gt_class_ids, gt_boxes, gt_masks),
        fn_output_signature=(tf.TensorSpec([count, 4], tf.float32),
                             tf.TensorSpec([count], tf.int32),
                             tf.TensorSpec([count, 4], tf.float32),
                             tf.TensorSpec([count] + mask_shape, tf.float32)))
