"""Box arithmetic, in the reference's exact float32 operation order: the box codec
(:func:`encode_boxes` / :func:`decode_boxes`), IoU (:func:`box_iou`), clipping, the
normalised window and the RoI pyramid level.

Boxes are (..., 4) [y1, x1, y2, x2]; deltas are (..., 4) [dy, dx, log(dh), log(dw)],
in units of the reference box (heights and widths are y2 - y1 and x2 - x1, no +1).
The callers scale deltas by the config's std-devs themselves (the targets divide by
``RPN_BBOX_STD_DEV`` / ``BBOX_STD_DEV``, the proposal and detection layers multiply).

The codec and IoU take TensorFlow tensors (eager or inside a graph) or numpy arrays:
one formula, run by TensorFlow when any argument is a tensor (float32, the ops exactly
as matterport's graph functions) and by numpy otherwise, in the arrays' common float
type (at least float32; integer boxes give float64). The numpy path gives the
TensorFlow path's bits for float32 arithmetic; ``exp`` and ``log`` may differ from
TensorFlow's in the last bit. TensorFlow is imported only when a tensor comes in or a
TensorFlow-only function runs, so numpy callers (``mrcnn.explain``) stay free of it.
"""
from __future__ import annotations

import sys

import numpy as np


# --------------------------------------------------------------------------- #
#  One formula, two array libraries
# --------------------------------------------------------------------------- #
def _numpy_divide_no_nan(x, y):
    """x / y, and 0 where y == 0 (``tf.math.divide_no_nan``)."""
    x, y = np.broadcast_arrays(x, y)
    return np.divide(x, y, out=np.zeros_like(x), where=y != 0)


class _Ops:
    """The few array functions the formulas need, from numpy or from TensorFlow."""

    def __init__(self, maximum, minimum, exp, log, stack, divide_no_nan):
        self.maximum, self.minimum, self.exp, self.log = maximum, minimum, exp, log
        self.stack, self.divide_no_nan = stack, divide_no_nan


_NUMPY = _Ops(np.maximum, np.minimum, np.exp, np.log, np.stack, _numpy_divide_no_nan)


def _backend(*arrays):
    """(ops, arrays): TensorFlow's ops and tensors when any argument is a tensor, else
    numpy's ops and the arrays in their common float type (at least float32)."""
    tf = sys.modules.get("tensorflow")      # no tensor can exist before TensorFlow is loaded
    if tf is not None and any(tf.is_tensor(a) for a in arrays):
        ops = _Ops(tf.maximum, tf.minimum, tf.exp, tf.math.log, tf.stack,
                   tf.math.divide_no_nan)
        return ops, [tf.convert_to_tensor(a, dtype_hint=tf.float32) for a in arrays]
    arrays = [np.asarray(a) for a in arrays]
    dtype = np.result_type(*arrays, np.float32)
    return _NUMPY, [a.astype(dtype, copy=False) for a in arrays]


# --------------------------------------------------------------------------- #
#  The box codec
# --------------------------------------------------------------------------- #
def encode_boxes(boxes, gt_boxes):
    """Deltas (..., 4) [dy, dx, log(dh), log(dw)] that move ``boxes`` onto ``gt_boxes``.

    dy = (gt centre y - centre y) / h, dh = log(gt h / h), and likewise in x
    (matterport's ``box_refinement`` / ``box_refinement_graph``).
    """
    ops, (boxes, gt_boxes) = _backend(boxes, gt_boxes)
    h, w = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
    gh, gw = gt_boxes[..., 2] - gt_boxes[..., 0], gt_boxes[..., 3] - gt_boxes[..., 1]
    dy = (gt_boxes[..., 0] + 0.5 * gh - boxes[..., 0] - 0.5 * h) / h
    dx = (gt_boxes[..., 1] + 0.5 * gw - boxes[..., 1] - 0.5 * w) / w
    return ops.stack([dy, dx, ops.log(gh / h), ops.log(gw / w)], axis=-1)


def decode_boxes(boxes, deltas):
    """Refine boxes by deltas: centre shifted by (dy*h, dx*w), size scaled by exp
    (matterport's ``apply_box_deltas_graph``); the inverse of :func:`encode_boxes`."""
    ops, (boxes, deltas) = _backend(boxes, deltas)
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    center_y = boxes[..., 0] + 0.5 * height
    center_x = boxes[..., 1] + 0.5 * width
    center_y = center_y + deltas[..., 0] * height
    center_x = center_x + deltas[..., 1] * width
    height = height * ops.exp(deltas[..., 2])
    width = width * ops.exp(deltas[..., 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    y2 = y1 + height
    x2 = x1 + width
    return ops.stack([y1, x1, y2, x2], axis=-1)


# --------------------------------------------------------------------------- #
#  IoU
# --------------------------------------------------------------------------- #
def box_iou(boxes1, boxes2, either_order: bool = False):
    """IoU of every pair: boxes1 [N, 4], boxes2 [M, 4] -> [N, M].

    intersection / (area1 + area2 - intersection), 0 where that union is 0 (so a box
    of zero area overlaps nothing); matterport's ``overlaps_graph`` and
    ``compute_overlaps``. ``either_order``: corners may come in either order (each box's
    y and x pairs are sorted first), as in TensorFlow's NMS kernel.
    """
    ops, (boxes1, boxes2) = _backend(boxes1, boxes2)
    if either_order:
        boxes1, boxes2 = (ops.stack([ops.minimum(b[..., 0], b[..., 2]),
                                     ops.minimum(b[..., 1], b[..., 3]),
                                     ops.maximum(b[..., 0], b[..., 2]),
                                     ops.maximum(b[..., 1], b[..., 3])], axis=-1)
                          for b in (boxes1, boxes2))
    b1 = boxes1[:, None, :]
    b2 = boxes2[None, :, :]
    height = ops.maximum(
        ops.minimum(b1[..., 2], b2[..., 2]) - ops.maximum(b1[..., 0], b2[..., 0]), 0.0)
    width = ops.maximum(
        ops.minimum(b1[..., 3], b2[..., 3]) - ops.maximum(b1[..., 1], b2[..., 1]), 0.0)
    intersection = height * width
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    return ops.divide_no_nan(intersection, area1 + area2 - intersection)


# --------------------------------------------------------------------------- #
#  TensorFlow only
# --------------------------------------------------------------------------- #
def clip_boxes(boxes, window):
    """Clamp each coordinate into window (..., 4) [wy1, wx1, wy2, wx2]."""
    import tensorflow as tf

    wy1, wx1, wy2, wx2 = (window[..., i:i + 1] for i in range(4))
    y1 = tf.maximum(tf.minimum(boxes[..., 0:1], wy2), wy1)
    x1 = tf.maximum(tf.minimum(boxes[..., 1:2], wx2), wx1)
    y2 = tf.maximum(tf.minimum(boxes[..., 2:3], wy2), wy1)
    x2 = tf.maximum(tf.minimum(boxes[..., 3:4], wx2), wx1)
    return tf.concat([y1, x1, y2, x2], axis=-1)


def norm_window(window, image_shape):
    """Pixel window (B, 4) to normalised coordinates, as the reference's norm_boxes_graph."""
    import tensorflow as tf

    shape = tf.cast(image_shape, tf.float32)
    h, w = shape[..., 0:1], shape[..., 1:2]
    scale = tf.concat([h, w, h, w], axis=-1) - tf.constant(1.0)
    shift = tf.constant([0.0, 0.0, 1.0, 1.0])
    return tf.divide(window - shift, scale)


def roi_pyramid_level(boxes, image_area):
    """FPN level (2..5) for each normalised box (..., 4) of an image of ``image_area`` px.

    level = min(5, max(2, 4 + round(log2(sqrt(h*w) / (224 / sqrt(area)))))),
    float32 with round-half-to-even; a 224x224 box in pixels maps to P4.
    """
    import tensorflow as tf

    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    level = tf.math.log(tf.sqrt(h * w) / (224.0 / tf.sqrt(image_area))) / tf.math.log(2.0)
    return tf.minimum(5, tf.maximum(2, 4 + tf.cast(tf.round(level), tf.int32)))
