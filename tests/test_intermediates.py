"""``mrcnn.intermediates``: one run's stages as numpy, checked against the engine and numpy
references.

The references here are written from the reference's stated semantics
(/work/shared/maskrcnn/README.md), not by calling the code under test.
"""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
from references import crop_reference, level_reference

from mrcnn import CocoConfig
from mrcnn.anchors import get_anchors
from mrcnn.draw.figures import draw_boxes, zoom, zoom_region
from mrcnn.explain import anchors_at, detections_at, iou, level_formula, nms, paste_soft_mask
from mrcnn.intermediates import Intermediates, anchor_counts, compute_intermediates

f32 = np.float32


def anchor_formula(image_hw, strides, ratios) -> int:
    return sum(math.ceil(image_hw[0] / s) * math.ceil(image_hw[1] / s) * len(ratios)
               for s in strides)


def assert_same_result(inspection: Intermediates, expected: dict) -> None:
    got = inspection.result
    for key in ("rois", "class_ids", "scores", "masks"):
        assert got[key].dtype == expected[key].dtype, key
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)


@pytest.fixture(scope="module")
def astronaut_run(small_model, photos):
    return compute_intermediates(small_model, photos["astronaut"])


# ------------------------------------------------------------------ anchors

def test_coco_anchor_total_is_261888_for_a_1024_input():
    config = CocoConfig()
    expected = anchor_formula((1024, 1024), config.BACKBONE_STRIDES, config.RPN_ANCHOR_RATIOS)
    assert expected == 261_888
    counts = anchor_counts((1024, 1024), config.BACKBONE_STRIDES, config.RPN_ANCHOR_RATIOS)
    assert counts.tolist() == [196_608, 49_152, 12_288, 3_072, 768]
    assert counts.sum() == expected == len(get_anchors(config, (1024, 1024)))


def test_anchor_count_matches_the_formula(astronaut_run, small_model):
    insp, config = astronaut_run, small_model.config
    assert insp.molded_shape == (256, 256)
    expected = anchor_formula(insp.molded_shape, config.BACKBONE_STRIDES, config.RPN_ANCHOR_RATIOS)
    assert insp.anchor_count == expected == len(insp.anchors) == len(insp.objectness)
    assert insp.level_shapes.tolist() == [[64, 64], [32, 32], [16, 16], [8, 8], [4, 4]]
    # An odd, non-square molded shape (pad64 frames are multiples of 64, not squares).
    assert anchor_counts((320, 192), [4, 8, 16, 32, 64], [0.5, 1, 2]).sum() == \
        anchor_formula((320, 192), [4, 8, 16, 32, 64], [0.5, 1, 2])


def test_anchors_at_a_point_are_centred_on_the_nearest_cell(astronaut_run):
    insp = astronaut_run
    at = anchors_at(insp, 3, y=101, x=30)          # stride 8 -> cell (13, 4), centre (104, 32)
    assert (at["row"], at["col"], at["center"]) == (13, 4, (104, 32))
    centres = (at["boxes"][:, :2] + at["boxes"][:, 2:]) / 2
    np.testing.assert_allclose(centres, [[104, 32]] * 3, atol=1e-3)
    sizes = at["boxes"][:, 2:] - at["boxes"][:, :2]
    np.testing.assert_allclose(np.sqrt(sizes.prod(axis=1)), [at["scale"]] * 3, rtol=1e-4)
    np.testing.assert_allclose(sizes[:, 1] / sizes[:, 0], insp.anchor_ratios, rtol=1e-4)
    np.testing.assert_array_equal(at["objectness"], insp.objectness[at["ids"]])


# ---------------------------------------------------------------------- RPN

def test_proposals_are_the_nms_survivors_of_the_best_anchors(astronaut_run, small_model):
    insp, config = astronaut_run, small_model.config
    count = insp.proposal_count
    assert count == int(np.any(insp.proposals != 0, axis=1).sum())
    assert not insp.proposals[count:].any()
    assert len(insp.pre_nms_anchor_ids) == config.PRE_NMS_LIMIT
    # top_k order: descending objectness, the lower anchor index first among equals.
    order = np.lexsort((insp.pre_nms_anchor_ids, -insp.pre_nms_scores))
    np.testing.assert_array_equal(order, np.arange(len(order)))
    assert insp.pre_nms_scores[-1] >= np.delete(insp.objectness, insp.pre_nms_anchor_ids).max()
    np.testing.assert_array_equal(insp.pre_nms_boxes[insp.nms_kept], insp.proposals[:count])


def test_unsaturated_proposal_count(small_model, photos):
    """A config whose proposal cap is not reached, so the count is really counted."""
    from mrcnn.model import MaskRCNN
    from mrcnn.testing.configs import small_config
    model = MaskRCNN(small_config(PRE_NMS_LIMIT=300, POST_NMS_ROIS_INFERENCE=1000,
                                  DETECTION_MAX_INSTANCES=100))
    model.load_weights(small_model.weights_path)
    image = photos["coffee"]
    insp = compute_intermediates(model, image)
    assert 0 < insp.proposal_count < 300 <= len(insp.proposals)
    assert insp.proposal_count == int(np.any(insp.proposals != 0, axis=1).sum())
    assert insp.proposal_count == len(insp.nms_kept)
    # detect()'s own computation outputs the same proposals.
    engine_proposals = model.forward([image]).stages["proposals"][0].numpy()
    np.testing.assert_array_equal(engine_proposals, insp.proposals)
    assert_same_result(insp, model.detect([image])[0])


# ---------------------------------------------------------------- RoI align

def test_level_assignment_matches_the_formula(astronaut_run):
    insp = astronaut_run
    real = insp.proposals[:insp.proposal_count]
    np.testing.assert_array_equal(insp.proposal_levels,
                                  level_reference(real, math.prod(insp.molded_shape)))
    for index in insp.crop_ids:
        f = level_formula(insp, index)
        assert f["level"] == min(5, max(2, 4 + f["rounded"]))
        assert f["side_px"] == pytest.approx(f["ratio"] * 224, rel=1e-6)


def test_crops_are_7x7_and_14x14_from_the_assigned_level(astronaut_run, small_model, photos):
    import tensorflow as tf
    insp = astronaut_run
    channels = small_model.config.TOP_DOWN_PYRAMID_SIZE
    k = len(insp.crop_ids)
    assert k > 0
    assert insp.crops_classifier.shape == (k, 7, 7, channels)
    assert insp.crops_mask.shape == (k, 14, 14, channels)
    # Recompute the pyramid map of the first crop's level and crop it in numpy.
    batch, _, _ = small_model.mold_inputs([photos["astronaut"]])
    features = small_model.network.features(tf.constant(batch))
    p_maps = [features[name] for name in ("P2", "P3", "P4", "P5")]
    first = int(insp.crop_ids[0])
    level_map = p_maps[int(insp.proposal_levels[first]) - 2][0].numpy()
    box = insp.proposals[first]
    np.testing.assert_allclose(insp.crops_classifier[0], crop_reference(level_map, box, 7),
                               atol=1e-3 * np.abs(level_map).max())
    np.testing.assert_allclose(insp.crops_mask[0], crop_reference(level_map, box, 14),
                               atol=1e-3 * np.abs(level_map).max())


# ------------------------------------------------------- heads and the result

def test_detections_equal_detect(astronaut_run, small_model, photos):
    assert_same_result(astronaut_run, small_model.detect([photos["astronaut"]])[0])
    chelsea = photos["chelsea"]                      # not square: a real window
    assert_same_result(compute_intermediates(small_model, chelsea),
                       small_model.detect([chelsea])[0])


def test_per_roi_scores_boxes_and_numpy_selection_reproduce_the_detections(astronaut_run):
    insp = astronaut_run
    np.testing.assert_array_equal(insp.roi_class_ids, insp.class_probs.argmax(axis=1))
    np.testing.assert_allclose(insp.class_probs.sum(axis=1), 1.0, rtol=1e-5)
    chosen = detections_at(insp, insp.detection_min_confidence)
    kept = chosen["kept"]
    assert len(kept) == len(insp.detections)
    np.testing.assert_array_equal(insp.roi_refined_boxes[kept], insp.detections[:, :4])
    np.testing.assert_array_equal(insp.roi_class_ids[kept], insp.detections[:, 4].astype(int))
    np.testing.assert_array_equal(insp.roi_scores[kept], insp.detections[:, 5])
    lower = detections_at(insp, 0.0)
    assert len(lower["candidates"]) >= len(chosen["candidates"])


def test_soft_masks_pasted_at_one_half_are_the_final_masks(astronaut_run):
    insp = astronaut_run
    assert insp.soft_masks.shape == (len(insp.class_ids), 28, 28)
    for i in range(min(4, len(insp.class_ids))):
        pasted = paste_soft_mask(insp.soft_masks[i], insp.rois[i], insp.image.shape)
        np.testing.assert_array_equal(pasted >= 0.5, insp.masks[:, :, i])


def test_inspection_is_plain_numpy_and_pickles(astronaut_run):
    insp = astronaut_run
    for name, value in vars(insp).items():
        values = value.values() if isinstance(value, dict) else [value]
        for item in values:
            assert type(item).__module__.split(".")[0] in ("numpy", "builtins"), name
    copy = pickle.loads(pickle.dumps(insp))
    np.testing.assert_array_equal(copy.masks, insp.masks)
    assert copy.feature_shapes == insp.feature_shapes


# --------------------------------------------------------------- IoU and NMS

def test_iou_and_nms_follow_tensorflow():
    import tensorflow as tf
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 1, (300, 2, 2)).astype(f32)
    boxes = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    boxes[:5, 2:] = boxes[:5, :2]                    # zero area: IoU 0 with everything
    scores = rng.choice(np.linspace(0, 1, 40), 300).astype(f32)   # many exact ties
    for threshold in (0.3, 0.5, 0.7):
        expected = tf.image.non_max_suppression(boxes, scores, 100, threshold).numpy()
        np.testing.assert_array_equal(nms(boxes, scores, threshold, 100), expected)
    assert iou([0, 0, 2, 2], [[1, 1, 3, 3]])[0] == pytest.approx(1 / 7)
    assert iou([0, 0, 2, 2], [[0, 0, 2, 2], [5, 5, 6, 6], [1, 1, 1, 3]]).tolist() == [1, 0, 0]


def test_close_ups_stay_inside_the_picture():
    region = zoom_region([[5, 600, 20, 630], [0, 610, 30, 640]], (480, 640))
    top, left, bottom, right = region
    assert bottom - top == right - left >= 48
    assert 0 <= top and 0 <= left and bottom <= 480 and right <= 640
    assert top <= 0 and left <= 600 and bottom >= 30 and right >= 640
    picture = np.zeros((480, 640, 3), np.uint8)
    close_up = zoom(picture, region, [[5, 600, 20, 630]], [(255, 0, 0)], size=200)
    assert close_up.shape[:2] == (200, 200) and close_up[..., 0].max() == 255
    drawn = draw_boxes(picture, [[10, 10, 50, 60]], [(0, 255, 0)], width=2)
    assert drawn.shape == picture.shape and drawn[10, 30, 1] == 255 and drawn[30, 30, 1] == 0


# --------------------------------------------------------------- COCO model

def test_coco_model_inspection_equals_detect_on_a_real_photo(coco_model, photos):
    image = photos["coffee"]
    insp = compute_intermediates(coco_model, image)
    assert insp.molded_shape == (1024, 1024)
    assert insp.anchor_count == 261_888 == len(insp.anchors)
    assert insp.feature_shapes["C5"] == (32, 32, 2048)
    assert insp.feature_shapes["P6"] == (16, 16, 256)
    assert insp.proposal_count == int(np.any(insp.proposals != 0, axis=1).sum())
    expected = coco_model.detect([image])[0]
    assert len(expected["class_ids"]) > 0
    assert_same_result(insp, expected)
