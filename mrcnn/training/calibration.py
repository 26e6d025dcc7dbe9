"""Data-dependent BatchNorm statistics for a network trained from scratch.

With TRAIN_BN = False the BatchNorm layers never learn their moving statistics,
so a randomly initialised network keeps mean 0 / variance 1 everywhere and its
activations drift by orders of magnitude from layer to layer. Calibration sets
each layer's moving mean and variance to the statistics of its actual input on a
few training images, in network order (each layer sees inputs already normalised
by the layers before it): the network starts well scaled and the statistics stay
frozen afterwards, as matterport's training expects.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from mrcnn.training.data import TrainingBatches
from mrcnn.training.graph import TrainingGraph, norm_gt_boxes


def _backbone_batchnorms(model):
    import keras
    return [layer for layer in model.keras_model.layers
            if isinstance(layer, keras.layers.BatchNormalization)]


def _set_statistics(wrapped_bn, values, weights):
    """Moving mean/variance of a (wrapped) BatchNorm := weighted moments of ``values``.

    values: [B, N, ..., channels]; weights: [B, N] (1 for real RoIs, 0 for padding).
    """
    bn = getattr(wrapped_bn, "layer", wrapped_bn)
    axes = list(range(values.shape.rank - 1))
    w = tf.reshape(weights,
                   tf.concat([tf.shape(weights), tf.ones(values.shape.rank - 2, tf.int32)], 0))
    w = tf.broadcast_to(w, tf.shape(values))
    mean, variance = tf.nn.weighted_moments(values, axes, w)
    bn.moving_mean.assign(mean)
    bn.moving_variance.assign(variance)


def backbone_statistics(model, images, graph=None) -> None:
    """Moving mean/variance of the backbone's trainable BatchNorm layers := the
    statistics of ``images`` [N, H, W, 3] (molded), layer after layer.

    One forward pass in training mode with momentum 0. Run after training with
    TRAIN_BN = True it replaces the lagging moving averages by the statistics of the
    final weights ("precise BatchNorm"); layers that do not train keep theirs.
    """
    graph = graph or TrainingGraph(model)
    layers = [layer for layer in _backbone_batchnorms(model) if layer.trainable]
    momenta = [layer.momentum for layer in layers]
    try:
        for layer in layers:
            layer.momentum = 0.0
        graph.pyramid(tf.constant(images), training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum


def calibrate_batchnorm(model, dataset, images=16, seed=0, zero_residual_gamma=True) -> int:
    """Set every BatchNorm's moving statistics from ``images`` images of ``dataset``.

    The backbone's layers are calibrated in one pass in training mode with momentum
    0 (moving statistics := batch statistics, layer after layer); the heads'
    layers on the images' ground-truth boxes as RoIs. Returns the number of layers
    calibrated. Call it once, before training, on a network that has not been
    trained (it would overwrite learnt statistics).

    zero_residual_gamma: first set gamma of the last BatchNorm of every residual
        branch (``bn*_branch2c``) to 0, so each ResNet block starts as the identity
        and grows its branch as gamma learns. With statistics frozen nothing else
        re-normalises the activations while the weights change; measured on shapes,
        without it the feature maps' scale grows six-fold in 15 steps and the box
        losses diverge, with it every loss falls.
    """
    cfg = model.config
    batches = TrainingBatches(dataset, cfg, shuffle=True, seed=seed)
    parts = [next(batches) for _ in range(max(1, -(-images // cfg.BATCH_SIZE)))]
    batch = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    graph = TrainingGraph(model)

    layers = _backbone_batchnorms(model)
    if zero_residual_gamma:
        for layer in layers:
            if layer.name.endswith("_branch2c"):
                layer.gamma.assign(tf.zeros_like(layer.gamma))
    saved = [layer.trainable for layer in layers]
    try:
        for layer in layers:
            layer.trainable = True
        backbone_statistics(model, batch["images"], graph)
    finally:
        for layer, trainable in zip(layers, saved):
            layer.trainable = trainable
    p_maps = graph.pyramid(tf.constant(batch["images"]), training=False)[:4]

    heads = model.heads
    metas = tf.constant(batch["image_meta"])
    rois = norm_gt_boxes(tf.constant(batch["gt_boxes"]), tf.constant(batch["gt_class_ids"]),
                         batch["images"].shape[1:3])
    real = tf.cast(tf.constant(batch["gt_class_ids"]) > 0, tf.float32)

    x = heads.class_conv1(heads.roi_align_classifier(rois, metas, p_maps))
    _set_statistics(heads.class_bn1, x, real)
    x = heads.class_conv2(tf.nn.relu(heads.class_bn1(x, training=False)))
    _set_statistics(heads.class_bn2, x, real)
    x = heads.roi_align_mask(rois, metas, p_maps)
    for conv, bn in heads.mask_convs:
        x = conv(x)
        _set_statistics(bn, x, real)
        x = tf.nn.relu(bn(x, training=False))
    return len(layers) + 2 + len(heads.mask_convs)
