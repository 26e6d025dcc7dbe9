"""The anchor pyramid, in numpy, exactly as matterport builds it.

Anchors are generated in float64 pixel coordinates, then normalised with
``norm_boxes`` (divide by (h-1, w-1) after shifting y2/x2 by 1) and cast to
float32. The order is: level by level (P2..P6), then feature-map row, then
column, then ratio.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


def backbone_shapes(image_shape, strides) -> np.ndarray:
    """Feature-map (rows, cols) for each backbone stride: ceil(image / stride)."""
    return np.array([[int(math.ceil(image_shape[0] / stride)),
                      int(math.ceil(image_shape[1] / stride))]
                     for stride in strides])


def level_anchors(scale, ratios, feature_shape, feature_stride, anchor_stride) -> np.ndarray:
    """All anchors of one pyramid level, (rows*cols*len(ratios), 4) y1,x1,y2,x2 in pixels.

    ``ratios`` are width/height; every anchor of a level has area scale**2.
    """
    scales, ratios = np.meshgrid(np.array(scale), np.array(ratios))
    scales, ratios = scales.flatten(), ratios.flatten()
    heights = scales / np.sqrt(ratios)
    widths = scales * np.sqrt(ratios)
    centers_y = np.arange(0, feature_shape[0], anchor_stride) * feature_stride
    centers_x = np.arange(0, feature_shape[1], anchor_stride) * feature_stride
    centers_x, centers_y = np.meshgrid(centers_x, centers_y)
    box_widths, box_centers_x = np.meshgrid(widths, centers_x)
    box_heights, box_centers_y = np.meshgrid(heights, centers_y)
    centers = np.stack([box_centers_y, box_centers_x], axis=2).reshape([-1, 2])
    sizes = np.stack([box_heights, box_widths], axis=2).reshape([-1, 2])
    return np.concatenate([centers - 0.5 * sizes, centers + 0.5 * sizes], axis=1)


def pyramid_anchors(scales, ratios, feature_shapes, feature_strides, anchor_stride) -> np.ndarray:
    """Anchors of every level concatenated: (sum of level counts, 4) pixels, float64."""
    return np.concatenate([
        level_anchors(scales[i], ratios, feature_shapes[i], feature_strides[i], anchor_stride)
        for i in range(len(scales))], axis=0)


def norm_boxes(boxes, shape) -> np.ndarray:
    """Pixel boxes to normalised float32: (box - [0,0,1,1]) / [h-1, w-1, h-1, w-1]."""
    h, w = shape
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    shift = np.array([0, 0, 1, 1])
    return np.divide((boxes - shift), scale).astype(np.float32)


def denorm_boxes(boxes, shape) -> np.ndarray:
    """Normalised boxes to int32 pixels, rounding half to even (``np.around``)."""
    h, w = shape
    scale = np.array([h - 1, w - 1, h - 1, w - 1])
    shift = np.array([0, 0, 1, 1])
    return np.around(np.multiply(boxes, scale) + shift).astype(np.int32)


@lru_cache(maxsize=8)
def _normalized_anchors(image_shape, scales, ratios, strides, anchor_stride) -> np.ndarray:
    shapes = backbone_shapes(image_shape, strides)
    anchors = pyramid_anchors(scales, ratios, shapes, strides, anchor_stride)
    anchors = norm_boxes(anchors, image_shape[:2])
    anchors.setflags(write=False)
    return anchors


def get_anchors(config, image_shape) -> np.ndarray:
    """Normalised anchors (A, 4) float32 for a molded image shape; cached per shape."""
    return _normalized_anchors(
        tuple(int(d) for d in image_shape[:2]),
        tuple(config.RPN_ANCHOR_SCALES), tuple(config.RPN_ANCHOR_RATIOS),
        tuple(config.BACKBONE_STRIDES), int(config.RPN_ANCHOR_STRIDE))
