"""Inference-only forward pass with every BatchNorm folded into its convolution.

Inference BatchNorm is an affine map per channel, so ``BN(conv(x, W) + b)`` equals
``conv(x, W * s) + (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``.
Folding removes two full passes over every feature map and lets TensorFlow's
grappler fuse convolution, bias, residual add and ReLU into one oneDNN kernel.
The values differ from the unfolded graph only by float32 rounding (about 1e-6
relative); ``tests/test_folded.py`` checks the detections agree.

The folded weights are plain ``tf.Variable`` copies derived from the Keras layers
(which keep the file's values); ``refresh()`` recomputes them after a load.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from mrcnn.backbone import resnet_blocks
from mrcnn.layers import PyramidROIAlign


def _fold(conv_layer, bn_layer):
    """(kernel, bias) of conv followed by inference BN, as numpy float32."""
    kernel, bias = (np.asarray(v.numpy(), np.float64) for v in conv_layer.weights[:2])
    gamma, beta, mean, var = (np.asarray(v.numpy(), np.float64) for v in bn_layer.weights)
    scale = gamma / np.sqrt(var + bn_layer.epsilon)
    return (kernel * scale).astype(np.float32), ((bias - mean) * scale + beta).astype(np.float32)


def _plain(layer):
    return tuple(np.asarray(v.numpy(), np.float32) for v in layer.weights)


def _inner(layer):
    """The wrapped layer of a RoiDistributed wrapper (or the layer itself)."""
    return getattr(layer, "layer", layer)


class FoldedNetwork:
    """The network as raw TensorFlow ops on folded weights, sharing nothing mutable with Keras."""

    def __init__(self, model):
        self.model = model
        self.config = model.config
        self.blocks = resnet_blocks(self.config.BACKBONE)
        self.variables = {}
        self.refresh()
        heads = model.heads
        self.roi_align_classifier = PyramidROIAlign(heads.roi_align_classifier.pool_shape,
                                                    name="folded_roi_align_classifier")
        self.roi_align_mask = PyramidROIAlign(heads.roi_align_mask.pool_shape,
                                              name="folded_roi_align_mask")

    # ------------------------------------------------------------ weights
    def refresh(self):
        """Recompute the folded weights from the Keras layers' current values."""
        km = self.model.keras_model
        layer = km.get_layer
        arrays = {"conv1": _fold(layer("conv1"), layer("bn_conv1"))}
        for stage, block, stride in self.blocks:
            for branch in ["2a", "2b", "2c"] + (["1"] if stride else []):
                arrays[f"res{stage}{block}_branch{branch}"] = _fold(
                    layer(f"res{stage}{block}_branch{branch}"),
                    layer(f"bn{stage}{block}_branch{branch}"))
        for name in ["fpn_c5p5", "fpn_c4p4", "fpn_c3p3", "fpn_c2p2",
                     "fpn_p2", "fpn_p3", "fpn_p4", "fpn_p5"]:
            arrays[name] = _plain(layer(name))
        rpn = _plain(layer("rpn_model"))
        arrays["rpn_conv_shared"], arrays["rpn_class_raw"], arrays["rpn_bbox_pred"] = (
            rpn[0:2], rpn[2:4], rpn[4:6])
        conv1, bn1 = _inner(layer("mrcnn_class_conv1")), _inner(layer("mrcnn_class_bn1"))
        kernel, bias = _fold(conv1, bn1)
        # 7x7 valid == matmul
        arrays["mrcnn_class_conv1"] = (kernel.reshape(-1, kernel.shape[-1]), bias)
        kernel, bias = _fold(_inner(layer("mrcnn_class_conv2")), _inner(layer("mrcnn_class_bn2")))
        arrays["mrcnn_class_conv2"] = (kernel.reshape(-1, kernel.shape[-1]), bias)
        arrays["mrcnn_class_logits"] = _plain(_inner(layer("mrcnn_class_logits")))
        arrays["mrcnn_bbox_fc"] = _plain(_inner(layer("mrcnn_bbox_fc")))
        for i in range(1, 5):
            arrays[f"mrcnn_mask_conv{i}"] = _fold(_inner(layer(f"mrcnn_mask_conv{i}")),
                                                  _inner(layer(f"mrcnn_mask_bn{i}")))
        arrays["mrcnn_mask_deconv"] = _plain(_inner(layer("mrcnn_mask_deconv")))
        arrays["mrcnn_mask"] = _plain(_inner(layer("mrcnn_mask")))
        for name, values in arrays.items():
            if name in self.variables:
                for variable, value in zip(self.variables[name], values):
                    variable.assign(value)
            else:
                self.variables[name] = tuple(
                    tf.Variable(value, trainable=False, name=f"folded_{name}_{i}")
                    for i, value in enumerate(values))

    # ------------------------------------------------------------ helpers
    def _conv(self, name, x, strides=1, padding="SAME", relu=True, residual=None):
        kernel, bias = self.variables[name]
        y = tf.nn.bias_add(tf.nn.conv2d(x, kernel, strides, padding), bias)
        if residual is not None:
            y = y + residual
        return tf.nn.relu(y) if relu else y

    # ------------------------------------------------------------ network
    def backbone(self, images):
        """(B, H, W, 3) -> [C2, C3, C4, C5]."""
        x = tf.pad(images, [[0, 0], [3, 3], [3, 3], [0, 0]])
        x = self._conv("conv1", x, strides=2, padding="VALID")
        x = tf.nn.max_pool2d(x, 3, 2, "SAME")
        outputs = []
        for index, (stage, block, stride) in enumerate(self.blocks):
            name = f"res{stage}{block}_branch"
            shortcut = x
            if stride:
                shortcut = self._conv(name + "1", x, strides=stride, padding="VALID", relu=False)
            y = self._conv(name + "2a", x, strides=stride or 1, padding="VALID")
            y = self._conv(name + "2b", y)
            x = self._conv(name + "2c", y, padding="VALID", residual=shortcut)
            last_of_stage = index + 1 == len(self.blocks) or self.blocks[index + 1][0] != stage
            if last_of_stage:
                outputs.append(x)
        return outputs

    def pyramid(self, c2, c3, c4, c5):
        """[C2..C5] -> [P2, P3, P4, P5, P6]."""
        def up(x):
            return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)
        p5 = self._conv("fpn_c5p5", c5, padding="VALID", relu=False)
        p4 = up(p5) + self._conv("fpn_c4p4", c4, padding="VALID", relu=False)
        p3 = up(p4) + self._conv("fpn_c3p3", c3, padding="VALID", relu=False)
        p2 = up(p3) + self._conv("fpn_c2p2", c2, padding="VALID", relu=False)
        p2, p3, p4, p5 = (self._conv(f"fpn_p{i}", p, relu=False)
                          for i, p in zip(range(2, 6), (p2, p3, p4, p5)))
        p6 = tf.nn.max_pool2d(p5, 1, 2, "VALID")
        return [p2, p3, p4, p5, p6]

    def rpn(self, feature_maps):
        """Each level's objectness softmax and deltas, concatenated: (B, A, 2), (B, A, 4)."""
        probs, deltas = [], []
        for p in feature_maps:
            batch = tf.shape(p)[0]
            shared = self._conv("rpn_conv_shared", p, strides=self.config.RPN_ANCHOR_STRIDE)
            logits = tf.reshape(self._conv("rpn_class_raw", shared, padding="VALID", relu=False),
                                [batch, -1, 2])
            probs.append(tf.nn.softmax(logits))
            deltas.append(tf.reshape(
                self._conv("rpn_bbox_pred", shared, padding="VALID", relu=False), [batch, -1, 4]))
        return tf.concat(probs, axis=1), tf.concat(deltas, axis=1)

    def classifier(self, rois, image_meta, feature_maps):
        """rois (B, N, 4) -> probs (B, N, C), deltas (B, N, C, 4)."""
        pooled = self.roi_align_classifier(rois, image_meta, feature_maps)
        batch, count = tf.shape(rois)[0], tf.shape(rois)[1]
        x = tf.reshape(pooled, [batch * count, -1])
        for name in ("mrcnn_class_conv1", "mrcnn_class_conv2"):
            kernel, bias = self.variables[name]
            x = tf.nn.relu(tf.nn.bias_add(tf.matmul(x, kernel), bias))
        kernel, bias = self.variables["mrcnn_class_logits"]
        probs = tf.nn.softmax(tf.nn.bias_add(tf.matmul(x, kernel), bias))
        kernel, bias = self.variables["mrcnn_bbox_fc"]
        deltas = tf.nn.bias_add(tf.matmul(x, kernel), bias)
        classes = self.config.NUM_CLASSES
        return (tf.reshape(probs, [batch, count, classes]),
                tf.reshape(deltas, [batch, count, classes, 4]))

    def masks(self, slots, count, image_meta, feature_maps):
        """The first ``count`` of the detection slots (B, DETECTION_MAX_INSTANCES, 4)
        -> soft masks (B, count, 28, 28, C).

        Pyramid levels are computed over all slots, as the reference does, then only
        the real detections are pooled and run through the head.
        """
        levels = self.roi_align_mask.levels(slots, image_meta)[:, :count]
        boxes = slots[:, :count]
        pooled = self.roi_align_mask(boxes, image_meta, feature_maps, levels=levels)
        batch, count = tf.shape(boxes)[0], tf.shape(boxes)[1]
        size = tf.shape(pooled)[2]
        x = tf.reshape(pooled, tf.concat([[batch * count], tf.shape(pooled)[2:]], axis=0))
        for i in range(1, 5):
            x = self._conv(f"mrcnn_mask_conv{i}", x)
        kernel, bias = self.variables["mrcnn_mask_deconv"]
        out_shape = tf.stack([batch * count, 2 * size, 2 * size, tf.shape(kernel)[2]])
        x = tf.nn.relu(tf.nn.bias_add(
            tf.nn.conv2d_transpose(x, kernel, out_shape, 2, "VALID"), bias))
        kernel, bias = self.variables["mrcnn_mask"]
        x = tf.sigmoid(tf.nn.bias_add(tf.nn.conv2d(x, kernel, 1, "VALID"), bias))
        return tf.reshape(x, tf.concat([[batch, count], tf.shape(x)[1:]], axis=0))
