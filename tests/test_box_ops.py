"""The box codec and IoU of ``mrcnn.box_ops`` against the numpy references of
``references.py``, on TensorFlow tensors (eager and in a graph) and on numpy arrays."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from references import (
    clip_reference,
    decode_reference,
    encode_reference,
    iou_matrix,
    iou_reference,
    random_boxes,
    tf_exp,
)

from mrcnn.box_ops import box_iou, clip_boxes, decode_boxes, encode_boxes

f32 = np.float32


def awkward_boxes(rng, n) -> np.ndarray:
    """float32 boxes in [0, 1) with the cases IoU must get right: zero height, zero
    width, all-zero padding rows, boxes far from every other (disjoint), duplicates
    and boxes sharing only an edge."""
    boxes = random_boxes(rng, n, 0, 1, min_size=0)
    boxes[0::8, 2] = boxes[0::8, 0]                      # zero height
    boxes[1::8, 3] = boxes[1::8, 1]                      # zero width
    boxes[2::8] = 0                                      # padding
    boxes[3::8] += f32(5)                                # far away
    boxes[4::8] = boxes[5::8][:len(boxes[4::8])]         # duplicates
    boxes[6::8, 0] = boxes[7::8, 2][:len(boxes[6::8])]   # starts where another ends
    boxes[6::8, 2] = boxes[6::8, 0] + f32(0.25)
    return boxes


# --------------------------------------------------------------------------- #
#  IoU
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_iou_matches_the_reference_on_random_boxes(seed):
    rng = np.random.default_rng(seed)
    boxes1, boxes2 = awkward_boxes(rng, 64), awkward_boxes(rng, 48)
    expected = iou_matrix(boxes1.astype(np.float64), boxes2.astype(np.float64))

    # numpy in float64 (the RPN targets' path): the reference's arithmetic exactly.
    port = box_iou(boxes1.astype(np.float64), boxes2.astype(np.float64))
    assert port.dtype == np.float64 and port.shape == (64, 48)
    np.testing.assert_array_equal(port, expected)
    # float32, in numpy and in TensorFlow (the detection targets' path).
    np.testing.assert_allclose(box_iou(boxes1, boxes2), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(box_iou(tf.constant(boxes1), tf.constant(boxes2)).numpy(),
                               expected, rtol=0, atol=1e-6)


def test_iou_of_empty_disjoint_and_identical_boxes():
    boxes = np.array([[0.1, 0.1, 0.5, 0.5],       # 0
                      [0.1, 0.1, 0.5, 0.5],       # 1: same as 0
                      [0.6, 0.6, 0.9, 0.9],       # 2: disjoint from 0
                      [0.5, 0.1, 0.9, 0.5],       # 3: shares 0's bottom edge only
                      [0.2, 0.2, 0.2, 0.4],       # 4: zero height, inside 0
                      [0, 0, 0, 0],               # 5: padding
                      [0.3, 0.3, 0.7, 0.7]],      # 6: a quarter of 0 over 0 and 6
                     f32)
    for iou in (box_iou(boxes, boxes), box_iou(tf.constant(boxes), tf.constant(boxes)).numpy()):
        assert iou[0, 1] == iou[1, 0] == 1 and iou[0, 0] == 1
        assert iou[0, 2] == iou[0, 3] == 0
        assert not iou[4].any() and not iou[:, 4].any()           # zero area: overlaps nothing
        assert not iou[5].any() and not iou[:, 5].any()           # padding, even with itself
        assert iou[0, 6] == pytest.approx(0.04 / (0.16 + 0.16 - 0.04), rel=1e-6)
        np.testing.assert_array_equal(iou, iou.T)


@pytest.mark.parametrize("seed", [0, 1])
def test_iou_with_corners_in_either_order_is_tensorflows_nms_iou(seed):
    rng = np.random.default_rng(seed)
    boxes = awkward_boxes(rng, 80)
    boxes[::3] = boxes[::3][:, [2, 3, 0, 1]]                 # some boxes upside down
    boxes[1::5] = boxes[1::5][:, [0, 3, 2, 1]]               # some mirrored
    port = box_iou(boxes, boxes, either_order=True)
    assert port.dtype == f32
    expected = np.stack([iou_reference(box, boxes) for box in boxes])
    np.testing.assert_array_equal(port, expected)
    tf_port = box_iou(tf.constant(boxes), tf.constant(boxes), either_order=True).numpy()
    np.testing.assert_array_equal(tf_port, expected)


# --------------------------------------------------------------------------- #
#  The codec
# --------------------------------------------------------------------------- #
def test_decode_is_bit_exact_in_reference_order():
    rng = np.random.default_rng(0)
    boxes = random_boxes(rng, 4000)
    deltas = (rng.standard_normal((4000, 4)) * [0.3, 0.3, 0.5, 0.5]).astype(f32)
    port = decode_boxes(tf.constant(boxes), tf.constant(deltas)).numpy()

    # exp from TensorFlow so only the operation order is under test: must be bit exact.
    np.testing.assert_array_equal(port, decode_reference(boxes, deltas, exp=tf_exp))
    # A different (mathematically equal) order is caught: y2 = cy + h/2 instead of y1 + h.
    h = boxes[:, 2] - boxes[:, 0]
    cy = boxes[:, 0] + f32(0.5) * h + deltas[:, 0] * h
    h = h * tf_exp(deltas[:, 2])
    assert np.any(cy + f32(0.5) * h != port[:, 2])

    # numpy's own exp may differ from TensorFlow's by an ulp; the rest follows closely.
    loose = decode_reference(boxes, deltas)
    scale = np.abs(boxes).max(axis=1, keepdims=True) + np.abs(loose).max(axis=1, keepdims=True)
    assert np.all(np.abs(port - loose) <= 4 * np.finfo(f32).eps * scale)
    # The numpy path is the same formula: numpy's exp, then the same float32 operations.
    np.testing.assert_array_equal(decode_boxes(boxes, deltas), loose)

    # Batched (B, N, 4) input gives the same per-box result.
    batched = decode_boxes(tf.constant(boxes.reshape(4, 1000, 4)),
                           tf.constant(deltas.reshape(4, 1000, 4))).numpy()
    np.testing.assert_array_equal(batched.reshape(-1, 4), port)


def test_encode_matches_the_reference():
    rng = np.random.default_rng(3)
    boxes = random_boxes(rng, 1000, 0, 1, min_size=0.01)
    targets = random_boxes(rng, 1000, 0, 1, min_size=0.01)
    expected = encode_reference(boxes.astype(np.float64), targets.astype(np.float64))
    # numpy keeps float64 input in float64 (the RPN targets' path)...
    port64 = encode_boxes(boxes.astype(np.float64), targets.astype(np.float64))
    assert port64.dtype == np.float64
    np.testing.assert_allclose(port64, expected, rtol=1e-12, atol=1e-12)
    # ...and integer pixel boxes too (gt boxes come as int32).
    pixels, pixel_targets = (np.round(b * 1000).astype(np.int32) for b in (boxes, targets))
    pixels[:, 2:] += 1
    pixel_targets[:, 2:] += 1
    np.testing.assert_allclose(
        encode_boxes(pixels, pixel_targets),
        encode_reference(pixels.astype(np.float64), pixel_targets.astype(np.float64)),
        rtol=1e-12, atol=1e-12)
    # float32 in TensorFlow (the detection targets' path) and in numpy.
    tf_port = encode_boxes(tf.constant(boxes), tf.constant(targets)).numpy()
    assert tf_port.dtype == f32
    np.testing.assert_allclose(tf_port, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(encode_boxes(boxes, targets), tf_port, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "tensorflow", "graph"])
def test_encode_then_decode_round_trip(backend):
    rng = np.random.default_rng(2)
    boxes = random_boxes(rng, 1000, 0, 1, min_size=0.01)
    targets = random_boxes(rng, 1000, 0, 1, min_size=0.01)
    std = np.array([0.1, 0.1, 0.2, 0.2], f32)

    def round_trip(boxes, targets):
        # As the engine uses it: targets divide the deltas by the std-devs, layers multiply.
        return decode_boxes(boxes, encode_boxes(boxes, targets) / std * std)

    if backend == "numpy":
        decoded = round_trip(boxes, targets)
    elif backend == "tensorflow":
        decoded = round_trip(tf.constant(boxes), tf.constant(targets)).numpy()
    else:
        decoded = tf.function(round_trip)(tf.constant(boxes), tf.constant(targets)).numpy()
    assert decoded.dtype == f32
    np.testing.assert_allclose(decoded, targets, rtol=0, atol=2e-6)
    # The reference's deltas decode to the targets as well.
    deltas = encode_reference(boxes.astype(np.float64), targets.astype(np.float64))
    np.testing.assert_allclose(decode_boxes(tf.constant(boxes), tf.constant(deltas, tf.float32)),
                               targets, rtol=0, atol=2e-5)


def test_iou_in_a_graph_gives_the_eager_bits():
    """The detection targets run box_iou inside the training step's graph. (Not so for
    decoding: TensorFlow's exp may differ in the last bit between graph and eager.)"""
    rng = np.random.default_rng(4)
    boxes = tf.constant(awkward_boxes(rng, 500))
    targets = tf.constant(awkward_boxes(rng, 30))
    np.testing.assert_array_equal(tf.function(box_iou)(boxes, targets).numpy(),
                                  box_iou(boxes, targets).numpy())


def test_clip_boxes_matches_reference():
    rng = np.random.default_rng(1)
    boxes = random_boxes(rng, 500, -0.5, 1.5)
    boxes[::7] = boxes[::7, [2, 3, 0, 1]]            # some inverted boxes too
    for window in [(0.0, 0.0, 1.0, 1.0), (0.125, 0.0, 0.875, 1.0),
                   (f32(42 / 255), f32(0), f32(212 / 255), f32(1))]:
        port = clip_boxes(tf.constant(boxes), tf.constant(window, tf.float32)).numpy()
        np.testing.assert_array_equal(port, clip_reference(boxes, window))


def test_numpy_callers_do_not_load_tensorflow():
    """``mrcnn.explain`` and the what-if / follow modules use the numpy path and stay
    free of TensorFlow (the codec and IoU import it only when a tensor comes in)."""
    code = ("import sys, numpy as np; "
            "import mrcnn.explain, mrcnn.follow, mrcnn.what_if; "
            "from mrcnn.box_ops import box_iou, decode_boxes, encode_boxes; "
            "b = np.array([[0, 0, 2, 2], [1, 1, 3, 3]], np.float32); "
            "assert abs(mrcnn.explain.iou(b[0], b[1:])[0] - 1 / 7) < 1e-6; "
            "np.testing.assert_allclose(decode_boxes(b, encode_boxes(b, b[::-1])), b[::-1]); "
            "sys.exit(1 if 'tensorflow' in sys.modules else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
