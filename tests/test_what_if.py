"""The lesson's "What if" computations (``mrcnn.what_if``) and the heads-only rerun
(``MaskRCNN.heads_from_pyramid``).

- A heads-only rerun on a run's cached feature maps equals a full ``detect()`` of a
  model configured with the same proposal settings, exactly (same compiled pieces,
  same inputs: no rounding rule needed), and equals the run itself at its own settings.
- NMS what-ifs equal an independent numpy NMS written here (class-agnostic) and the
  engine's own detection layer at another threshold (per class).
- Mask what-ifs equal the engine's masks at 0.5 and move monotonically with the cut.
"""
from __future__ import annotations

import numpy as np
import pytest
from references import iou_reference

from mrcnn.intermediates import compute_intermediates
from mrcnn.what_if import masks_what_if, match_objects, nms_what_if, rerun_heads

f32 = np.float32


@pytest.fixture(scope="module")
def astronaut_record(small_model, photos):
    return compute_intermediates(small_model, photos["astronaut"])


def assert_same_detections(rerun, expected: dict) -> None:
    for key in ("rois", "class_ids", "scores"):
        got = getattr(rerun, key)
        assert got.dtype == expected[key].dtype, key
        np.testing.assert_array_equal(got, expected[key], err_msg=key)
    np.testing.assert_array_equal(rerun.masks.stack(), expected["masks"].stack()
                                  if hasattr(expected["masks"], "stack") else expected["masks"])


# ------------------------------------------------------------- heads rerun

@pytest.mark.parametrize("rpn_nms_threshold,proposal_count", [(0.5, 77), (0.9, 450)])
def test_heads_rerun_equals_detect_with_the_same_settings(small_model, photos, astronaut_record,
                                                          rpn_nms_threshold, proposal_count):
    from mrcnn.model import MaskRCNN
    from mrcnn.testing.configs import small_config

    configured = MaskRCNN(small_config(RPN_NMS_THRESHOLD=rpn_nms_threshold,
                                       POST_NMS_ROIS_INFERENCE=proposal_count))
    configured.load_weights(small_model.weights_path)
    expected = configured.detect_compact([photos["astronaut"]])[0]
    rerun = rerun_heads(small_model, astronaut_record, rpn_nms_threshold, proposal_count)
    assert rerun.proposal_slots == proposal_count
    assert 0 < rerun.proposal_count <= proposal_count
    assert len(rerun.class_ids) > 0
    assert_same_detections(rerun, expected)
    np.testing.assert_array_equal(rerun.roi_indices, expected["roi_indices"])
    np.testing.assert_array_equal(configured.detect([photos["astronaut"]])[0]["masks"],
                                  rerun.masks.stack())
    # The setting really changed the run (else this test proves nothing).
    assert rerun.proposal_count != astronaut_record.proposal_count


def test_heads_rerun_at_the_runs_own_settings_is_the_run(small_model, astronaut_record):
    insp = astronaut_record
    rerun = rerun_heads(small_model, insp, insp.rpn_nms_threshold, insp.proposal_slots)
    assert rerun.proposal_count == insp.proposal_count
    np.testing.assert_array_equal(rerun.proposals, insp.proposals[:insp.proposal_count])
    assert_same_detections(rerun, insp.result)
    np.testing.assert_array_equal(rerun.roi_indices, insp.roi_indices)


def test_heads_rerun_does_not_run_the_backbone(small_model, astronaut_record, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the backbone ran")
    monkeypatch.setattr(small_model.network, "features", forbidden)
    traces = small_model.trace_count()
    rerun_heads(small_model, astronaut_record, 0.6, 123)
    rerun_heads(small_model, astronaut_record, 0.8, 321)          # no retrace either
    assert small_model.trace_count() <= traces + 1


def test_heads_settings_are_checked(small_model, astronaut_record):
    insp = astronaut_record
    args = ([insp.pyramid[n][None] for n in ("P2", "P3", "P4", "P5")], insp.objectness[None],
            insp.rpn_deltas[None], insp.anchors, insp.image_meta[None])
    with pytest.raises(ValueError, match="IMAGE_MAX_DIM"):
        small_model.heads_from_pyramid(*args, IMAGE_MAX_DIM=512)
    with pytest.raises(ValueError, match="at least 1"):
        small_model.heads_from_pyramid(*args, POST_NMS_ROIS_INFERENCE=0)


def test_coco_heads_rerun_at_default_settings_equals_detect(coco_model, photos):
    image = photos["coffee"]
    insp = compute_intermediates(coco_model, image)
    rerun = rerun_heads(coco_model, insp, insp.rpn_nms_threshold, insp.proposal_slots)
    assert_same_detections(rerun, coco_model.detect_compact([image])[0])
    fewer = rerun_heads(coco_model, insp, 0.7, 100)
    assert fewer.proposal_count == 100 and len(fewer.class_ids) <= len(insp.class_ids) + 100


# --------------------------------------------------------------------- NMS

def class_agnostic_reference(boxes, scores, class_ids, min_confidence, threshold, limit):
    """Greedy NMS over every non-background candidate at once, best score first
    (lower index first among equals), at most ``limit``, returned best first."""
    candidates = [i for i in range(len(scores))
                  if class_ids[i] > 0 and (not min_confidence or scores[i] >= f32(min_confidence))]
    candidates.sort(key=lambda i: (-scores[i], i))
    kept = []
    for i in candidates:
        if len(kept) == limit:
            break
        if all(iou_reference(boxes[i], boxes[k]) <= threshold for k in kept):
            kept.append(i)
    return sorted(kept, key=lambda i: (-scores[i], i))


@pytest.mark.parametrize("threshold", [0.05, 0.3, 0.5, 0.9])
def test_class_agnostic_nms_equals_a_numpy_reference(astronaut_record, threshold):
    insp = astronaut_record
    change = nms_what_if(insp, threshold, class_agnostic=True)
    expected = class_agnostic_reference(
        insp.roi_refined_boxes.astype(np.float64), insp.roi_scores, insp.roi_class_ids,
        insp.detection_min_confidence, threshold, insp.detection_max_instances)
    assert change.kept.tolist() == expected
    assert len(set(insp.roi_class_ids[change.kept])) > 1      # several classes compete


def synthetic_record(rng, count=300, classes=6, min_confidence=0.2, limit=40):
    """The fields NMS reads, with many overlaps, many classes and tied scores."""
    from types import SimpleNamespace
    corners = rng.uniform(0, 1, (count, 2, 2)).astype(f32) * [[1, 1], [0.3, 0.3]]
    boxes = np.concatenate([corners[:, 0], corners[:, 0] + corners[:, 1]], axis=1).astype(f32)
    return SimpleNamespace(
        roi_refined_boxes=boxes, roi_scores=rng.choice(np.linspace(0, 1, 25), count).astype(f32),
        roi_class_ids=rng.integers(0, classes, count).astype(np.int32),
        detection_min_confidence=min_confidence, detection_nms_threshold=0.3,
        detection_max_instances=limit, detection_rois=np.zeros(0, np.int64))


@pytest.mark.parametrize("seed,threshold", [(0, 0.3), (1, 0.5), (2, 0.1), (3, 0.4)])
def test_class_agnostic_nms_equals_the_reference_on_crowded_boxes(seed, threshold):
    record = synthetic_record(np.random.default_rng(seed))
    kept = nms_what_if(record, threshold, class_agnostic=True).kept
    expected = class_agnostic_reference(
        record.roi_refined_boxes.astype(np.float64), record.roi_scores, record.roi_class_ids,
        record.detection_min_confidence, threshold, record.detection_max_instances)
    assert kept.tolist() == expected
    # Together, no two kept boxes overlap; per class, boxes of different classes do.
    boxes = record.roi_refined_boxes
    assert all(iou_reference(boxes[a], boxes[b]) <= threshold for a in kept for b in kept
               if a < b)
    per_class = nms_what_if(record, threshold).kept
    assert any(iou_reference(boxes[a], boxes[b]) > threshold for a in per_class
               for b in per_class if a < b)


def test_class_agnostic_nms_keeps_one_of_two_overlapping_classes():
    from types import SimpleNamespace
    record = SimpleNamespace(
        roi_refined_boxes=np.array([[0, 0, 1, 1], [0, 0, 0.9, 1], [0, 0, 0.2, 0.2]], f32),
        roi_scores=np.array([0.9, 0.95, 0.8], f32), roi_class_ids=np.array([1, 2, 1], np.int32),
        detection_min_confidence=0.5, detection_nms_threshold=0.3, detection_max_instances=100,
        detection_rois=np.array([1, 0, 2]))
    assert nms_what_if(record, 0.3).kept.tolist() == [1, 0, 2]
    together = nms_what_if(record, 0.3, class_agnostic=True)
    assert together.kept.tolist() == [1, 2]
    assert together.lost.tolist() == [0] and together.gained.tolist() == []


def test_nms_what_if_at_another_threshold_equals_the_engine(small_model, photos,
                                                           astronaut_record):
    insp = astronaut_record
    for threshold in (0.1, 0.6):
        change = nms_what_if(insp, threshold)
        engine = small_model.forward([photos["astronaut"]], DETECTION_NMS_THRESHOLD=threshold)
        rois = engine.detection_rois[0][engine.detection_rois[0] >= 0]
        np.testing.assert_array_equal(change.kept, rois)
        np.testing.assert_array_equal(insp.roi_refined_boxes[change.kept],
                                      engine.detections[0, :len(rois), :4])
        default = set(insp.detection_rois.tolist())
        assert set(change.kept.tolist()) == (default - set(change.lost.tolist())) | set(
            change.gained.tolist())
        assert not set(change.gained.tolist()) & default
        assert set(change.lost.tolist()) <= default
    assert len(nms_what_if(insp, 0.1).lost) > 0


def test_nms_what_if_at_the_runs_setting_changes_nothing(astronaut_record):
    insp = astronaut_record
    change = nms_what_if(insp, insp.detection_nms_threshold)
    np.testing.assert_array_equal(change.kept, insp.detection_rois)
    assert len(change.gained) == len(change.lost) == 0


# ------------------------------------------------------------------- masks

def test_mask_what_if_at_one_half_is_the_engines_cut(astronaut_record):
    insp = astronaut_record
    change = masks_what_if(insp, 0.5)
    np.testing.assert_array_equal(change.masks, insp.masks)
    assert change.gained_pixels.sum() == change.lost_pixels.sum() == 0
    assert len(change.vanished) == len(change.appeared) == 0


def test_mask_what_if_moves_with_the_cut_and_counts_the_difference(astronaut_record):
    import skimage.transform
    insp = astronaut_record
    high, low = masks_what_if(insp, 0.8), masks_what_if(insp, 0.2)
    assert not (high.masks & ~insp.masks).any() and not (insp.masks & ~low.masks).any()
    assert high.gained_pixels.sum() == 0 and low.lost_pixels.sum() == 0
    np.testing.assert_array_equal(high.lost_pixels,
                                  insp.masks.sum(axis=(0, 1)) - high.masks.sum(axis=(0, 1)))
    assert high.lost_pixels.sum() > 0 and low.gained_pixels.sum() > 0
    # Each mask is the 28x28 map stretched bilinearly over its box (scikit-image's
    # resize, independent of the engine's matrix form) and cut: a pixel may differ
    # only where the value sits on the threshold within float32 rounding.
    y1, x1, y2, x2 = insp.rois[0]
    stretched = skimage.transform.resize(insp.soft_masks[0], (y2 - y1, x2 - x1), order=1,
                                         mode="constant", anti_aliasing=False)
    differ = (stretched >= 0.8) != high.masks[y1:y2, x1:x2, 0]
    assert np.all(np.abs(stretched[differ] - 0.8) < 1e-5)
    vanished = masks_what_if(insp, 0.999999)
    assert len(vanished.vanished) == int(insp.masks.any(axis=(0, 1)).sum()) - int(
        vanished.masks.any(axis=(0, 1)).sum())


# ------------------------------------------------------------ gained / lost

def test_match_objects_pairs_same_class_overlapping_boxes_once():
    before = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    before_classes = np.array([1, 2, 3])
    after = np.array([[1, 1, 10, 10], [0, 0, 10, 10], [20, 20, 30, 31], [50, 50, 60, 60]])
    after_classes = np.array([1, 1, 2, 2])
    pairs, gained, lost = match_objects(before, before_classes, after, after_classes)
    assert pairs.tolist() == [[0, 0], [1, 2]]    # the second class-1 box: its match is taken
    assert gained.tolist() == [1, 3]
    assert lost.tolist() == [2]                  # class 3 has no counterpart
    # A box overlapping by less than IoU 0.5 is not the same object.
    pairs, gained, lost = match_objects([[0, 0, 10, 10]], [1], [[0, 5, 10, 15]], [1])
    assert len(pairs) == 0 and gained.tolist() == [0] and lost.tolist() == [0]
    pairs, gained, lost = match_objects(np.zeros((0, 4)), [], np.zeros((0, 4)), [])
    assert len(pairs) == len(gained) == len(lost) == 0
