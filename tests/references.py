"""Numpy references the tests hold the engine to: box IoU, the box codec, clipping, NMS,
proposals, RoI levels and crops, written from matterport's stated semantics.

Plain numpy and plain loops, independent of the engine (nothing here imports
``mrcnn``). Where the reference graph works in float32 the reference does too, in the
graph's operation order; ``tf_exp`` / ``tf_log`` lend TensorFlow's own float32
transcendental functions where a test needs the last bit. Test modules import this
file as ``references`` (pytest puts ``tests/`` on the path: it has no ``__init__.py``).
"""
from __future__ import annotations

import math

import numpy as np

f32 = np.float32


def random_boxes(rng, n, low=-0.2, high=1.2, min_size=1e-3) -> np.ndarray:
    """n float32 boxes with corners in [low, high) and sides of at least ``min_size``."""
    y = np.sort(rng.uniform(low, high, (n, 2)), axis=1)
    x = np.sort(rng.uniform(low, high, (n, 2)), axis=1)
    y[:, 1] += min_size
    x[:, 1] += min_size
    return np.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], axis=1).astype(f32)


# --------------------------------------------------------------------------- #
#  IoU
# --------------------------------------------------------------------------- #
def iou_one(a, b) -> float:
    """IoU of two boxes [y1, x1, y2, x2] in Python floats; 0 when the union is empty
    (matterport's ``compute_overlaps``, one pair at a time)."""
    ih = min(a[2], b[2]) - max(a[0], b[0])
    iw = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(ih, 0) * max(iw, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def iou_matrix(boxes1, boxes2) -> np.ndarray:
    """[N, M] float64 of :func:`iou_one` over every pair."""
    return np.array([[iou_one(a, b) for b in boxes2]
                     for a in boxes1], np.float64).reshape(len(boxes1), len(boxes2))


def iou_reference(box, boxes) -> np.ndarray:
    """IoU of ``box`` with each of ``boxes`` as TensorFlow's NMS kernel computes it:
    float32, each box's corners sorted first, a box of area <= 0 overlaps nothing."""
    box = np.asarray(box, f32)
    boxes = np.asarray(boxes, f32).reshape(-1, 4)
    ay1, ay2 = min(box[0], box[2]), max(box[0], box[2])
    ax1, ax2 = min(box[1], box[3]), max(box[1], box[3])
    by1, by2 = np.minimum(boxes[:, 0], boxes[:, 2]), np.maximum(boxes[:, 0], boxes[:, 2])
    bx1, bx2 = np.minimum(boxes[:, 1], boxes[:, 3]), np.maximum(boxes[:, 1], boxes[:, 3])
    area_a = (ay2 - ay1) * (ax2 - ax1)
    area_b = (by2 - by1) * (bx2 - bx1)
    inter_h = np.maximum(np.minimum(ay2, by2) - np.maximum(ay1, by1), f32(0))
    inter_w = np.maximum(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), f32(0))
    inter = inter_h * inter_w
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area_a + area_b - inter)
    return np.where((area_a <= 0) | (area_b <= 0), f32(0), iou).astype(f32)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks of the same shape."""
    return float((a & b).sum() / (a | b).sum())


# --------------------------------------------------------------------------- #
#  The box codec, clipping, normalised windows
# --------------------------------------------------------------------------- #
def tf_exp(x) -> np.ndarray:
    """TensorFlow's float32 exp of a numpy array (numpy's may differ in the last bit,
    and TensorFlow's own with an element's position in the tensor: pass the rows the
    engine exponentiates, in its order)."""
    import tensorflow as tf
    return tf.exp(tf.constant(np.asarray(x, f32))).numpy()


def tf_log(x) -> np.ndarray:
    """TensorFlow's float32 log, the primitive the reference graph uses.

    Its result depends on where an element sits: Eigen evaluates whole SIMD packets
    with a polynomial and the leftover tail with the scalar log, which differ by an
    ulp on some inputs (log(0.70710677) is -0.3465736 in a packet, -0.34657362 in the
    tail). Arrays are padded here to a multiple of 16 so every element takes the
    packet path, as it does for the 16-box tensors in the boundary test.
    """
    import tensorflow as tf
    x = np.asarray(x, f32)
    flat = x.ravel()
    padded = np.concatenate([flat, np.ones((-len(flat)) % 16, f32)])
    return tf.math.log(tf.constant(padded)).numpy()[:len(flat)].reshape(x.shape)


def decode_reference(boxes, deltas, exp=np.exp) -> np.ndarray:
    """matterport's apply_box_deltas_graph in float32, same operation order:
    boxes (..., 4) moved by deltas (..., 4) [dy, dx, log(dh), log(dw)]."""
    boxes = np.asarray(boxes).astype(f32)
    deltas = np.asarray(deltas).astype(f32)
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    center_y = boxes[..., 0] + f32(0.5) * height
    center_x = boxes[..., 1] + f32(0.5) * width
    center_y = center_y + deltas[..., 0] * height
    center_x = center_x + deltas[..., 1] * width
    height = height * exp(deltas[..., 2])
    width = width * exp(deltas[..., 3])
    y1 = center_y - f32(0.5) * height
    x1 = center_x - f32(0.5) * width
    y2 = y1 + height
    x2 = x1 + width
    return np.stack([y1, x1, y2, x2], axis=-1).astype(f32)


def encode_reference(boxes, targets) -> np.ndarray:
    """Deltas [N, 4] that take ``boxes`` onto ``targets`` (matterport's box_refinement):
    centre offsets in units of the box, log of the size ratios; in the inputs' type."""
    boxes, targets = np.asarray(boxes), np.asarray(targets)
    h = boxes[:, 2] - boxes[:, 0]
    w = boxes[:, 3] - boxes[:, 1]
    cy = boxes[:, 0] + 0.5 * h
    cx = boxes[:, 1] + 0.5 * w
    th = targets[:, 2] - targets[:, 0]
    tw = targets[:, 3] - targets[:, 1]
    tcy = targets[:, 0] + 0.5 * th
    tcx = targets[:, 1] + 0.5 * tw
    return np.stack([(tcy - cy) / h, (tcx - cx) / w, np.log(th / h), np.log(tw / w)], axis=1)


def clip_reference(boxes, window) -> np.ndarray:
    """Each coordinate clamped into window [wy1, wx1, wy2, wx2], float32."""
    wy1, wx1, wy2, wx2 = (f32(v) for v in window)
    out = np.asarray(boxes).astype(f32).copy()
    out[..., 0] = np.maximum(np.minimum(out[..., 0], wy2), wy1)
    out[..., 1] = np.maximum(np.minimum(out[..., 1], wx2), wx1)
    out[..., 2] = np.maximum(np.minimum(out[..., 2], wy2), wy1)
    out[..., 3] = np.maximum(np.minimum(out[..., 3], wx2), wx1)
    return out


def norm_window_reference(window, image_hw) -> np.ndarray:
    """(window - [0,0,1,1]) / ([h,w,h,w] - 1) in float32, as norm_boxes_graph."""
    h, w = (f32(v) for v in image_hw)
    return ((np.asarray(window, f32) - np.array([0, 0, 1, 1], f32))
            / (np.array([h, w, h, w], f32) - f32(1))).astype(f32)


# --------------------------------------------------------------------------- #
#  NMS and proposals
# --------------------------------------------------------------------------- #
def nms_reference(boxes, scores, max_output, threshold) -> np.ndarray:
    """Greedy NMS as tf.image.non_max_suppression: stable order, suppress iff IoU > t."""
    order = np.argsort(-np.asarray(scores, f32), kind="stable")
    threshold = f32(threshold)
    keep = []
    for i in order:
        if len(keep) == max_output:
            break
        if not keep or not np.any(iou_reference(boxes[i], boxes[keep]) > threshold):
            keep.append(int(i))
    return np.array(keep, dtype=np.int64)


def proposals_reference(probs, deltas, anchors, count, threshold, pre_nms_limit, std):
    """matterport's ProposalLayer on numpy arrays: (B, A, 2), (B, A, 4), (B, A, 4)."""
    out = np.zeros((probs.shape[0], count, 4), f32)
    for b in range(probs.shape[0]):
        scores = probs[b, :, 1].astype(f32)          # foreground probability
        limit = min(pre_nms_limit, scores.shape[0])
        top = np.argsort(-scores, kind="stable")[:limit]   # top_k: lower index first on ties
        boxes = decode_reference(anchors[b, top], deltas[b, top] * np.asarray(std, f32))
        boxes = clip_reference(boxes, (0, 0, 1, 1))
        keep = nms_reference(boxes, scores[top], count, threshold)
        out[b, :len(keep)] = boxes[keep]
    return out


# --------------------------------------------------------------------------- #
#  RoI levels and crops
# --------------------------------------------------------------------------- #
def level_reference(boxes, image_area, log=np.log) -> np.ndarray:
    """min(5, max(2, 4 + round_half_even(log2(sqrt(h*w) / (224/sqrt(area)))))) in float32
    for boxes (..., 4).

    ``log`` is the float32 natural log; numpy's and TensorFlow's differ by an ulp on
    some inputs, which only matters for boxes sitting exactly on a .5 boundary.
    """
    boxes = np.asarray(boxes).astype(f32)
    h = boxes[..., 2] - boxes[..., 0]
    w = boxes[..., 3] - boxes[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = log(np.sqrt(h * w) / (f32(224.0) / np.sqrt(f32(image_area)))) / log(f32(2.0))
    rounded = np.round(raw)                      # half to even, like tf.round
    # A degenerate box gives -inf / nan; TensorFlow's int cast makes that INT_MIN -> level 2.
    level = np.where(np.isfinite(rounded), 4 + np.nan_to_num(rounded), -10 ** 9)
    return np.clip(level, 2, 5).astype(np.int32)


def crop_reference(feature_map, box, size) -> np.ndarray:
    """tf.image.crop_and_resize (bilinear, extrapolation 0) of one normalised box from an
    (h, w, c) map to (size, size, c), in float64 (compare with a tolerance)."""
    rows, cols = feature_map.shape[:2]
    y1, x1, y2, x2 = np.asarray(box).astype(np.float64)
    out = np.zeros((size, size, feature_map.shape[2]), np.float64)
    for i in range(size):
        y = y1 * (rows - 1) + i * (y2 - y1) * (rows - 1) / (size - 1)
        if not 0 <= y <= rows - 1:
            continue
        top, fy = int(math.floor(y)), y - math.floor(y)
        bottom = min(top + 1, rows - 1)
        for j in range(size):
            x = x1 * (cols - 1) + j * (x2 - x1) * (cols - 1) / (size - 1)
            if not 0 <= x <= cols - 1:
                continue
            left, fx = int(math.floor(x)), x - math.floor(x)
            right = min(left + 1, cols - 1)
            upper = feature_map[top, left] + (feature_map[top, right] - feature_map[top, left]) * fx
            lower = (feature_map[bottom, left]
                     + (feature_map[bottom, right] - feature_map[bottom, left]) * fx)
            out[i, j] = upper + (lower - upper) * fy
    return out


def crop_and_resize_reference(image, boxes, box_indices, crop_hw) -> np.ndarray:
    """tf.image.crop_and_resize in float32, its sampling and operation order,
    extrapolation value 0: image (B, H, W, C), boxes (N, 4) -> (N, crop_h, crop_w, C)."""
    _, height, width, channels = image.shape
    crop_h, crop_w = crop_hw
    out = np.zeros((len(boxes), crop_h, crop_w, channels), f32)
    for n, (box, b) in enumerate(zip(np.asarray(boxes).astype(f32), box_indices)):
        y1, x1, y2, x2 = box
        h_scale = (y2 - y1) * f32(height - 1) / f32(crop_h - 1)
        w_scale = (x2 - x1) * f32(width - 1) / f32(crop_w - 1)
        for i in range(crop_h):
            in_y = y1 * f32(height - 1) + f32(i) * h_scale
            if in_y < 0 or in_y > height - 1:
                continue
            top, bottom = int(np.floor(in_y)), int(np.ceil(in_y))
            y_lerp = in_y - f32(top)
            for j in range(crop_w):
                in_x = x1 * f32(width - 1) + f32(j) * w_scale
                if in_x < 0 or in_x > width - 1:
                    continue
                left, right = int(np.floor(in_x)), int(np.ceil(in_x))
                x_lerp = in_x - f32(left)
                tl, tr = image[b, top, left], image[b, top, right]
                bl, br = image[b, bottom, left], image[b, bottom, right]
                upper = tl + (tr - tl) * x_lerp
                lower = bl + (br - bl) * x_lerp
                out[n, i, j] = upper + (lower - upper) * y_lerp
    return out
