"""The five Mask R-CNN losses and the weight decay, as matterport defines them.

Shape shorthand: ``B`` batch, ``A`` anchors, ``R`` RoIs per image, ``C`` classes.
Each loss is a float32 scalar; a loss with nothing to average (no positive
anchor, no positive RoI) is 0, not NaN.
"""
from __future__ import annotations

import tensorflow as tf

LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
              "mrcnn_mask_loss")
_EPSILON = 1e-7   # Keras' epsilon: probabilities are clipped to [eps, 1 - eps] before log


def smooth_l1(y_true, y_pred):
    """Elementwise smooth L1: 0.5 d^2 where |d| < 1, else |d| - 0.5."""
    diff = tf.abs(y_true - y_pred)
    return tf.where(diff < 1.0, 0.5 * diff ** 2, diff - 0.5)


def _mean_or_zero(values):
    return tf.cond(tf.size(values) > 0, lambda: tf.reduce_mean(values), lambda: tf.constant(0.0))


def rpn_class_loss(rpn_match, rpn_class_logits):
    """Objectness cross-entropy over the labelled anchors.

    rpn_match: [B, A] int, 1 positive, -1 negative, 0 neutral (ignored).
    rpn_class_logits: [B, A, 2] (background, object) logits.
    """
    labelled = tf.where(rpn_match != 0)
    labels = tf.cast(tf.equal(tf.gather_nd(rpn_match, labelled), 1), tf.int32)
    logits = tf.gather_nd(rpn_class_logits, labelled)
    return _mean_or_zero(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))


def rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox):
    """Smooth L1 between the positive anchors' predicted and target deltas.

    target_bbox: [B, RPN_TRAIN_ANCHORS_PER_IMAGE, 4], image b's first
        ``count(rpn_match[b] == 1)`` rows are its positives' deltas in anchor order.
    rpn_match: [B, A] int.
    rpn_bbox: [B, A, (dy, dx, log(dh), log(dw))] predicted.
    """
    positive = tf.equal(rpn_match, 1)
    predicted = tf.boolean_mask(rpn_bbox, positive)                     # [n, 4]
    counts = tf.reduce_sum(tf.cast(positive, tf.int32), axis=1)          # [B]
    rows = tf.range(tf.shape(target_bbox)[1])[None, :] < counts[:, None]
    target = tf.boolean_mask(target_bbox, rows)                          # [n, 4]
    return _mean_or_zero(smooth_l1(target, predicted))


def mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids):
    """Classifier cross-entropy over every RoI slot, as in matterport.

    target_class_ids: [B, R] int (0 for background and padding).
    pred_class_logits: [B, R, C].
    active_class_ids: [B, C], 1 for the classes of the image's dataset. An RoI whose
        predicted class is not active in its image does not count (datasets with
        different class sets trained together).
    """
    target_class_ids = tf.cast(target_class_ids, tf.int32)
    predicted = tf.argmax(pred_class_logits, axis=2, output_type=tf.int32)
    active = tf.gather(tf.cast(active_class_ids, tf.float32), predicted, batch_dims=1)
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(target_class_ids, pred_class_logits)
    return tf.math.divide_no_nan(tf.reduce_sum(loss * active), tf.reduce_sum(active))


def _positive_rois(target_class_ids):
    """[n, 2] (flat RoI index, class id) of the positive RoIs, over [B * R]."""
    flat = tf.reshape(tf.cast(target_class_ids, tf.int32), [-1])
    index = tf.cast(tf.where(flat > 0)[:, 0], tf.int32)
    return tf.stack([index, tf.gather(flat, index)], axis=1)


def mrcnn_bbox_loss(target_bbox, target_class_ids, pred_bbox):
    """Smooth L1 of the positive RoIs' deltas for their true class.

    target_bbox: [B, R, 4]; target_class_ids: [B, R]; pred_bbox: [B, R, C, 4].
    """
    positive = _positive_rois(target_class_ids)
    target = tf.gather(tf.reshape(target_bbox, [-1, 4]), positive[:, 0])
    predicted = tf.gather_nd(tf.reshape(pred_bbox, [-1, tf.shape(pred_bbox)[2], 4]), positive)
    return _mean_or_zero(smooth_l1(target, predicted))


def mrcnn_mask_loss(target_masks, target_class_ids, pred_masks):
    """Binary cross-entropy of the positive RoIs' masks for their true class.

    target_masks: [B, R, h, w] 0/1; target_class_ids: [B, R];
    pred_masks: [B, R, h, w, C] sigmoid probabilities.
    """
    positive = _positive_rois(target_class_ids)
    shape = tf.shape(pred_masks)
    target = tf.gather(tf.reshape(target_masks, [-1, shape[2], shape[3]]), positive[:, 0])
    predicted = tf.transpose(tf.reshape(pred_masks, [-1, shape[2], shape[3], shape[4]]),
                             [0, 3, 1, 2])
    predicted = tf.clip_by_value(tf.gather_nd(predicted, positive), _EPSILON, 1.0 - _EPSILON)
    bce = -(target * tf.math.log(predicted) + (1.0 - target) * tf.math.log(1.0 - predicted))
    return _mean_or_zero(bce)


def weight_decay(variables, decay):
    """matterport's L2 term: sum over ``variables`` of decay * sum(w^2) / size(w).

    The division by the size is matterport's (each tensor weighs the same whatever
    its size); callers pass the variables to decay, never BatchNorm gamma or beta.
    """
    if not variables:
        return tf.constant(0.0)
    return tf.add_n([decay * tf.reduce_sum(tf.square(v)) / tf.cast(tf.size(v), tf.float32)
                     for v in variables])

