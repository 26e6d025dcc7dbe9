"""Training targets against numpy references written here from matterport's rules.

RPN: anchors labelled at IoU 0.7 / 0.3 with every box's best anchors positive,
balanced to RPN_TRAIN_ANCHORS_PER_IMAGE; detection targets: RoIs sampled at IoU
0.5 with ROI_POSITIVE_RATIO, deltas, mini-mask crops. References (here and in
``references.py``) loop over boxes one by one in plain Python/numpy and never call
the module under test.
"""
from __future__ import annotations

import numpy as np
import pytest
import skimage.draw
from references import crop_and_resize_reference, encode_reference, iou_matrix, iou_one

from mrcnn.anchors import backbone_shapes, pyramid_anchors
from mrcnn.config import Config
from mrcnn.training.targets import (
    build_rpn_targets,
    expand_mask,
    extract_bboxes,
    minimize_mask,
)


class TargetConfig(Config):
    NAME = "targets"
    NUM_CLASSES = 4
    IMAGES_PER_GPU = 1
    IMAGE_MIN_DIM = 128
    IMAGE_MAX_DIM = 128
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    TRAIN_ROIS_PER_IMAGE = 12
    MINI_MASK_SHAPE = (56, 56)


def config(**changes):
    return type("C", (TargetConfig,), changes)()


def rpn_labels_reference(anchors, boxes):
    """1 / -1 / 0 per anchor before balancing, and each anchor's best box."""
    ious = iou_matrix(anchors, boxes)
    labels = np.zeros(len(anchors), int)
    best = ious.argmax(axis=1)
    for i in range(len(anchors)):
        top = ious[i].max()
        labels[i] = 1 if top >= 0.7 else (-1 if top < 0.3 else 0)
    for g in range(len(boxes)):                       # each box's best anchors, ties included
        labels[ious[:, g] == ious[:, g].max()] = 1
    return labels, best


def shapes_anchors(cfg):
    shape = (cfg.IMAGE_MAX_DIM, cfg.IMAGE_MAX_DIM)
    return pyramid_anchors(cfg.RPN_ANCHOR_SCALES, cfg.RPN_ANCHOR_RATIOS,
                           backbone_shapes(shape, cfg.BACKBONE_STRIDES), cfg.BACKBONE_STRIDES,
                           cfg.RPN_ANCHOR_STRIDE)


GT_BOXES = np.array([[10, 12, 42, 40], [60, 70, 100, 118], [20, 80, 35, 95]], np.int32)


def test_rpn_labels_match_the_reference_when_nothing_is_subsampled():
    cfg = config(RPN_TRAIN_ANCHORS_PER_IMAGE=100_000)
    anchors = shapes_anchors(cfg)
    match, bbox = build_rpn_targets(anchors, np.array([1, 2, 3]), GT_BOXES, cfg,
                                    np.random.default_rng(0))
    labels, best = rpn_labels_reference(anchors, GT_BOXES)
    np.testing.assert_array_equal(match, labels)
    assert (labels == 1).sum() >= len(GT_BOXES) and (labels == 0).any()
    positives = np.flatnonzero(labels == 1)
    # deltas in anchor order, / RPN_BBOX_STD_DEV
    expected = encode_reference(anchors[positives], GT_BOXES[best[positives]])
    np.testing.assert_allclose(bbox[:len(positives)], expected / cfg.RPN_BBOX_STD_DEV,
                               rtol=1e-5, atol=1e-5)
    assert not bbox[len(positives):].any()


def test_a_box_with_no_good_anchor_still_gets_its_best_one():
    cfg = config(RPN_TRAIN_ANCHORS_PER_IMAGE=100_000)
    anchors = shapes_anchors(cfg)
    thin = np.array([[50, 10, 53, 90]], np.int32)             # 3 x 80: no anchor reaches 0.3
    ious = iou_matrix(anchors, thin)[:, 0]
    assert ious.max() < 0.3
    match, _ = build_rpn_targets(anchors, np.array([1]), thin, cfg, np.random.default_rng(0))
    np.testing.assert_array_equal(np.flatnonzero(match == 1), np.flatnonzero(ious == ious.max()))


@pytest.mark.parametrize("budget", [8, 32, 64])
def test_rpn_balance_keeps_at_most_half_positives_and_fills_with_negatives(budget):
    cfg = config(RPN_TRAIN_ANCHORS_PER_IMAGE=budget)
    anchors = shapes_anchors(cfg)
    boxes = np.array([[10, 10, 74, 74], [40, 30, 120, 126]], np.int32)   # big: many positives
    labels, best = rpn_labels_reference(anchors, boxes)
    match, bbox = build_rpn_targets(anchors, np.array([1, 2]), boxes, cfg,
                                    np.random.default_rng(budget))
    positives, negatives = np.flatnonzero(match == 1), np.flatnonzero(match == -1)
    assert len(positives) == min((labels == 1).sum(), budget // 2)
    assert len(negatives) == budget - len(positives)
    assert set(positives) <= set(np.flatnonzero(labels == 1))
    assert set(negatives) <= set(np.flatnonzero(labels == -1))
    expected = encode_reference(anchors[positives], boxes[best[positives]])
    np.testing.assert_allclose(bbox[:len(positives)], expected / cfg.RPN_BBOX_STD_DEV,
                               rtol=1e-5, atol=1e-5)


def test_crowd_boxes_are_never_matched_and_their_anchors_never_negative():
    cfg = config(RPN_TRAIN_ANCHORS_PER_IMAGE=100_000)
    anchors = shapes_anchors(cfg)
    crowd = np.array([70, 10, 120, 60])
    boxes = np.array([GT_BOXES[0], crowd], np.int32)
    match, _ = build_rpn_targets(anchors, np.array([1, -2]), boxes, cfg, np.random.default_rng(0))
    labels, _ = rpn_labels_reference(anchors, boxes[:1])
    touching = iou_matrix(anchors, [crowd])[:, 0] >= 0.001
    expected = labels.copy()
    expected[(labels == -1) & touching] = 0
    np.testing.assert_array_equal(match, expected)


# --------------------------------------------------------------------------- masks
def test_extract_bboxes_are_tight_with_exclusive_ends():
    mask = np.zeros((20, 30, 3), bool)
    mask[2:5, 7:9, 0] = True
    mask[10, 29, 1] = True
    expected = [[2, 7, 5, 9], [10, 29, 11, 30], [0, 0, 0, 0]]
    np.testing.assert_array_equal(extract_bboxes(mask), expected)


def test_mini_mask_round_trip():
    shape = (128, 128)
    masks = np.zeros(shape + (3,), bool)
    masks[20:60, 30:50, 0] = True                                        # a rectangle: exact
    rows, cols = skimage.draw.disk((90, 90), 20, shape=shape)
    masks[rows, cols, 1] = True                                          # a disk
    rows, cols = skimage.draw.polygon([10, 50, 50], [100, 80, 120], shape)
    masks[rows, cols, 2] = True                                          # a triangle
    boxes = extract_bboxes(masks)
    mini = minimize_mask(boxes, masks, (56, 56))
    assert mini.shape == (56, 56, 3) and mini[:, :, 0].all()
    back = expand_mask(boxes, mini, shape)
    np.testing.assert_array_equal(back[:, :, 0], masks[:, :, 0])
    for i in (1, 2):
        inter = np.logical_and(back[:, :, i], masks[:, :, i]).sum()
        union = np.logical_or(back[:, :, i], masks[:, :, i]).sum()
        assert inter / union > 0.95
        y1, x1, y2, x2 = boxes[i]
        outside = np.ones(shape, bool)
        outside[y1:y2, x1:x2] = False
        assert not back[:, :, i][outside].any()


# --------------------------------------------------------------------------- detection targets
def norm(boxes, size=128):
    return ((np.asarray(boxes, np.float64) - [0, 0, 1, 1]) / (size - 1)).astype(np.float32)


def detection_case(seed, crowd=False):
    """Proposals around three boxes (some close, some far) plus the boxes' masks."""
    rng = np.random.default_rng(seed)
    boxes = GT_BOXES.copy()
    masks = np.zeros((128, 128, 3), bool)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        rr, cc = skimage.draw.ellipse((y1 + y2 - 1) / 2, (x1 + x2 - 1) / 2, (y2 - y1) / 2,
                                      (x2 - x1) / 2, shape=(128, 128))
        masks[rr, cc, i] = True
    boxes = extract_bboxes(masks)
    class_ids = np.array([1, 2, -3 if crowd else 3], np.int32)
    proposals = []
    for _ in range(40):
        y1, x1, y2, x2 = boxes[rng.integers(3)] + rng.normal(0, 6, 4)
        proposals.append([y1, x1, max(y2, y1 + 4), max(x2, x1 + 4)])
    for _ in range(20):
        y, x = rng.uniform(0, 110, 2)
        proposals.append([y, x, y + rng.uniform(6, 18), x + rng.uniform(6, 18)])
    proposals = norm(np.clip(proposals, 0, 127))
    return proposals, class_ids, boxes, masks


def run_detection_targets(proposals, class_ids, boxes, masks, cfg, slots=80, seed=0):
    import tensorflow as tf

    from mrcnn.training.targets import detection_targets
    tf.random.set_seed(seed)
    mini = minimize_mask(boxes, masks, cfg.MINI_MASK_SHAPE) if cfg.USE_MINI_MASK else masks
    m = cfg.MAX_GT_INSTANCES
    gt_ids = np.zeros((1, m), np.int32)
    gt_boxes = np.zeros((1, m, 4), np.float32)
    gt_masks = np.zeros((1,) + mini.shape[:2] + (m,), bool)
    gt_ids[0, :len(class_ids)] = class_ids
    gt_boxes[0, :len(class_ids)] = norm(boxes)
    gt_masks[0, :, :, :len(class_ids)] = mini
    padded = np.zeros((1, slots, 4), np.float32)
    padded[0, :len(proposals)] = proposals
    outputs = detection_targets(tf.constant(padded), tf.constant(gt_ids), tf.constant(gt_boxes),
                                tf.constant(gt_masks), cfg)
    return [o.numpy()[0] for o in outputs], mini


@pytest.mark.parametrize("use_mini_mask", [True, False])
@pytest.mark.parametrize("seed", [0, 1])
def test_detection_targets_match_the_reference(seed, use_mini_mask):
    cfg = config(USE_MINI_MASK=use_mini_mask, MAX_GT_INSTANCES=5)
    proposals, class_ids, boxes, masks = detection_case(seed)
    (rois, roi_class_ids, deltas, roi_masks), mini = run_detection_targets(
        proposals, class_ids, boxes, masks, cfg, seed=seed)
    gt = norm(boxes)
    ious = iou_matrix(proposals.astype(np.float64), gt.astype(np.float64))
    reference_positive = {tuple(p) for p, i in zip(proposals, ious) if i.max() >= 0.5}
    reference_negative = {tuple(p) for p, i in zip(proposals, ious) if i.max() < 0.5}
    max_positive = int(cfg.TRAIN_ROIS_PER_IMAGE * cfg.ROI_POSITIVE_RATIO)       # 3
    n_pos = min(len(reference_positive), max_positive)
    n_neg = min(len(reference_negative), int(n_pos / cfg.ROI_POSITIVE_RATIO + 1e-6) - n_pos)
    assert n_pos == 3 and n_neg == 6
    assert (roi_class_ids[:n_pos] > 0).all() and not roi_class_ids[n_pos:].any()
    assert {tuple(r) for r in rois[:n_pos]} <= reference_positive
    assert {tuple(r) for r in rois[n_pos:n_pos + n_neg]} <= reference_negative
    assert len({tuple(r) for r in rois[:n_pos + n_neg]}) == n_pos + n_neg
    assert not rois[n_pos + n_neg:].any() and not deltas[n_pos:].any()
    assert not roi_masks[n_pos:].any()
    for k in range(n_pos):
        roi = rois[k]
        g = int(np.argmax(iou_matrix([roi.astype(np.float64)], gt.astype(np.float64))[0]))
        assert roi_class_ids[k] == class_ids[g]
        expected = encode_reference(roi[None].astype(np.float64), gt[g][None])[0]
        np.testing.assert_allclose(deltas[k], expected / cfg.BBOX_STD_DEV, rtol=1e-4, atol=1e-4)
        if use_mini_mask:
            gy1, gx1, gy2, gx2 = gt[g]
            frame = ((roi - [gy1, gx1, gy1, gx1]) / [gy2 - gy1, gx2 - gx1, gy2 - gy1, gx2 - gx1])
            source = mini[:, :, g].astype(np.float32)
        else:
            frame, source = roi, masks[:, :, g].astype(np.float32)
        crop = crop_and_resize_reference(source[None, :, :, None], frame[None], [0],
                                         tuple(cfg.MASK_SHAPE))[0, :, :, 0]
        expected = np.round(crop)
        np.testing.assert_array_equal(roi_masks[k], expected)


def test_detection_targets_skip_crowds_and_handle_no_instance():
    cfg = config(MAX_GT_INSTANCES=5)
    proposals, class_ids, boxes, masks = detection_case(3, crowd=True)
    (rois, roi_class_ids, _, _), _ = run_detection_targets(proposals, class_ids, boxes, masks, cfg)
    crowd = norm(boxes)[2].astype(np.float64)
    chosen = rois[np.any(rois != 0, axis=1)]
    assert 3 not in roi_class_ids and (roi_class_ids[:3] > 0).all()
    negatives = chosen[3:]
    assert all(iou_one(r.astype(np.float64), crowd) < 0.001 for r in negatives)

    empty = np.zeros((128, 128, 0), bool)
    (rois, roi_class_ids, deltas, roi_masks), _ = run_detection_targets(
        proposals, np.zeros(0, np.int32), np.zeros((0, 4), np.int32), empty,
        config(MAX_GT_INSTANCES=5, USE_MINI_MASK=False))
    assert not rois.any() and not roi_class_ids.any() and not deltas.any() and not roi_masks.any()
