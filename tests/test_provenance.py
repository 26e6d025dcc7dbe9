"""Where each result of a run came from: the anchor behind each proposal, the RoI behind
each detection, and that RoI's class probabilities (``NetworkOutputs.proposal_anchors``,
``NetworkOutputs.detection_rois``, ``detect_compact()``'s ``roi_indices`` and
``class_probs``).

Each link is checked by recomputing it in numpy from the reference's stated semantics
(/work/shared/maskrcnn/README.md): anchor + its RPN deltas -> the proposal; RoI + its
class deltas -> the detection box.
"""
from __future__ import annotations

import numpy as np
import pytest
from references import clip_reference, decode_reference, norm_window_reference, tf_exp

from mrcnn.results import filter_detections

f32 = np.float32


def check_run(model, outputs, i=0, rpn_run=None):
    """Every provenance link of image ``i`` of a run (``rpn_run``: the forward() whose
    RPN outputs it used, itself by default)."""
    cfg = outputs.config
    rpn_run = rpn_run or outputs
    proposals = outputs.stages["proposals"][i].numpy()
    objectness = rpn_run.stages["rpn_probs"][i, :, 1].numpy()
    rpn_deltas = rpn_run.stages["rpn_deltas"][i].numpy()
    anchor_ids = outputs.proposal_anchors[i]
    assert outputs.proposal_anchors.dtype == np.int32
    assert outputs.proposal_anchors.shape == (len(outputs.molded), cfg.POST_NMS_ROIS_INFERENCE)
    real = np.any(proposals != 0, axis=1)
    np.testing.assert_array_equal(anchor_ids >= 0, real)          # -1 exactly on padding rows
    ids = anchor_ids[real]
    assert len(np.unique(ids)) == len(ids)
    # Each one is among the PRE_NMS_LIMIT best anchors by objectness (top_k: lower
    # index first among equals)...
    top = np.argsort(-objectness, kind="stable")[:min(cfg.PRE_NMS_LIMIT, len(objectness))]
    assert np.isin(ids, top).all()
    # ...and that anchor refined by its own RPN deltas, clipped, is the proposal.
    # exp from TensorFlow, over the rows the layer decodes in its order: TensorFlow's
    # vectorised exp can differ in the last bit between SIMD packets and the scalar tail.
    refined = clip_reference(decode_reference(
        outputs.anchors[top], rpn_deltas[top] * f32(cfg.RPN_BBOX_STD_DEV), exp=tf_exp),
        [0, 0, 1, 1])
    rank = {int(anchor): k for k, anchor in enumerate(top)}
    np.testing.assert_array_equal(refined[[rank[int(a)] for a in ids]], proposals[real])

    detections = outputs.detections[i]
    rois = outputs.detection_rois[i]
    assert outputs.detection_rois.dtype == np.int32
    assert outputs.detection_rois.shape == (len(outputs.molded), cfg.DETECTION_MAX_INSTANCES)
    present = detections[:, 4] > 0
    np.testing.assert_array_equal(rois >= 0, present)
    rois = rois[present]
    assert len(np.unique(rois)) == len(rois) and rois.max() < real.sum()
    probs = outputs.stages["class_probs"][i].numpy()
    deltas = outputs.stages["class_deltas"][i].numpy()
    class_ids = detections[present, 4].astype(int)
    np.testing.assert_array_equal(probs[rois].argmax(axis=1), class_ids)
    np.testing.assert_array_equal(probs[rois, class_ids], detections[present, 5])
    # Every RoI refined by its best class's deltas (as the detection layer does, all rows).
    best = probs.argmax(axis=1)
    specific = deltas[np.arange(len(best)), best] * f32(cfg.BBOX_STD_DEV)
    meta = outputs.metas[i]
    boxes = clip_reference(decode_reference(proposals, specific, exp=tf_exp),
                           norm_window_reference(meta[7:11], meta[4:6]))
    np.testing.assert_array_equal(boxes[rois], detections[present, :4])
    return present.sum()


def check_compact(model, result, outputs, i=0):
    """detect_compact()'s roi_indices and class_probs against the run they came from."""
    n = len(result["class_ids"])
    assert set(result) == {"rois", "class_ids", "scores", "masks", "roi_indices", "class_probs"}
    assert result["roi_indices"].dtype == np.int32 and result["roi_indices"].shape == (n,)
    assert result["class_probs"].dtype == np.float32
    assert result["class_probs"].shape == (n, model.config.NUM_CLASSES)
    np.testing.assert_array_equal(result["class_probs"].argmax(axis=1), result["class_ids"])
    np.testing.assert_array_equal(result["class_probs"][np.arange(n), result["class_ids"]],
                                  result["scores"])
    np.testing.assert_array_equal(
        result["class_probs"], outputs.stages["class_probs"][i].numpy()[result["roi_indices"]])
    # The RoIs in result order are those of the kept detection rows (unmolding drops
    # only rows whose box rounds to nothing, never reorders).
    kept_rows = [int(np.flatnonzero(outputs.detection_rois[i] == roi)[0])
                 for roi in result["roi_indices"]]
    assert kept_rows == sorted(kept_rows)
    np.testing.assert_array_equal(outputs.detections[i, kept_rows, 5], result["scores"])


def test_every_proposal_and_detection_leads_back_to_its_anchor_and_roi(small_model, photos):
    for name in ("astronaut", "chelsea"):
        outputs = small_model.forward([photos[name]])
        assert check_run(small_model, outputs) > 0, name
        check_compact(small_model, small_model.detect_compact([photos[name]])[0], outputs)


def test_provenance_of_a_batch_is_per_image(small_model, photos):
    images = [photos["coffee"], photos["astronaut"]]
    outputs = small_model.forward(images)
    results = small_model.detect_compact(images)
    for i in range(2):
        check_run(small_model, outputs, i)
        check_compact(small_model, results[i], outputs, i)


def test_detect_keeps_matterports_four_keys_and_the_same_pixels(small_model, photos):
    image = photos["chelsea"]
    full = small_model.detect([image])[0]
    compact = small_model.detect_compact([image])[0]
    assert set(full) == {"rois", "class_ids", "scores", "masks"}
    for key in ("rois", "class_ids", "scores"):
        np.testing.assert_array_equal(compact[key], full[key])
    np.testing.assert_array_equal(compact["masks"].stack(), full["masks"])


def test_filtering_keeps_provenance_aligned(small_model, photos):
    result = small_model.detect_compact([photos["astronaut"]], DETECTION_MIN_CONFIDENCE=0.1)[0]
    threshold = float(np.median(result["scores"]))
    kept = filter_detections(result, threshold)
    chosen = result["scores"] >= np.float32(threshold)
    assert 0 < chosen.sum() < len(chosen)
    np.testing.assert_array_equal(kept["roi_indices"], result["roi_indices"][chosen])
    np.testing.assert_array_equal(kept["class_probs"], result["class_probs"][chosen])


def test_padding_rows_point_nowhere(small_model, photos):
    """More proposal slots than NMS keeps, and fewer detections than slots: -1 rows."""
    outputs = small_model.forward([photos["coffee"]])
    probs = outputs.stages["class_probs"][0].numpy()
    object_scores = np.sort(probs.max(axis=1)[probs.argmax(axis=1) > 0])[::-1]
    wide = small_model.heads_from_pyramid(
        [outputs.stages[n] for n in ("P2", "P3", "P4", "P5")],
        outputs.stages["rpn_probs"][..., 1], outputs.stages["rpn_deltas"], outputs.anchors,
        outputs.metas, outputs.molded, POST_NMS_ROIS_INFERENCE=small_model.config.PRE_NMS_LIMIT,
        DETECTION_MIN_CONFIDENCE=float(object_scores[4]))      # at most 5 candidates
    assert (wide.proposal_anchors[0] == -1).sum() > 0
    assert (wide.detection_rois[0] == -1).sum() > 0
    assert check_run(small_model, wide, rpn_run=outputs) > 0


@pytest.mark.parametrize("name", ["coffee"])
def test_coco_model_provenance_on_a_real_photo(coco_model, photos, name):
    outputs = coco_model.forward([photos[name]])
    assert outputs.proposal_anchors.shape == (1, 1000)
    assert check_run(coco_model, outputs) > 0
    check_compact(coco_model, coco_model.detect_compact([photos[name]])[0], outputs)
