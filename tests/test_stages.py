"""Stage-by-stage semantics of the inference port, each against a numpy reference.

Every reference is written from matterport's stated semantics
(/work/shared/maskrcnn/README.md), not by calling the module under test; the ones
shared with other test modules (box deltas, TensorFlow's NMS, the proposal layer, RoI
levels, crop-and-resize) are in ``references.py``, anchors and molding here. Covered:
anchors, molding, the proposal layer, RoI level assignment and crop-and-resize /
pyramid RoI-align; the box codec and IoU are in ``test_box_ops.py``; detections,
unmolding and model-level checks in ``test_stages_detection.py``.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import skimage.transform
from references import (
    crop_and_resize_reference,
    iou_reference,
    level_reference,
    proposals_reference,
    random_boxes,
    tf_log,
)

from mrcnn import CocoConfig
from mrcnn.anchors import backbone_shapes, get_anchors, level_anchors
from mrcnn.molding import mold

f32 = np.float32


# --------------------------------------------------------------------------- #
#  numpy references (float32 where the reference graph is float32)
# --------------------------------------------------------------------------- #
def anchors_reference(image_hw, scales, ratios, strides):
    """Pixel anchors (float64), level -> row -> column -> ratio, centres at k*stride."""
    levels = []
    for scale, stride in zip(scales, strides):
        rows = math.ceil(image_hw[0] / stride)
        cols = math.ceil(image_hw[1] / stride)
        level = np.empty((rows, cols, len(ratios), 4))
        for k, ratio in enumerate(ratios):
            height = scale / np.sqrt(ratio)
            width = scale * np.sqrt(ratio)
            cy = (np.arange(rows) * stride)[:, None]
            cx = (np.arange(cols) * stride)[None, :]
            level[:, :, k, 0] = cy - 0.5 * height
            level[:, :, k, 1] = cx - 0.5 * width
            level[:, :, k, 2] = cy + 0.5 * height
            level[:, :, k, 3] = cx + 0.5 * width
        levels.append(level.reshape(-1, 4))
    return np.concatenate(levels)


def normalise_reference(pixel_boxes, image_hw):
    h, w = image_hw
    return ((pixel_boxes - np.array([0, 0, 1, 1])) / np.array([h - 1, w - 1, h - 1, w - 1])
            ).astype(f32)


# --------------------------------------------------------------------------- #
#  1. Anchors
# --------------------------------------------------------------------------- #
COCO = CocoConfig()


def test_coco_anchor_count_and_per_level_counts():
    anchors = get_anchors(COCO, (1024, 1024))
    assert anchors.shape == (261_888, 4) and anchors.dtype == np.float32
    shapes = backbone_shapes((1024, 1024), COCO.BACKBONE_STRIDES)
    assert shapes.tolist() == [[256, 256], [128, 128], [64, 64], [32, 32], [16, 16]]
    counts = [len(level_anchors(s, COCO.RPN_ANCHOR_RATIOS, shape, stride, 1))
              for s, shape, stride in zip(COCO.RPN_ANCHOR_SCALES, shapes, COCO.BACKBONE_STRIDES)]
    assert counts == [196_608, 49_152, 12_288, 3_072, 768]
    assert sum(counts) == 261_888


def test_coco_anchors_equal_the_reference_everywhere():
    expected = normalise_reference(
        anchors_reference((1024, 1024), COCO.RPN_ANCHOR_SCALES, COCO.RPN_ANCHOR_RATIOS,
                          COCO.BACKBONE_STRIDES), (1024, 1024))
    np.testing.assert_array_equal(get_anchors(COCO, (1024, 1024)), expected)


def test_specific_anchors_by_hand():
    anchors = get_anchors(COCO, (1024, 1024))
    norm = np.array([1023.0, 1023.0, 1023.0, 1023.0])
    shift = np.array([0.0, 0.0, 1.0, 1.0])

    # P2 (scale 32, stride 4), cell (0, 0), ratio 0.5 (width/height): the very first anchor.
    h, w = 32 * math.sqrt(2), 32 / math.sqrt(2)           # 45.2548..., 22.6274...
    first = np.array([-h / 2, -w / 2, h / 2, w / 2])
    np.testing.assert_array_equal(anchors[0], ((first - shift) / norm).astype(f32))
    np.testing.assert_allclose(anchors[0] * 1023 + shift, [-22.627417, -11.313708, 22.627417,
                                                           11.313708], atol=2e-4)

    # P4 (scale 128, stride 16), cell (r=5, c=7), ratio 2: index after P2 and P3 anchors.
    r, c = 5, 7
    index = 196_608 + 49_152 + (r * 64 + c) * 3 + 2
    h, w = 128 / math.sqrt(2), 128 * math.sqrt(2)         # 90.5097, 181.0193
    cy, cx = 16 * r, 16 * c
    box = np.array([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    np.testing.assert_array_equal(anchors[index], ((box - shift) / norm).astype(f32))

    # The last anchor: P6 (scale 512, stride 64), cell (15, 15), ratio 2.
    h, w = 512 / math.sqrt(2), 512 * math.sqrt(2)
    box = np.array([960 - h / 2, 960 - w / 2, 960 + h / 2, 960 + w / 2])
    np.testing.assert_array_equal(anchors[-1], ((box - shift) / norm).astype(f32))

    # Order within a cell is the ratio, then the column: anchor 3 is P2 cell (0, 1) ratio 0.5.
    h, w = 32 * math.sqrt(2), 32 / math.sqrt(2)
    box = np.array([-h / 2, 4 - w / 2, h / 2, 4 + w / 2])
    np.testing.assert_array_equal(anchors[3], ((box - shift) / norm).astype(f32))
    # ... and row 1 starts after a whole row of 256 cells.
    box = np.array([4 - h / 2, -w / 2, 4 + h / 2, w / 2])
    np.testing.assert_array_equal(anchors[256 * 3], ((box - shift) / norm).astype(f32))


@pytest.mark.parametrize("image_hw, strides_shapes", [
    ((768, 1024), [(192, 256), (96, 128), (48, 64), (24, 32), (12, 16)]),
    ((500, 375), [(125, 94), (63, 47), (32, 24), (16, 12), (8, 6)]),     # mode 'none'
    ((512, 384), [(128, 96), (64, 48), (32, 24), (16, 12), (8, 6)]),     # pad64 of 500x375
])
def test_non_square_anchors_use_ceil_of_shape_over_stride(image_hw, strides_shapes):
    shapes = backbone_shapes(image_hw, COCO.BACKBONE_STRIDES)
    assert shapes.tolist() == [list(s) for s in strides_shapes]
    anchors = get_anchors(COCO, image_hw)
    assert len(anchors) == 3 * sum(h * w for h, w in strides_shapes)
    expected = normalise_reference(
        anchors_reference(image_hw, COCO.RPN_ANCHOR_SCALES, COCO.RPN_ANCHOR_RATIOS,
                          COCO.BACKBONE_STRIDES), image_hw)
    np.testing.assert_array_equal(anchors, expected)


# --------------------------------------------------------------------------- #
#  2. Molding
# --------------------------------------------------------------------------- #
def resize_reference(image, min_dim, max_dim, mode="square"):
    """matterport's resize_image for 'square', 'pad64' and 'none'."""
    h, w = image.shape[:2]
    if mode == "none":
        return image, (0, 0, h, w), 1
    scale = max(1, min_dim / min(h, w))
    if mode == "square" and round(max(h, w) * scale) > max_dim:
        scale = max_dim / max(h, w)
    resized = image
    if scale != 1:
        resized = skimage.transform.resize(
            image, (round(h * scale), round(w * scale)), order=1, mode="constant", cval=0,
            clip=True, preserve_range=True, anti_aliasing=False)
    nh, nw = resized.shape[:2]
    if mode == "square":
        out_h = out_w = max_dim
    else:
        out_h = nh if nh % 64 == 0 else nh - nh % 64 + 64
        out_w = nw if nw % 64 == 0 else nw - nw % 64 + 64
    top, left = (out_h - nh) // 2, (out_w - nw) // 2
    frame = np.zeros((out_h, out_w, image.shape[2]), dtype=resized.dtype)
    frame[top:top + nh, left:left + nw] = resized
    return frame.astype(image.dtype), (top, left, top + nh, left + nw), scale


def random_image(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# (h, w) -> scale, resized (h, w), window (y1, x1, y2, x2), worked out by hand for 800/1024.
MOLD_CASES = {
    (30, 40): (1024 / 40, (768, 1024), (128, 0, 896, 1024)),     # upscaled 25.6x
    (480, 640): (1.6, (768, 1024), (128, 0, 896, 1024)),
    (1200, 800): (1024 / 1200, (1024, 683), (0, 170, 1024, 853)),
    (2000, 300): (0.512, (1024, 154), (0, 435, 1024, 589)),      # extreme aspect
    (1024, 1024): (1, (1024, 1024), (0, 0, 1024, 1024)),          # exact: no resize
    (1001, 2048): (0.5, (500, 1024), (262, 0, 762, 1024)),        # round(500.5) == 500
    (781, 1000): (800 / 781, (800, 1024), (112, 0, 912, 1024)),   # round(1024.33) <= 1024
}


@pytest.mark.parametrize("shape", list(MOLD_CASES), ids=lambda s: f"{s[0]}x{s[1]}")
def test_molding_matches_reference(shape):
    scale, resized_hw, window = MOLD_CASES[shape]
    image = random_image(*shape, seed=sum(shape))
    molded = mold(image, COCO)

    ref_image, ref_window, ref_scale = resize_reference(image, 800, 1024)
    assert ref_scale == scale and ref_window == window          # the hand values
    assert (window[2] - window[0], window[3] - window[1]) == resized_hw
    assert molded.scale == scale
    assert tuple(int(v) for v in molded.window) == window
    assert molded.original_shape == image.shape

    # Mean subtracted in float64 (float32 image minus float64 MEAN_PIXEL), then float32.
    expected = (ref_image.astype(f32) - COCO.MEAN_PIXEL).astype(f32)
    assert molded.image.shape == (1024, 1024, 3)
    np.testing.assert_array_equal(molded.image.astype(f32), expected)

    meta = np.array([0, shape[0], shape[1], 3, 1024, 1024, 3, *window, scale] + [0] * 81,
                    dtype=np.float64)
    assert molded.meta.shape == (COCO.IMAGE_META_SIZE,) == (93,)
    np.testing.assert_array_equal(molded.meta, meta)


def test_molding_truncates_after_resize_and_pads_with_zeros():
    image = random_image(30, 40, seed=1)
    resized = skimage.transform.resize(image, (768, 1024), order=1, mode="constant",
                                       preserve_range=True, anti_aliasing=False)
    frac = resized - np.floor(resized)
    assert np.any(frac > 0.5)                  # rounding would change these pixels
    pixels = mold(image, COCO).image + COCO.MEAN_PIXEL
    pixels = np.round(pixels).astype(np.int64)   # undo the float64 subtraction exactly
    np.testing.assert_array_equal(pixels[128:896], np.floor(resized).astype(np.int64))
    assert np.all(pixels[:128] == 0) and np.all(pixels[896:] == 0)


def test_mean_subtraction_is_float64_then_float32():
    """A float32-only subtraction differs from it for many (value, channel) pairs."""
    image = np.repeat(np.arange(256, dtype=np.uint8), 4).reshape(32, 32, 1).repeat(3, axis=2)
    molded = mold(image, small_coco(IMAGE_MIN_DIM=32, IMAGE_MAX_DIM=32)).image.astype(f32)
    float64_path = (image.astype(f32) - COCO.MEAN_PIXEL).astype(f32)
    float32_path = image.astype(f32) - COCO.MEAN_PIXEL.astype(f32)
    assert np.any(float64_path != float32_path)
    np.testing.assert_array_equal(molded, float64_path)


def small_coco(**changes):
    class Changed(CocoConfig):
        pass
    for key, value in changes.items():
        setattr(Changed, key, value)
    return Changed()


@pytest.mark.parametrize("mode, shape, min_dim, molded_hw, window, scale", [
    ("pad64", (600, 800), 768, (768, 1024), (0, 0, 768, 1024), 1.28),
    ("pad64", (500, 375), 256, (512, 384), (6, 4, 506, 379), 1),
    ("none", (500, 375), 800, (500, 375), (0, 0, 500, 375), 1),
])
def test_other_resize_modes(mode, shape, min_dim, molded_hw, window, scale):
    config = small_coco(IMAGE_RESIZE_MODE=mode, IMAGE_MIN_DIM=min_dim)
    image = random_image(*shape, seed=3)
    molded = mold(image, config)
    ref_image, ref_window, ref_scale = resize_reference(image, min_dim, 1024, mode)
    assert ref_window == window and ref_scale == scale and ref_image.shape[:2] == molded_hw
    assert molded.image.shape[:2] == molded_hw
    assert tuple(int(v) for v in molded.window) == window and molded.scale == scale
    np.testing.assert_array_equal(molded.image.astype(f32),
                                  (ref_image.astype(f32) - config.MEAN_PIXEL).astype(f32))
    np.testing.assert_array_equal(molded.meta[4:12], [*molded_hw, 3, *window, scale])
    anchors = get_anchors(config, molded_hw)
    np.testing.assert_array_equal(anchors, normalise_reference(anchors_reference(
        molded_hw, config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
        config.BACKBONE_STRIDES), molded_hw))


# --------------------------------------------------------------------------- #
#  3. The normalised window (box deltas and clipping: test_box_ops.py)
# --------------------------------------------------------------------------- #
def test_norm_window_matches_norm_boxes_semantics():
    import tensorflow as tf

    from mrcnn.box_ops import norm_window

    window = np.array([[42, 0, 213, 256], [0, 170, 1024, 853]], f32)
    shapes = np.array([[256, 256], [1024, 1024]], f32)
    for win, shape in zip(window, shapes):
        port = norm_window(tf.constant(win[None]), tf.constant(shape)).numpy()[0]
        h, w = shape
        expected = (win - np.array([0, 0, 1, 1], f32)) / np.array([h - 1, w - 1, h - 1, w - 1], f32)
        np.testing.assert_array_equal(port, expected.astype(f32))


# --------------------------------------------------------------------------- #
#  4. NMS and the proposal layer
# --------------------------------------------------------------------------- #
def run_proposal_layer(probs, deltas, anchors, count, threshold, pre_nms_limit,
                       std=(0.1, 0.1, 0.2, 0.2)):
    import tensorflow as tf

    from mrcnn.layers import ProposalLayer
    layer = ProposalLayer(proposal_count=count, nms_threshold=threshold,
                          pre_nms_limit=pre_nms_limit, rpn_bbox_std_dev=np.array(std))
    out = layer(tf.constant(probs, tf.float32), tf.constant(deltas, tf.float32),
                tf.constant(anchors, tf.float32))
    return np.asarray(out)


def probs_from_scores(scores):
    scores = np.asarray(scores, f32)
    return np.stack([f32(1) - scores, scores], axis=-1)[None]


def column(i, width=1 / 8):
    """x-range of the i-th disjoint column of boxes (dyadic, so decoding is exact)."""
    return i * 2 * width, i * 2 * width + width


def crafted(boxes_and_scores, count, threshold, pre_nms_limit=100):
    boxes = np.array([b for b, _ in boxes_and_scores], f32)
    scores = [s for _, s in boxes_and_scores]
    probs = probs_from_scores(scores)
    deltas = np.zeros((1, len(boxes), 4), f32)
    port = run_proposal_layer(probs, deltas, boxes[None], count, threshold, pre_nms_limit)
    ref = proposals_reference(probs, deltas, boxes[None], count, threshold, pre_nms_limit,
                              (0.1, 0.1, 0.2, 0.2))
    np.testing.assert_array_equal(port, ref)
    return port[0], boxes


def test_nms_keeps_a_pair_whose_iou_is_exactly_the_threshold():
    # IoU 0.4375/0.625 == 0.7 exactly (dyadic areas, contained box): not suppressed.
    x1, x2 = column(0)
    a, b = [0, x1, 0.625, x2], [0, x1, 0.4375, x2]
    # 0.4384765625/0.625 = 0.7015625 > 0.7: suppressed.
    x3, x4 = column(1)
    c, d = [0, x3, 0.625, x4], [0, x3, 0.4375 + 1 / 1024, x4]
    # Threshold 0.5 and IoU exactly 0.5.
    x5, x6 = column(2)
    e, f = [0.5, x5, 1.0, x6], [0.5, x5, 0.75, x6]
    assert iou_reference(np.array(a, f32), np.array(b, f32))[0] == f32(0.7)
    assert iou_reference(np.array(c, f32), np.array(d, f32))[0] > f32(0.7)
    out, boxes = crafted([(a, 0.9), (b, 0.8), (c, 0.7), (d, 0.6), (e, 0.5), (f, 0.4)],
                         count=8, threshold=0.7)
    np.testing.assert_array_equal(out[:5], boxes[[0, 1, 2, 4, 5]])
    assert np.all(out[5:] == 0)
    out, boxes = crafted([(e, 0.5), (f, 0.4)], count=3, threshold=0.5)
    np.testing.assert_array_equal(out[:2], boxes)      # IoU == 0.5 is kept at 0.5 ...
    out, _ = crafted([(e, 0.5), (f, 0.4)], count=3, threshold=0.4999)
    np.testing.assert_array_equal(out[1], 0)            # ... and suppressed just below


def test_nms_processes_equal_scores_lower_index_first():
    u = 1 / 32
    x_box = [0, 0 * u, 0.25, 8 * u]         # IoU(X, Y) = IoU(Y, Z) = 0.6, IoU(X, Z) = 1/3
    y_box = [0, 2 * u, 0.25, 10 * u]
    z_box = [0, 4 * u, 0.25, 12 * u]
    out, boxes = crafted([(x_box, 0.6), (y_box, 0.6), (z_box, 0.6)], count=4, threshold=0.5)
    np.testing.assert_array_equal(out[:2], boxes[[0, 2]])     # X first: keeps X and Z
    assert np.all(out[2:] == 0)
    out, boxes = crafted([(y_box, 0.6), (x_box, 0.6), (z_box, 0.6)], count=4, threshold=0.5)
    np.testing.assert_array_equal(out[0], boxes[0])           # Y first: Y suppresses both
    assert np.all(out[1:] == 0)
    # Identical boxes with identical scores: the lower index survives.
    same = [0.5, 0.5, 0.75, 0.75]
    out, boxes = crafted([(z_box, 0.1), (same, 0.3), (same, 0.3)], count=3, threshold=0.7)
    np.testing.assert_array_equal(out[:2], boxes[[1, 0]])


def test_nms_gives_zero_area_boxes_iou_zero():
    x1, x2 = column(0)
    flat = [0.5, x1, 0.5, x2]                   # zero height
    big = [0.25, x1, 0.75, x2]
    above = [-0.5, 0.25, -0.25, 0.5]            # clipped to [0, 0.25, 0, 0.5]: zero height
    out, boxes = crafted([(big, 0.9), (flat, 0.8), (flat, 0.7), (above, 0.6), (above, 0.5)],
                         count=6, threshold=0.7)
    np.testing.assert_array_equal(out[:3], boxes[:3])
    np.testing.assert_array_equal(out[3:5], [[0, 0.25, 0, 0.5]] * 2)
    np.testing.assert_array_equal(out[5], 0)


def test_pre_nms_limit_takes_lower_indices_among_ties_and_pads():
    scores = [0.1, 0.5, 0.5, 0.9, 0.5, 0.2, 0.5, 0.5, 0.3, 0.5]
    boxes = [[0, i / 16, 1 / 32, i / 16 + 1 / 32] for i in range(10)]
    out, arr = crafted(list(zip(boxes, scores)), count=6, threshold=0.7, pre_nms_limit=4)
    np.testing.assert_array_equal(out[:4], arr[[3, 1, 2, 4]])
    assert np.all(out[4:] == 0)


def test_proposal_layer_matches_reference_on_random_inputs():
    config = small_coco()
    anchors = np.asarray(get_anchors(config, (128, 128)))          # 4092 anchors
    rng = np.random.default_rng(4)
    batch = 2
    logits = rng.standard_normal((batch, len(anchors), 2)).astype(f32) * 2
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    probs = probs.astype(f32)
    # Many repeated scores: quantised foreground probability, both columns consistent.
    fg = (np.round(probs[..., 1] * 64) / 64).astype(f32)
    probs = np.stack([f32(1) - fg, fg], axis=-1)
    deltas = (rng.standard_normal((batch, len(anchors), 4)) * 1.5).astype(f32)
    all_anchors = np.broadcast_to(anchors, (batch,) + anchors.shape)

    port = run_proposal_layer(probs, deltas, all_anchors, 300, 0.7, 1000)
    ref = proposals_reference(probs, deltas, all_anchors, 300, 0.7, 1000,
                              config.RPN_BBOX_STD_DEV)
    assert port.shape == (batch, 300, 4)
    assert np.all(np.any(ref != 0, axis=2))             # 300 real proposals per image
    np.testing.assert_allclose(port, ref, rtol=0, atol=1e-6)
    # The foreground column is the score: using the background column changes the result.
    swapped = proposals_reference(probs[..., ::-1], deltas, all_anchors, 300, 0.7, 1000,
                                  config.RPN_BBOX_STD_DEV)
    assert not np.allclose(swapped, port)

    # Fewer survivors than proposal_count: zero padding at the end.
    port = run_proposal_layer(probs[:, :40], deltas[:, :40], all_anchors[:, :40], 60, 0.7, 1000)
    ref = proposals_reference(probs[:, :40], deltas[:, :40], all_anchors[:, :40], 60, 0.7, 1000,
                              config.RPN_BBOX_STD_DEV)
    np.testing.assert_allclose(port, ref, rtol=0, atol=1e-6)
    assert np.all(port[:, -20:] == 0)


# --------------------------------------------------------------------------- #
#  5. RoI level assignment
# --------------------------------------------------------------------------- #
def side_at_raw_level(raw_target, image_area, log):
    """A square side s whose float32 raw level log2(s / (224/sqrt(area))) is exactly target."""
    base = f32(224.0) / np.sqrt(f32(image_area))
    start = f32(base * 2.0 ** raw_target)
    sides = [start]
    for _ in range(64):
        sides = [np.nextafter(sides[0], f32(0))] + sides + [np.nextafter(sides[-1], f32(1))]
    sides = np.array(sides, f32)
    raw = log(np.sqrt(sides * sides) / base) / log(f32(2.0))
    exact = sides[raw == f32(raw_target)]
    assert len(exact), f"no float32 side gives a raw level of exactly {raw_target}"
    return exact[0]


def port_levels(boxes, image_area):
    import tensorflow as tf

    from mrcnn.box_ops import roi_pyramid_level
    return roi_pyramid_level(tf.constant(boxes, tf.float32),
                             tf.constant(image_area, tf.float32)).numpy()


def test_roi_level_exactly_at_half_boundaries_rounds_half_to_even():
    area = 1024 * 1024
    # raw -1.5 -> round -2 -> level 2 (floor(x + .5) would give 3);
    # raw -0.5 and +0.5 -> round 0 -> level 4 (half away from zero would give 3 and 5).
    expected = {-1.5: 2, -0.5: 4, 0.5: 4, 1.5: 5}
    sides = [side_at_raw_level(raw, area, tf_log) for raw in expected]
    squares = [[0, 0, s, s] for s in sides]
    tall = [[0, 0, 2 * s, s / 2] for s in sides]           # same float32 h*w as s*s
    others = [[0, 0, 224 / 1024, 224 / 1024]] + [[0.1, 0.1, 0.1 + v, 0.2 + v]
                                                  for v in (0.01, 0.05, 0.1, 0.3, 0.6, 0.8, 0.9)]
    boxes = np.array(squares + tall + others, f32)          # 16 boxes: whole SIMD packets
    ref = level_reference(boxes, area, tf_log)
    assert ref[:8].tolist() == list(expected.values()) * 2
    assert ref[8] == 4                                     # 224x224 px in 1024x1024: P4
    np.testing.assert_array_equal(port_levels(boxes, area), ref)


@pytest.mark.parametrize("area", [1024 * 1024, 256 * 256, 768 * 1024])
def test_roi_level_matches_reference_on_random_boxes(area):
    rng = np.random.default_rng(5)
    sizes = np.exp(rng.uniform(np.log(1e-3), np.log(1.5), (3000, 2))).astype(f32)
    y1 = rng.uniform(-0.2, 1, 3000).astype(f32)
    x1 = rng.uniform(-0.2, 1, 3000).astype(f32)
    boxes = np.stack([y1, x1, y1 + sizes[:, 0], x1 + sizes[:, 1]], axis=1).astype(f32)
    boxes = np.concatenate([boxes, np.zeros((3, 4), f32)])      # padding rows -> level 2
    ref = level_reference(boxes, area)
    np.testing.assert_array_equal(port_levels(boxes, area), ref)
    assert set(ref.tolist()) == {2, 3, 4, 5} and ref[-1] == 2


# --------------------------------------------------------------------------- #
#  6. Crop-and-resize and PyramidROIAlign
# --------------------------------------------------------------------------- #
MAP_SHAPES = [(20, 18), (11, 12), (7, 6), (11, 9)]     # P2..P5 (small, unrelated sizes)


def y1_whose_last_row_falls_outside(height, crop, low, high, seed=0):
    """A float32 y1 for which box [y1, ., 1.0, .] has its last sample row past H-1."""
    for y1 in np.random.default_rng(seed).uniform(low, high, 100_000).astype(f32):
        h_scale = (f32(1.0) - y1) * f32(height - 1) / f32(crop - 1)
        if y1 * f32(height - 1) + f32(crop - 1) * h_scale > height - 1:
            return y1
    raise AssertionError("no y1 found")


def pyramid_case(seed, crop):
    rng = np.random.default_rng(seed)
    maps = [rng.standard_normal((2, h, w, 3)).astype(f32) for h, w in MAP_SHAPES]
    boxes = []
    for b in range(2):
        for level in (2, 3, 4, 5, 2, 3, 4, 5):
            side = 224 / 1024 * 2.0 ** (level - 4) * rng.uniform(0.8, 1.2, 2)
            y1, x1 = rng.uniform(-0.05, 1.02 - side)
            boxes.append((b, [y1, x1, y1 + side[0], x1 + side[1]]))
        # Touching y2 = 1.0 (a P5 box), with its last sample row just outside the map.
        y1 = y1_whose_last_row_falls_outside(MAP_SHAPES[3][0], crop, 0.05, 0.45, seed=b)
        boxes.append((b, [y1, 0.3, 1.0, 0.8]))
        boxes.append((b, [0, 0, 0, 0]))                         # a padding row
    per_image = [[box for bb, box in boxes if bb == b] for b in range(2)]
    order = [rng.permutation(len(per_image[0])) for _ in range(2)]
    boxes = np.array([[per_image[b][i] for i in order[b]] for b in range(2)], f32)
    return maps, boxes


@pytest.mark.parametrize("crop", [7, 14])
def test_pyramid_roi_align_matches_reference(crop):
    import tensorflow as tf

    from mrcnn.layers import PyramidROIAlign

    maps, boxes = pyramid_case(6, crop)
    meta = np.zeros((2, 12 + 4), f32)
    meta[:, 4:7] = [1024, 1024, 3]
    out = PyramidROIAlign((crop, crop))(tf.constant(boxes), tf.constant(meta),
                                        [tf.constant(m) for m in maps])
    out = np.asarray(out)
    assert out.shape == (2, boxes.shape[1], crop, crop, 3)

    levels = level_reference(boxes, 1024 * 1024)
    assert set(levels.ravel().tolist()) == {2, 3, 4, 5}
    for b in range(2):
        for n in range(boxes.shape[1]):
            feature = maps[levels[b, n] - 2]
            expected = crop_and_resize_reference(feature, boxes[b, n][None], [b], (crop, crop))
            np.testing.assert_array_equal(out[b, n], expected[0], err_msg=f"image {b} box {n}")

    # The boxes touching y2 = 1.0: last sample row outside the map -> zeros, as TF does.
    touching = np.argwhere(boxes[:, :, 2] == 1.0)
    assert len(touching) == 2
    for b, n in touching:
        assert levels[b, n] == 5
        assert np.all(out[b, n, -1] == 0) and np.all(out[b, n, -2] != 0)
        tf_own = tf.image.crop_and_resize(maps[3], boxes[b, n][None], [int(b)], (crop, crop))
        np.testing.assert_array_equal(out[b, n], tf_own.numpy()[0])


def test_crop_and_resize_reference_agrees_with_tensorflow():
    """Guards the reference itself: it is TF's sampling, extrapolation included."""
    import tensorflow as tf
    rng = np.random.default_rng(7)
    image = rng.standard_normal((2, 13, 17, 2)).astype(f32)
    boxes = random_boxes(rng, 60, -0.1, 1.1)
    boxes[::5, 2] = 1.0
    indices = rng.integers(0, 2, 60).astype(np.int32)
    expected = tf.image.crop_and_resize(image, boxes, indices, (7, 7)).numpy()
    np.testing.assert_array_equal(crop_and_resize_reference(image, boxes, indices, (7, 7)),
                                  expected)
