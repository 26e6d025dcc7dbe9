"""Detection layer, unmolding and model-level semantics against numpy references.

The references (``refine_reference``, ``unmold_reference``) are written here from
matterport's stated semantics; the NMS, decoding, clipping and window references are
the shared ones of ``references.py``.
"""
from __future__ import annotations

import numpy as np
import pytest
import skimage.transform
from references import (
    clip_reference,
    decode_reference,
    iou_reference,
    nms_reference,
    norm_window_reference,
    proposals_reference,
    tf_log,
)
from test_stages import side_at_raw_level

from mrcnn.testing.configs import small_config

f32 = np.float32
STD = np.array([0.1, 0.1, 0.2, 0.2])


# --------------------------------------------------------------------------- #
#  numpy references
# --------------------------------------------------------------------------- #
def refine_reference(rois, probs, deltas, window, min_confidence, nms_threshold,
                     max_instances, std=STD):
    """matterport's refine_detections_graph for one image: (max_instances, 6)."""
    n = len(probs)
    class_ids = np.argmax(probs, axis=1)                     # first maximum wins
    scores = probs[np.arange(n), class_ids].astype(f32)
    specific = deltas[np.arange(n), class_ids] * np.asarray(std, f32)
    refined = clip_reference(decode_reference(rois, specific), window)

    keep = np.flatnonzero(class_ids > 0)
    if min_confidence:                                       # 0.0 / None skip the filter
        keep = keep[scores[keep] >= f32(min_confidence)]
    nms_keep = []
    for class_id in np.unique(class_ids[keep]):
        ixs = keep[class_ids[keep] == class_id]
        nms_keep.extend(ixs[nms_reference(refined[ixs], scores[ixs], max_instances,
                                          nms_threshold)])
    keep = np.intersect1d(keep, np.array(nms_keep, dtype=np.int64))   # ascending
    keep = keep[np.argsort(-scores[keep], kind="stable")][:max_instances]
    detections = np.zeros((max_instances, 6), f32)
    detections[:len(keep), :4] = refined[keep]
    detections[:len(keep), 4] = class_ids[keep]
    detections[:len(keep), 5] = scores[keep]
    return detections


def unmold_reference(detections, class_masks, original_shape, image_shape, window):
    """matterport's unmold_detections; class_masks (n, 28, 28) of each row's own class."""
    zeros = np.flatnonzero(detections[:, 4] == 0)
    count = zeros[0] if len(zeros) else len(detections)
    boxes = detections[:count, :4].astype(f32)
    class_ids = detections[:count, 4].astype(np.int32)
    scores = detections[:count, 5]
    masks = class_masks[:count]

    h, w = image_shape[:2]
    win = ((np.array(window, np.float64) - [0, 0, 1, 1]) / [h - 1, w - 1, h - 1, w - 1]).astype(f32)
    shift = np.array([win[0], win[1], win[0], win[1]], f32)
    wh, ww = win[2] - win[0], win[3] - win[1]
    boxes = (boxes - shift) / np.array([wh, ww, wh, ww], f32)          # float32
    oh, ow = original_shape[:2]
    # float32 boxes times integer scale: numpy computes this in float64; half-even rounding.
    pixels = boxes.astype(np.float64) * [oh - 1, ow - 1, oh - 1, ow - 1] + [0, 0, 1, 1]
    pixels = np.around(pixels).astype(np.int32)
    keep = (pixels[:, 2] - pixels[:, 0]) * (pixels[:, 3] - pixels[:, 1]) > 0
    pixels, class_ids, scores, masks = pixels[keep], class_ids[keep], scores[keep], masks[keep]

    full = np.zeros((oh, ow, len(pixels)), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(pixels):
        resized = skimage.transform.resize(masks[i], (y2 - y1, x2 - x1), order=1,
                                           mode="constant", cval=0, clip=True,
                                           preserve_range=False, anti_aliasing=False)
        full[y1:y2, x1:x2, i] = resized >= 0.5
    return pixels, class_ids, scores.astype(f32), full


def meta_for(image_hw, windows, num_classes=4):
    meta = np.zeros((len(windows), 12 + num_classes), f32)
    meta[:, 4:7] = [image_hw[0], image_hw[1], 3]
    meta[:, 7:11] = windows
    return meta


def run_detection_layer(config, rois, probs, deltas, meta):
    import tensorflow as tf

    from mrcnn.layers import DetectionLayer
    return np.asarray(DetectionLayer(config)(
        tf.constant(rois, tf.float32), tf.constant(probs, tf.float32),
        tf.constant(deltas, tf.float32), tf.constant(meta, tf.float32)))


def run_detect_batch(rois, probs, deltas, meta, min_confidence, nms_threshold, max_instances):
    """The run-time path of detect(): thresholds and the cap are tensors."""
    import tensorflow as tf

    from mrcnn.layers import detect_batch
    return detect_batch(tf.constant(rois, tf.float32), tf.constant(probs, tf.float32),
                        tf.constant(deltas, tf.float32), tf.constant(meta, tf.float32),
                        STD, tf.constant(min_confidence, tf.float32),
                        tf.constant(nms_threshold, tf.float32),
                        tf.constant(max_instances, tf.int32)).numpy()


def assert_detections_equal(port, ref):
    """Classes and scores exactly; boxes to float32 rounding of exp (TF vs numpy)."""
    np.testing.assert_array_equal(port[..., 4], ref[..., 4])
    np.testing.assert_array_equal(port[..., 5], ref[..., 5])
    np.testing.assert_allclose(port[..., :4], ref[..., :4], rtol=0, atol=2e-6)


# --------------------------------------------------------------------------- #
#  7. Detection layer
# --------------------------------------------------------------------------- #
def random_detection_inputs(seed, n=120, classes=4, crowded_class=1, crowded=14):
    """Classified RoIs with repeated scores, argmax ties and one crowded class."""
    rng = np.random.default_rng(seed)
    y = np.sort(rng.uniform(0, 1, (n, 2)), axis=1)
    x = np.sort(rng.uniform(0, 1, (n, 2)), axis=1)
    rois = np.stack([y[:, 0], x[:, 0], y[:, 1] + 0.02, x[:, 1] + 0.02], axis=1).astype(f32)
    logits = rng.standard_normal((n, classes)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    probs = (np.round(probs * 32) / 32).astype(f32)          # many equal scores
    # A crowded class: `crowded` small disjoint boxes, all confident (more than the cap).
    grid = [(r, c) for r in range(4) for c in range(4)][:crowded]
    for k, (r, c) in enumerate(grid):
        rois[k] = [r / 4, c / 4, r / 4 + 0.1, c / 4 + 0.1]
        probs[k] = 0.0
        probs[k, crowded_class] = [0.96875, 0.9375][k % 2]
    # Argmax ties: first maximum wins (class 2 over class 3; background over class 1).
    probs[crowded] = [0.0, 0.0, 0.5, 0.5]
    probs[crowded + 1] = [0.5, 0.5, 0.0, 0.0]
    # Exactly at the confidence threshold used below (0.5 and float32(0.7)).
    probs[crowded + 2] = [0.25, 0.0, 0.0, 0.75]
    probs[crowded + 3] = [0.0, 0.5, 0.25, 0.25]
    probs[crowded + 4] = [0.0, f32(0.7), f32(0.3), 0.0]
    # Duplicated rows: same box, same score.
    rois[crowded + 5] = rois[crowded + 6]
    probs[crowded + 5] = probs[crowded + 6] = [0.0, 0.0, 0.875, 0.125]
    deltas = (rng.standard_normal((n, classes, 4)) * 0.5).astype(f32)
    return rois, probs, deltas


@pytest.mark.parametrize("min_confidence", [0.5, 0.7, 0.05])
def test_detection_layer_matches_reference(min_confidence):
    max_instances = 6
    config = small_config(DETECTION_MIN_CONFIDENCE=min_confidence,
                          DETECTION_MAX_INSTANCES=max_instances)
    inputs = [random_detection_inputs(seed) for seed in (10, 11)]
    rois, probs, deltas = (np.stack(parts) for parts in zip(*inputs))
    windows = np.array([[42, 0, 213, 256], [0, 0, 256, 256]], f32)
    meta = meta_for((256, 256), windows)

    port = run_detection_layer(config, rois, probs, deltas, meta)
    assert port.shape == (2, max_instances, 6)
    for b in range(2):
        ref = refine_reference(rois[b], probs[b], deltas[b],
                               norm_window_reference(windows[b], (256, 256)), min_confidence,
                               0.3, max_instances)
        assert np.count_nonzero(ref[:, 4]) == max_instances   # the cap is reached
        assert_detections_equal(port[b], ref)
    # The runtime path (tensor thresholds) agrees with the layer.
    runtime = run_detect_batch(rois, probs, deltas, meta, min_confidence, 0.3, max_instances)
    np.testing.assert_array_equal(runtime, port)


def test_detection_layer_with_a_large_cap_and_padding():
    """More room than detections: every surviving RoI, then zero rows."""
    config = small_config(DETECTION_MIN_CONFIDENCE=0.5, DETECTION_MAX_INSTANCES=120)
    rois, probs, deltas = random_detection_inputs(12)
    windows = np.array([[42, 0, 213, 256]], f32)
    port = run_detection_layer(config, rois[None], probs[None], deltas[None],
                               meta_for((256, 256), windows))[0]
    ref = refine_reference(rois, probs, deltas, norm_window_reference(windows[0], (256, 256)),
                           0.5, 0.3, 120)
    count = np.count_nonzero(ref[:, 4])
    assert 14 < count < 120
    assert_detections_equal(port, ref)
    assert np.all(port[count:] == 0)
    # The crowded class keeps all 14 disjoint boxes when the cap allows it.
    assert np.count_nonzero(port[:, 4] == 1) >= 14


def test_detection_crafted_semantics():
    """Exact-threshold NMS, argmax ties, >= confidence, window clipping, background."""
    max_instances = 8
    config = small_config(DETECTION_MIN_CONFIDENCE=0.7, DETECTION_MAX_INSTANCES=max_instances)
    u = 1 / 8
    rows = [
        # box,                          probs (BG, 1, 2, 3)
        ([0, 0, 0.625, u], [0, 0.9, 0.1, 0]),               # 0: kept
        ([0, 0, 0.1875, u], [0, 0.8, 0.2, 0]),              # 1: IoU 0.3 exactly with 0: kept
        ([0, 2 * u, 0.625, 3 * u], [0, 0.85, 0.15, 0]),     # 2: kept
        ([0, 2 * u, 0.1875 + 1 / 512, 3 * u], [0, 0.8, 0.2, 0]),   # 3: IoU > 0.3: suppressed
        ([0, 4 * u, 0.625, 5 * u], [0, 0, f32(0.7), 0.3]),  # 4: score == 0.7: kept (>=)
        ([0, 4 * u, 0.625, 5 * u], [0.2, 0, 0.6999999, 0.1]),  # 5: below 0.7: dropped
        ([0.75, 0, 0.875, u], [0.5, 0.5, 0, 0]),            # 6: BG/1 tie -> background
        ([0.75, 2 * u, 0.875, 3 * u], [0, 0.4, 0.4, 0.2]),  # 7: 1/2 tie -> class 1 (0.4 < 0.7)
        ([0.75, 4 * u, 0.875, 5 * u], [0, 0, 0.75, 0.75]),  # 8: 2/3 tie -> class 2, kept
        ([0.5, 6 * u, 1.25, 7.5 * u], [0, 0, 0, 0.95]),     # 9: clipped to the window
        ([0, 6 * u, 0.25, 7 * u], [0, 0.95, 0, 0]),         # 10: class 1, same score as 9
    ]
    rois = np.array([r for r, _ in rows], f32)
    probs = np.array([p for _, p in rows], f32)
    deltas = np.zeros((len(rows), 4, 4), f32)
    window = np.array([[0, 0, 256, 256]], f32)
    port = run_detection_layer(config, rois[None], probs[None], deltas[None],
                               meta_for((257, 257), window))[0]
    win = norm_window_reference(window[0], (257, 257))
    ref = refine_reference(rois, probs, deltas, win, 0.7, 0.3, max_instances)
    assert_detections_equal(port, ref)
    # Hand-derived: rows 9, 10 (equal scores, lower index first), 0, 2, 1, 8, 4; one zero row.
    assert port[:, 4].tolist() == [3, 1, 1, 1, 1, 2, 2, 0]
    np.testing.assert_array_equal(port[:, 5], f32([0.95, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0]))
    np.testing.assert_array_equal(port[[2, 3, 4, 5, 6], :4], rois[[0, 2, 1, 8, 4]])
    kept_boxes = {tuple(b) for b in port[:, :4].tolist()}
    assert tuple(rois[1].tolist()) in kept_boxes            # IoU == 0.3 is not suppressed
    assert tuple(rois[3].tolist()) not in kept_boxes        # IoU > 0.3 is
    assert iou_reference(rois[0], rois[1])[0] == f32(0.3)
    np.testing.assert_array_equal(port[0, :4], [0.5, 0.75, win[2], 0.9375])  # y2 clipped


def test_zero_min_confidence_skips_the_filter():
    """DETECTION_MIN_CONFIDENCE = 0.0 is falsy: no score filter at all (matterport's `if`)."""
    config = small_config(DETECTION_MIN_CONFIDENCE=0.0, DETECTION_MAX_INSTANCES=4)
    rois = np.array([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]], f32)
    # Raw values, not probabilities: a negative winning score only survives without a filter.
    probs = np.array([[-1.0, -0.25, -0.5, -0.75], [0.0, 0.125, 0.0, 0.0]], f32)
    deltas = np.zeros((2, 4, 4), f32)
    meta = meta_for((256, 256), [[0, 0, 256, 256]])
    port = run_detection_layer(config, rois[None], probs[None], deltas[None], meta)[0]
    ref = refine_reference(rois, probs, deltas, norm_window_reference([0, 0, 256, 256], (256, 256)),
                           0.0, 0.3, 4)
    assert_detections_equal(port, ref)
    assert port[:2, 4].tolist() == [1, 1] and port[1, 5] == f32(-0.25)


def test_confidence_slider_equals_filtering_a_low_threshold_run():
    """Detections at t == detections at t0 < t with score >= t kept (order unchanged)."""
    inputs = [random_detection_inputs(seed, n=200) for seed in (20, 21)]
    rois, probs, deltas = (np.stack(parts) for parts in zip(*inputs))
    meta = meta_for((256, 256), [[42, 0, 213, 256], [0, 20, 256, 236]])
    max_instances = 40
    low = run_detect_batch(rois, probs, deltas, meta, 0.05, 0.3, max_instances)
    for threshold in (0.3, 0.5, f32(0.7), 0.9):
        high = run_detect_batch(rois, probs, deltas, meta, threshold, 0.3, max_instances)
        for b in range(2):
            kept = low[b][(low[b, :, 4] > 0) & (low[b, :, 5] >= f32(threshold))]
            assert len(kept) > 0
            expected = np.zeros_like(high[b])
            expected[:len(kept)] = kept
            np.testing.assert_array_equal(high[b], expected, err_msg=f"t={threshold}")


def test_detection_layer_with_no_candidates_returns_zero_rows():
    """An image where every RoI is background (or below the threshold) has no detections.

    matterport pads its per-class NMS output to a fixed [DETECTION_MAX_INSTANCES]
    shape, so its map over an empty set of classes is an empty (0, max) tensor and the
    layer returns all-zero rows. ENGINE BUG: the port's ``class_nms`` signature is
    ``TensorSpec([None])``, and ``tf.map_fn`` cannot stack zero elements of unknown
    shape (``Tried to stack elements of an empty list with non-fully-defined
    element_shape``), so the layer raises instead.
    """
    config = small_config(DETECTION_MIN_CONFIDENCE=0.7, DETECTION_MAX_INSTANCES=5)
    rois = np.array([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1], [0, 0, 1, 1]], f32)
    probs = np.array([[1, 0, 0, 0], [0.9, 0.1, 0, 0], [0.4, 0.3, 0.3, 0]], f32)
    deltas = np.zeros((3, 4, 4), f32)
    meta = meta_for((256, 256), [[0, 0, 256, 256]])
    ref = refine_reference(rois, probs, deltas, norm_window_reference([0, 0, 256, 256], (256, 256)),
                           0.7, 0.3, 5)
    assert np.all(ref == 0)
    np.testing.assert_array_equal(
        run_detection_layer(config, rois[None], probs[None], deltas[None], meta)[0], ref)
    np.testing.assert_array_equal(run_detect_batch(rois[None], probs[None], deltas[None], meta,
                                                   0.7, 0.3, 5)[0], ref)


# --------------------------------------------------------------------------- #
#  8. Unmolding: boxes back to pixels, masks pasted
# --------------------------------------------------------------------------- #
def port_unmold(detections, class_masks, original_shape, image_shape, window):
    from mrcnn.molding import unmold_detections
    return unmold_detections(detections, class_masks, original_shape, image_shape, window)


def assert_unmolded_equal(port, ref):
    rois, class_ids, scores, masks = port
    assert rois.dtype == np.int32 and class_ids.dtype == np.int32
    assert scores.dtype == np.float32 and masks.dtype == bool
    for got, want in zip(port, ref):
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def test_unmold_rounds_half_to_even_drops_empty_boxes_and_thresholds_at_half():
    # Molded == original (window the whole frame) so the window normalises to (0,0,1,1)
    # and h-1 = 128, w-1 = 256 make k+0.5 exactly representable.
    shape = (129, 257, 3)
    window = (0, 0, 129, 257)
    detections = np.zeros((8, 6), f32)
    detections[0] = [10.5 / 128, 20.5 / 256, 40.5 / 128, 60.5 / 256, 3, 0.9]  # 10, 20, 42, 62
    detections[1] = [11.5 / 128, 21.5 / 256, 39.5 / 128, 48.5 / 256, 1, 0.8]  # 12, 22, 40, 50
    detections[2] = [50 / 128, 50 / 256, 49 / 128, 90 / 256, 2, 0.7]          # height 0: dropped
    detections[3] = [64 / 128, 100 / 256, 91 / 128, 127 / 256, 1, 0.6]       # 64,100,92,128: 28x28
    detections[5] = [0, 0, 1, 1, 2, 0.4]           # after the first zero class id: ignored
    rng = np.random.default_rng(30)
    masks = rng.uniform(0, 1, (8, 28, 28)).astype(f32)
    masks[0, 10:20, 5:15] = 0.5                     # exactly 0.5 is inside the mask
    masks[3] = 0.25
    masks[3, 4:20, 4:20] = 0.5
    masks[3, 6:9, 6:9] = np.nextafter(f32(0.5), f32(0))

    port = port_unmold(detections, masks, shape, shape, window)
    ref = unmold_reference(detections, masks, shape, shape, window)
    assert_unmolded_equal(port, ref)
    rois, class_ids, scores, full = port
    assert rois.tolist() == [[10, 20, 42, 62], [12, 22, 40, 50], [64, 100, 92, 128]]
    assert class_ids.tolist() == [3, 1, 1]
    np.testing.assert_array_equal(scores, f32([0.9, 0.8, 0.6]))
    assert full.shape == (129, 257, 3)
    # The 28x28 box takes the mask unresized: 0.5 pixels in, 0.49999997 out.
    expected = np.zeros((129, 257), bool)
    expected[64 + 4:64 + 20, 100 + 4:100 + 20] = True
    expected[64 + 6:64 + 9, 100 + 6:100 + 9] = False
    np.testing.assert_array_equal(full[:, :, 2], expected)


def test_unmold_with_a_padded_window_matches_reference():
    from mrcnn.molding import mold
    config = small_config()
    image = np.zeros((100, 150, 3), np.uint8)
    molded = mold(image, config)
    assert tuple(int(v) for v in molded.window) == (42, 0, 213, 256)
    rng = np.random.default_rng(31)
    win = norm_window_reference(molded.window, (256, 256))
    n = 12
    y = np.sort(rng.uniform(win[0], win[2], (n, 2)), axis=1)
    x = np.sort(rng.uniform(win[1], win[3], (n, 2)), axis=1)
    detections = np.zeros((20, 6), f32)
    detections[:n, :4] = np.stack([y[:, 0], x[:, 0], y[:, 1], x[:, 1]], axis=1)
    detections[:n, 4] = rng.integers(1, 4, n)
    detections[:n, 5] = np.sort(rng.uniform(0.5, 1, n))[::-1]
    detections[4, 2] = detections[4, 0] - 0.05                  # inverted: dropped
    detections[6, 3] = detections[6, 1] - (win[3] - win[1]) / 149  # x2 px == x1 px: dropped
    masks = rng.uniform(0, 1, (20, 28, 28)).astype(f32)
    masks[:, ::3, ::3] = 0.5
    port = port_unmold(detections, masks, image.shape, molded.image.shape, molded.window)
    ref = unmold_reference(detections, masks, image.shape, molded.image.shape, molded.window)
    assert_unmolded_equal(port, ref)
    assert len(port[0]) == n - 2

    # No zero row at all: every row is a detection.
    full = detections.copy()
    full[n:, :4] = detections[0, :4]
    full[n:, 4:] = [1, 0.5]
    assert_unmolded_equal(
        port_unmold(full, masks, image.shape, molded.image.shape, molded.window),
        unmold_reference(full, masks, image.shape, molded.image.shape, molded.window))


# --------------------------------------------------------------------------- #
#  9. Model level (small model: ResNet-50, 4 classes, 256x256)
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def images(photos):
    return [photos["astronaut"], photos["coffee"]]


def assert_results_equal(a, b, score_atol=0.0):
    np.testing.assert_array_equal(a["rois"], b["rois"])
    np.testing.assert_array_equal(a["class_ids"], b["class_ids"])
    np.testing.assert_allclose(a["scores"], b["scores"], rtol=0, atol=score_atol)
    np.testing.assert_array_equal(a["masks"], b["masks"])


def test_detect_is_repeatable_and_does_not_retrace(small_model, images, photos):
    first = small_model.detect([images[0]])[0]
    traces = small_model.trace_count()
    assert len(first["class_ids"]) > 0
    assert_results_equal(small_model.detect([images[0]])[0], first)
    # Other image sizes and run-time settings reuse the compiled steps.
    small_model.detect([photos["chelsea"]])
    small_model.detect([np.zeros((37, 300, 3), np.uint8) + 90])
    small_model.detect([images[1]], DETECTION_MIN_CONFIDENCE=0.6, DETECTION_MAX_INSTANCES=7)
    small_model.detect([images[1]], IMAGE_MIN_DIM=320, IMAGE_MAX_DIM=320)
    small_model.detect(images)
    assert small_model.trace_count() == traces
    assert_results_equal(small_model.detect([images[0]])[0], first)


def test_batch_of_two_equals_one_at_a_time(small_model, images):
    together = small_model.detect(images)
    for image, result in zip(images, together):
        alone = small_model.detect([image])[0]
        assert len(alone["class_ids"]) > 0
        # Batched convolutions may round differently in the last bit of a score.
        assert_results_equal(result, alone, score_atol=1e-6)


def test_detect_pipeline_matches_the_reference_graph(small_model, images):
    """detect()'s steps (masks on the real detections only) vs keras_model (all slots).

    Also chains the numpy stage references through the reference graph's own
    tensors: its proposals from its RPN outputs, its detections from its classifier.
    """
    import tensorflow as tf

    from mrcnn.anchors import get_anchors

    model = small_model
    config = model.config
    classify_step, detections_step, masks_step = model._steps
    for image in images:
        batch, metas, molded = model.mold_inputs([image])
        anchors = np.asarray(get_anchors(config, batch.shape[1:3]))[None]
        outputs = [np.asarray(o) for o in
                   model.keras_model([batch, metas, anchors], training=False)]
        detections, probs, deltas, masks, proposals, rpn_probs, rpn_deltas = outputs

        # Reference graph vs the numpy stage references.
        ref_proposals = proposals_reference(rpn_probs, rpn_deltas, anchors,
                                            config.POST_NMS_ROIS_INFERENCE,
                                            config.RPN_NMS_THRESHOLD, config.PRE_NMS_LIMIT,
                                            config.RPN_BBOX_STD_DEV)
        np.testing.assert_allclose(proposals, ref_proposals, rtol=0, atol=1e-6)
        window = norm_window_reference(metas[0, 7:11], metas[0, 4:6])
        ref_detections = refine_reference(proposals[0], probs[0], deltas[0], window,
                                          config.DETECTION_MIN_CONFIDENCE,
                                          config.DETECTION_NMS_THRESHOLD,
                                          config.DETECTION_MAX_INSTANCES)
        assert_detections_equal(detections[0], ref_detections)

        # detect()'s own steps vs the reference graph.
        stages = classify_step(tf.constant(batch), tf.constant(metas), tf.constant(anchors))
        rois, step_probs, step_deltas = (stages[k] for k in ("proposals", "class_probs",
                                                            "class_deltas"))
        p2, p3, p4, p5 = (stages[k] for k in ("P2", "P3", "P4", "P5"))
        step_detections = detections_step(
            rois, step_probs, step_deltas, tf.constant(metas),
            tf.constant(config.DETECTION_MIN_CONFIDENCE, tf.float32),
            tf.constant(config.DETECTION_NMS_THRESHOLD, tf.float32),
            tf.constant(config.DETECTION_MAX_INSTANCES, tf.int32)).numpy()
        count = int(np.count_nonzero(detections[0, :, 4]))
        assert count > 0
        np.testing.assert_array_equal(step_detections[..., 4], detections[..., 4])
        np.testing.assert_allclose(step_detections, detections, rtol=0, atol=1e-5)

        class_ids = detections[0, :count, 4].astype(np.int32)
        own = masks[0, np.arange(count), :, :, class_ids]
        slots = tf.constant(detections[:, :, :4])
        step_masks = masks_step(slots, tf.constant(count), tf.constant(metas),
                                tf.constant(class_ids[None]), p2, p3, p4, p5).numpy()[0]
        assert step_masks.shape == (count, 28, 28)
        np.testing.assert_allclose(step_masks, own, rtol=0, atol=1e-4)
        # Only the detections' slots: the same values as computing every padded slot.
        all_slots = masks_step(slots, tf.constant(detections.shape[1]), tf.constant(metas),
                               tf.constant(detections[:, :, 4].astype(np.int32)),
                               p2, p3, p4, p5).numpy()[0]
        np.testing.assert_array_equal(step_masks, all_slots[:count])

        # And the public result is the reference graph's, unmolded by the numpy reference.
        result = model.detect([image])[0]
        ref = unmold_reference(detections[0], own, molded[0].original_shape,
                               molded[0].image.shape, molded[0].window)
        np.testing.assert_array_equal(result["class_ids"], ref[1])
        assert np.abs(result["rois"] - ref[0]).max() <= 1
        np.testing.assert_allclose(result["scores"], ref[2], rtol=0, atol=1e-5)
        differing = (result["masks"] != ref[3]).sum(axis=(0, 1))
        assert differing.max() <= 0.01 * max(1, ref[3].sum(axis=(0, 1)).max())


def test_detect_with_no_detections_returns_empty_results(small_model, images):
    """matterport returns empty arrays when nothing clears the threshold.

    ENGINE BUG (same cause as test_detection_layer_with_no_candidates_returns_zero_rows):
    detect() raises InvalidArgumentError from the per-class NMS map_fn instead.
    """
    image = images[0]
    result = small_model.detect([image], DETECTION_MIN_CONFIDENCE=0.9999999)[0]
    assert result["rois"].shape == (0, 4) and result["class_ids"].shape == (0,)
    assert result["scores"].shape == (0,)
    assert result["masks"].shape == image.shape[:2] + (0,)


def test_mask_levels_are_computed_over_all_detection_slots(small_model):
    """TF's float32 log can differ by an ulp between SIMD packets and the scalar tail,
    so a box whose raw level sits on a .5 boundary gets a level that depends on its
    position in the tensor. The reference pools all DETECTION_MAX_INSTANCES slots;
    detect() pools only the real detections but must assign levels over all slots.
    """
    import tensorflow as tf

    from mrcnn.layers import PyramidROIAlign

    area = 256 * 256
    side = side_at_raw_level(-0.5, area, tf_log)       # raw level -0.5 in a SIMD packet
    rng = np.random.default_rng(40)
    maps = [tf.constant(rng.standard_normal((1, s, s, 256)).astype(f32)) for s in (64, 32, 16, 8)]
    meta = tf.constant(meta_for((256, 256), [[0, 0, 256, 256]],
                                num_classes=small_model.config.NUM_CLASSES))
    boxes = np.array([[[0.1, 0.1, 0.5, 0.6]] * 8 + [[0, 0, side, side]]], f32)   # 9 detections
    slots = np.concatenate([boxes, np.zeros((1, 11, 4), f32)], axis=1)            # 20 slots
    layer = PyramidROIAlign((14, 14))
    # The hazard itself: pooling 9 boxes or 20 slots puts the last box on another level.
    pooled_count = np.asarray(layer(tf.constant(boxes), meta, maps))[0]
    pooled_slots = np.asarray(layer(tf.constant(slots), meta, maps))[0, :9]
    assert not np.array_equal(pooled_count, pooled_slots)
    # What detect() runs: levels over the slots, head on the first 9 only.
    subset = small_model.network.masks(tf.constant(slots), 9, meta, maps).numpy()
    everything = small_model.network.masks(tf.constant(slots), 20, meta, maps).numpy()[:, :9]
    np.testing.assert_array_equal(subset, everything)
