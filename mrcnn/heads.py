"""The network heads: RPN, box classifier/regressor, mask predictor.

Heads are built from layer objects created once (``Heads``) so the same weights
are wired into every graph that needs them: the reference inference graph, the
training graph, and the head models inference runs (``head_models``, through
``mrcnn.folding``) share every variable.
"""
from __future__ import annotations

import keras
from keras import layers

from mrcnn.layers import PyramidROIAlign, RoiDistributed


def build_rpn_model(anchors_per_location, anchor_stride=1, depth=256):
    """Shared RPN applied to each pyramid level (nested model named ``rpn_model``).

    (B, H, W, depth) -> logits (B, H*W*k, 2), probs (B, H*W*k, 2), deltas (B, H*W*k, 4)
    """
    feature_map = keras.Input(shape=(None, None, depth), name="input_rpn_feature_map")
    shared = layers.Conv2D(512, 3, padding="same", activation="relu", strides=anchor_stride,
                           name="rpn_conv_shared")(feature_map)
    logits = layers.Conv2D(2 * anchors_per_location, 1, name="rpn_class_raw")(shared)
    logits = layers.Reshape((-1, 2), name="rpn_class_reshape")(logits)
    probs = layers.Activation("softmax", name="rpn_class_probs")(logits)
    deltas = layers.Conv2D(4 * anchors_per_location, 1, name="rpn_bbox_pred")(shared)
    deltas = layers.Reshape((-1, 4), name="rpn_bbox_reshape")(deltas)
    return keras.Model(feature_map, [logits, probs, deltas], name="rpn_model")


class Heads:
    """Layer objects of the classifier and mask heads, applied by ``classifier`` and ``mask``."""

    def __init__(self, config):
        num_classes = config.NUM_CLASSES
        fc = config.FPN_CLASSIF_FC_LAYERS_SIZE
        pool = config.POOL_SIZE

        def bn(name):
            return RoiDistributed(layers.BatchNormalization(epsilon=1e-3, name=name + "_inner"),
                                  name=name)

        self.roi_align_classifier = PyramidROIAlign([pool, pool], name="roi_align_classifier")
        self.class_conv1 = RoiDistributed(
            layers.Conv2D(fc, pool, padding="valid", name="mrcnn_class_conv1_inner"),
            name="mrcnn_class_conv1")
        self.class_bn1 = bn("mrcnn_class_bn1")
        self.class_conv2 = RoiDistributed(layers.Conv2D(fc, 1, name="mrcnn_class_conv2_inner"),
                                          name="mrcnn_class_conv2")
        self.class_bn2 = bn("mrcnn_class_bn2")
        self.class_logits = RoiDistributed(
            layers.Dense(num_classes, name="mrcnn_class_logits_inner"), name="mrcnn_class_logits")
        self.bbox_fc = RoiDistributed(
            layers.Dense(num_classes * 4, name="mrcnn_bbox_fc_inner"), name="mrcnn_bbox_fc")
        self.num_classes = num_classes

        self.roi_align_mask = PyramidROIAlign([config.MASK_POOL_SIZE] * 2, name="roi_align_mask")
        self.mask_convs = [
            (RoiDistributed(layers.Conv2D(256, 3, padding="same", name=f"mrcnn_mask_conv{i}_inner"),
                            name=f"mrcnn_mask_conv{i}"),
             bn(f"mrcnn_mask_bn{i}")) for i in range(1, 5)]
        self.mask_deconv = RoiDistributed(
            layers.Conv2DTranspose(256, 2, strides=2, activation="relu",
                                   name="mrcnn_mask_deconv_inner"), name="mrcnn_mask_deconv")
        self.mask_out = RoiDistributed(
            layers.Conv2D(num_classes, 1, activation="sigmoid", name="mrcnn_mask_inner"),
            name="mrcnn_mask")

    def classifier(self, rois, image_meta, feature_maps):
        """rois (B, N, 4) -> logits (B, N, C), probs (B, N, C), deltas (B, N, C, 4)."""
        return self.classifier_head(self.roi_align_classifier(rois, image_meta, feature_maps))

    def classifier_head(self, pooled):
        """pooled (B, N, POOL_SIZE, POOL_SIZE, depth) -> logits, probs, deltas."""
        x = layers.Activation("relu", name="mrcnn_class_relu1")(
            self.class_bn1(self.class_conv1(pooled), training=False))
        x = layers.Activation("relu", name="mrcnn_class_relu2")(
            self.class_bn2(self.class_conv2(x), training=False))
        shared = layers.Reshape((-1, x.shape[-1]), name="pool_squeeze")(x)
        logits = self.class_logits(shared)
        probs = layers.Activation("softmax", name="mrcnn_class")(logits)
        deltas = self.bbox_fc(shared)
        deltas = layers.Reshape((-1, self.num_classes, 4), name="mrcnn_bbox")(deltas)
        return logits, probs, deltas

    def mask(self, rois, image_meta, feature_maps):
        """rois (B, N, 4) -> soft masks (B, N, 2*MASK_POOL_SIZE, 2*MASK_POOL_SIZE, C)."""
        return self.mask_head(self.roi_align_mask(rois, image_meta, feature_maps))

    def mask_head(self, pooled):
        """pooled (B, N, MASK_POOL_SIZE, MASK_POOL_SIZE, depth) -> soft masks."""
        x = pooled
        for i, (conv, bn) in enumerate(self.mask_convs, start=1):
            x = layers.Activation("relu", name=f"mrcnn_mask_relu{i}")(bn(conv(x), training=False))
        return self.mask_out(self.mask_deconv(x))

    def head_models(self, depth):
        """Keras models of the classifier head (pooled -> probs, deltas) and the mask head
        (pooled -> soft masks) on these same layers, for ``mrcnn.folding``."""
        pool, mask_pool = self.roi_align_classifier.pool_shape, self.roi_align_mask.pool_shape
        pooled = keras.Input((None, *pool, depth), name="pooled_rois")
        _, probs, deltas = self.classifier_head(pooled)
        classifier = keras.Model(pooled, [probs, deltas], name="classifier_head")
        pooled = keras.Input((None, *mask_pool, depth), name="pooled_detections")
        return classifier, keras.Model(pooled, self.mask_head(pooled), name="mask_head")
