"""Box arithmetic in TensorFlow, in the reference's exact float32 operation order.

Boxes are (..., 4) [y1, x1, y2, x2]; deltas are (..., 4) [dy, dx, log(dh), log(dw)].
"""
from __future__ import annotations

import tensorflow as tf


def apply_box_deltas(boxes, deltas):
    """Refine boxes by deltas: centre shifted by (dy*h, dx*w), size scaled by exp."""
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    center_y = boxes[..., 0] + 0.5 * height
    center_x = boxes[..., 1] + 0.5 * width
    center_y += deltas[..., 0] * height
    center_x += deltas[..., 1] * width
    height *= tf.exp(deltas[..., 2])
    width *= tf.exp(deltas[..., 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    y2 = y1 + height
    x2 = x1 + width
    return tf.stack([y1, x1, y2, x2], axis=-1)


def clip_boxes(boxes, window):
    """Clamp each coordinate into window (..., 4) [wy1, wx1, wy2, wx2]."""
    wy1, wx1, wy2, wx2 = (window[..., i:i + 1] for i in range(4))
    y1 = tf.maximum(tf.minimum(boxes[..., 0:1], wy2), wy1)
    x1 = tf.maximum(tf.minimum(boxes[..., 1:2], wx2), wx1)
    y2 = tf.maximum(tf.minimum(boxes[..., 2:3], wy2), wy1)
    x2 = tf.maximum(tf.minimum(boxes[..., 3:4], wx2), wx1)
    return tf.concat([y1, x1, y2, x2], axis=-1)


def norm_window(window, image_shape):
    """Pixel window (B, 4) to normalised coordinates, as the reference's norm_boxes_graph."""
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
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    level = tf.math.log(tf.sqrt(h * w) / (224.0 / tf.sqrt(image_area))) / tf.math.log(2.0)
    return tf.minimum(5, tf.maximum(2, 4 + tf.cast(tf.round(level), tf.int32)))
