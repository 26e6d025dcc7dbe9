"""Following one detection through the network (``mrcnn.follow``), checked link by link
against numpy recomputations from the reference's stated semantics."""
from __future__ import annotations

import math

import numpy as np
import pytest
from references import crop_reference, level_reference

from mrcnn.follow import anchor_level, follow_detection, match_selection, suppressed_in_favour
from mrcnn.intermediates import compute_intermediates

f32 = np.float32


@pytest.fixture(scope="module")
def record(small_model, photos):
    return compute_intermediates(small_model, photos["astronaut"])


def test_each_detections_trail_links_anchor_proposal_roi_and_box(record, small_model):
    insp = record
    std = f32(small_model.config.RPN_BBOX_STD_DEV)
    assert len(insp.class_ids) > 0
    for i in range(len(insp.class_ids)):
        trail = follow_detection(insp, i)
        # The anchor, refined by its own RPN deltas (the proposal layer's pre-NMS box),
        # is the proposal; the proposal refined by the class deltas is the detection.
        assert insp.pre_nms_anchor_ids[trail.pre_nms_rank] == trail.anchor
        np.testing.assert_array_equal(insp.pre_nms_boxes[trail.pre_nms_rank], trail.proposal)
        np.testing.assert_array_equal(trail.rpn_deltas, insp.rpn_deltas[trail.anchor] * std)
        row = int(np.flatnonzero(insp.detection_rois == trail.roi)[0])
        np.testing.assert_array_equal(trail.box, insp.detections[row, :4])
        assert trail.class_probs.argmax() == insp.class_ids[i]
        assert trail.class_probs[insp.class_ids[i]] == insp.scores[i]
        np.testing.assert_array_equal(trail.soft_mask, insp.soft_masks[i])
        # The anchor's own level and shape: its size is the level's anchor scale.
        h, w = (insp.to_pixels(trail.anchor_box)[2:] - insp.to_pixels(trail.anchor_box)[:2])
        assert math.sqrt(h * w) == pytest.approx(trail.anchor_scale, rel=0.05)
        assert w / h == pytest.approx(trail.anchor_ratio, rel=0.1)
        assert trail.roi_level == level_reference(trail.proposal, math.prod(insp.molded_shape))


def test_anchor_levels_follow_the_per_level_counts(record):
    counts = np.cumsum(record.anchors_per_level)
    assert anchor_level(record, 0) == 2
    assert anchor_level(record, int(counts[0]) - 1) == 2
    assert anchor_level(record, int(counts[0])) == 3
    assert anchor_level(record, int(counts[-1]) - 1) == 6


def test_crops_are_the_heads_inputs(record):
    insp = record
    trail = follow_detection(insp, 0)
    level_map = insp.pyramid[f"P{trail.roi_level}"]
    scale = 1e-3 * np.abs(level_map).max()
    np.testing.assert_allclose(trail.crop_classifier, crop_reference(level_map, trail.proposal, 7),
                               atol=scale)
    mask_map = insp.pyramid[f"P{trail.mask_level}"]
    assert trail.mask_level == level_reference(trail.box, math.prod(insp.molded_shape))
    np.testing.assert_allclose(trail.crop_mask, crop_reference(mask_map, trail.box, 14),
                               atol=1e-3 * np.abs(mask_map).max())


def test_boxes_removed_in_its_favour_are_exactly_the_lower_overlapping_ones(record):
    insp = record
    threshold = insp.detection_nms_threshold
    total = 0
    for roi in insp.detection_rois:
        removed, overlaps = suppressed_in_favour(insp, int(roi))
        cls, score = insp.roi_class_ids[roi], insp.roi_scores[roi]
        expected = []
        for other in range(len(insp.roi_scores)):
            later = (insp.roi_scores[other] < score
                     or (insp.roi_scores[other] == score and other > roi))
            if (other != roi and insp.roi_class_ids[other] == cls and later
                    and insp.roi_scores[other] >= f32(insp.detection_min_confidence)):
                y1, x1 = np.maximum(insp.roi_refined_boxes[roi][:2],
                                    insp.roi_refined_boxes[other][:2])
                y2, x2 = np.minimum(insp.roi_refined_boxes[roi][2:],
                                    insp.roi_refined_boxes[other][2:])
                inter = max(y2 - y1, 0) * max(x2 - x1, 0)
                area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
                union = area(insp.roi_refined_boxes[roi]) + area(insp.roi_refined_boxes[other]) \
                    - inter
                if union > 0 and inter / union > threshold:
                    expected.append(other)
        assert sorted(removed.tolist()) == sorted(expected)
        assert not np.isin(removed, insp.detection_rois).any()      # none of them survived
        assert np.all(overlaps > threshold)
        assert np.all(np.diff(insp.roi_scores[removed]) <= 0)       # best first
        total += len(removed)
    assert total > 0


def test_a_selected_object_is_matched_by_class_and_overlap(record):
    insp = record
    i = len(insp.class_ids) - 1
    box = insp.rois[i].astype(float)
    match = match_selection(insp, int(insp.class_ids[i]), box + [1, -1, 1, 1])
    assert match.detection == i and match.overlap > 0.8 and match.reason == ""
    other = next(c for c in range(1, len(insp.class_names)) if c not in insp.class_ids)
    missing = match_selection(insp, other, box, score=0.9)
    assert missing.detection is None and "no " + insp.class_name(other) in missing.reason
    low = match_selection(insp, other, box, score=insp.detection_min_confidence / 2)
    assert low.detection is None and "below this lesson's confidence threshold" in low.reason
    far = match_selection(insp, int(insp.class_ids[i]), [0, 0, 2, 2])
    assert far.detection is None and "overlaps the selected box enough" in far.reason
