"""Each training loss against a numpy reference written here, on small hand-made cases."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mrcnn.training import losses as L


def log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def smooth_l1(diff):
    diff = np.abs(diff)
    return np.where(diff < 1, 0.5 * diff ** 2, diff - 0.5)


def value(tensor):
    return float(tensor.numpy())


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_rpn_class_loss(rng):
    logits = rng.normal(size=(2, 7, 2)).astype(np.float32)
    match = np.array([[1, -1, 0, 0, 1, -1, -1], [0, 0, -1, 1, 0, 0, -1]], np.int32)
    terms = []
    for b in range(2):
        for a in range(7):
            if match[b, a] != 0:
                terms.append(-log_softmax(logits[b, a])[1 if match[b, a] == 1 else 0])
    assert value(L.rpn_class_loss(tf.constant(match), tf.constant(logits))) == pytest.approx(
        np.mean(terms), rel=1e-5)
    assert value(L.rpn_class_loss(tf.zeros((1, 7), tf.int32), tf.constant(logits[:1]))) == 0.0


def test_rpn_bbox_loss_reads_each_images_own_positives(rng):
    predicted = rng.normal(size=(2, 6, 4)).astype(np.float32) * 2
    match = np.array([[0, 1, -1, 1, 0, 0], [1, 0, 0, 0, 0, -1]], np.int32)
    target = np.zeros((2, 4, 4), np.float32)
    target[0, :2] = rng.normal(size=(2, 4))
    target[1, :1] = rng.normal(size=(1, 4))
    target[1, 1:] = 99.0          # rows past the image's positive count are never read
    diffs = [target[0, 0] - predicted[0, 1], target[0, 1] - predicted[0, 3],
             target[1, 0] - predicted[1, 0]]
    expected = np.mean(smooth_l1(np.stack(diffs)))
    got = value(L.rpn_bbox_loss(tf.constant(target), tf.constant(match), tf.constant(predicted)))
    assert got == pytest.approx(expected, rel=1e-5)
    none = np.where(match == 1, 0, match)
    assert value(L.rpn_bbox_loss(tf.constant(target), tf.constant(none),
                                 tf.constant(predicted))) == 0.0


def test_mrcnn_class_loss_ignores_rois_predicted_as_inactive_classes(rng):
    logits = rng.normal(size=(2, 5, 4)).astype(np.float32) * 3
    targets = np.array([[1, 0, 3, 0, 0], [2, 2, 0, 0, 0]], np.int32)
    active = np.array([[1, 1, 1, 0], [1, 1, 0, 1]], np.int32)
    weights = np.array([[active[b, logits[b, r].argmax()] for r in range(5)] for b in range(2)])
    assert 0 < weights.sum() < 10
    ce = np.array([[-log_softmax(logits[b, r])[targets[b, r]] for r in range(5)]
                   for b in range(2)])
    expected = (ce * weights).sum() / weights.sum()
    got = value(L.mrcnn_class_loss(tf.constant(targets), tf.constant(logits), tf.constant(active)))
    assert got == pytest.approx(expected, rel=1e-5)


def test_mrcnn_bbox_loss_uses_the_true_class_deltas_of_positive_rois(rng):
    predicted = rng.normal(size=(2, 3, 4, 4)).astype(np.float32)
    target = rng.normal(size=(2, 3, 4)).astype(np.float32)
    class_ids = np.array([[2, 0, 1], [0, 3, 0]], np.int32)
    diffs = [target[b, r] - predicted[b, r, class_ids[b, r]]
             for b in range(2) for r in range(3) if class_ids[b, r] > 0]
    got = value(L.mrcnn_bbox_loss(tf.constant(target), tf.constant(class_ids),
                                  tf.constant(predicted)))
    assert got == pytest.approx(np.mean(smooth_l1(np.stack(diffs))), rel=1e-5)
    assert value(L.mrcnn_bbox_loss(tf.constant(target), tf.zeros((2, 3), tf.int32),
                                   tf.constant(predicted))) == 0.0


def test_mrcnn_mask_loss_is_binary_cross_entropy_of_the_true_class_mask(rng):
    predicted = rng.uniform(size=(2, 3, 5, 5, 4)).astype(np.float32)
    predicted[0, 0, 0, 0, 2] = 0.0                                    # clipped, not -inf
    target = (rng.uniform(size=(2, 3, 5, 5)) > 0.5).astype(np.float32)
    target[0, 0, 0, 0] = 1.0
    class_ids = np.array([[2, 1, 0], [0, 0, 3]], np.int32)
    terms = []
    for b in range(2):
        for r in range(3):
            if class_ids[b, r]:
                p = np.clip(predicted[b, r, :, :, class_ids[b, r]], 1e-7, 1 - 1e-7)
                t = target[b, r]
                terms.append(-(t * np.log(p) + (1 - t) * np.log(1 - p)))
    got = value(L.mrcnn_mask_loss(tf.constant(target), tf.constant(class_ids),
                                  tf.constant(predicted)))
    assert got == pytest.approx(np.mean(terms), rel=1e-5)
    assert value(L.mrcnn_mask_loss(tf.constant(target), tf.zeros((2, 3), tf.int32),
                                   tf.constant(predicted))) == 0.0


def test_weight_decay_is_matterports_size_normalised_l2(rng):
    arrays = [rng.normal(size=s).astype(np.float32) for s in [(3, 3, 2, 4), (4,), (5, 2)]]
    variables = [tf.Variable(a) for a in arrays]
    expected = sum(1e-4 * np.sum(a.astype(np.float64) ** 2) / a.size for a in arrays)
    assert value(L.weight_decay(variables, 1e-4)) == pytest.approx(expected, rel=1e-5)
    assert value(L.weight_decay([], 1e-4)) == 0.0
