"""The training forward pass: images and ground truth in, the five losses out.

It reuses the layers of a ``MaskRCNN`` (one set of weights for training and
``detect()``) and differs from inference where matterport's training graph does:

- proposals: POST_NMS_ROIS_TRAINING of them, treated as constants (no gradient
  flows into the RPN through the RoI coordinates);
- the heads see RoIs sampled by ``detection_targets`` (positives first), and the
  mask head runs only on the positive slots, the only ones its loss reads;
- BatchNorm: with TRAIN_BN = False (matterport's default, for fine-tuning) every
  BatchNorm uses its moving statistics, which never change, while gamma and beta of
  the trained layers learn. With TRAIN_BN = True the backbone's trained BatchNorm
  layers normalise with the batch's statistics and update their moving averages (as
  Keras does in training mode); the heads' BatchNorm layers keep their statistics
  (``mrcnn.heads`` builds them for inference).

``layers=`` selects what trains, with matterport's regular expressions matched
against whole layer names (the RPN's convolutions inside ``rpn_model`` included).
"""
from __future__ import annotations

import re

import keras
import tensorflow as tf

import mrcnn.training.losses as L
from mrcnn.anchors import get_anchors
from mrcnn.layers import ProposalLayer
from mrcnn.training.targets import detection_targets

_HEADS = r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)"
LAYER_REGEX = {
    "heads": _HEADS,
    "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|" + _HEADS,
    "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|" + _HEADS,
    "5+": r"(res5.*)|(bn5.*)|" + _HEADS,
    "all": r".*",
}


def weighted_layers(keras_model):
    """(name, layer) of every layer owning weights; nested models are opened."""
    for layer in keras_model.layers:
        if isinstance(layer, keras.Model):
            yield from weighted_layers(layer)
        elif layer.weights:
            yield layer.name, layer


def set_trainable(keras_model, layers) -> list:
    """Make trainable exactly the layers whose whole name matches ``layers``
    ("heads", "3+", "4+", "5+", "all" or a regular expression); returns their names."""
    regex = LAYER_REGEX.get(layers, layers)
    chosen = []
    for name, layer in weighted_layers(keras_model):
        layer.trainable = bool(re.fullmatch(regex, name))
        if layer.trainable:
            chosen.append(name)
    if not chosen:
        raise ValueError(f"layers={layers!r} matches no layer with weights.")
    return chosen


def batchnorm_parameters(keras_model) -> set:
    """ids of every BatchNormalization gamma and beta (wrapped and nested ones too)."""
    found = set()

    def visit(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            found.update(id(v) for v in (layer.gamma, layer.beta) if v is not None)
        for child in getattr(layer, "layers", []):
            visit(child)
        if isinstance(layer, keras.layers.Wrapper):
            visit(layer.layer)

    for layer in keras_model.layers:
        visit(layer)
    return found


def decayed_variables(variables, keras_model) -> list:
    """The variables weight decay applies to: all but BatchNorm gamma and beta."""
    excluded = batchnorm_parameters(keras_model)
    return [v for v in variables if id(v) not in excluded]


def norm_gt_boxes(gt_boxes, gt_class_ids, image_hw):
    """Pixel boxes [B, M, 4] -> normalised, padding rows (class 0) kept at zero."""
    h, w = float(image_hw[0]), float(image_hw[1])
    scale = tf.constant([h - 1, w - 1, h - 1, w - 1], tf.float32)
    normalised = (gt_boxes - tf.constant([0.0, 0.0, 1.0, 1.0])) / scale
    return tf.where((gt_class_ids != 0)[..., None], normalised, 0.0)


class TrainingGraph:
    """Callable: a batch (``mrcnn.training.data``) -> {loss name: scalar}, unweighted."""

    def __init__(self, model):
        self.config = cfg = model.config
        km = model.keras_model
        self.pyramid = keras.Model(
            km.inputs[0], [model.feature_maps[name] for name in ("P2", "P3", "P4", "P5", "P6")],
            name="training_pyramid")
        self.rpn = km.get_layer("rpn_model")
        self.heads = model.heads
        self.proposal_layer = ProposalLayer(
            proposal_count=cfg.POST_NMS_ROIS_TRAINING, nms_threshold=cfg.RPN_NMS_THRESHOLD,
            pre_nms_limit=cfg.PRE_NMS_LIMIT, rpn_bbox_std_dev=cfg.RPN_BBOX_STD_DEV,
            name="training_proposals")

    def __call__(self, batch, training=True) -> dict:
        """``training``: a training step (with TRAIN_BN the backbone's BatchNorm then uses
        and updates batch statistics) rather than a validation pass."""
        cfg = self.config
        images, metas = batch["images"], batch["image_meta"]
        image_hw = images.shape[1:3]
        p_maps = self.pyramid(images, training=bool(training and cfg.TRAIN_BN))
        level_outputs = [self.rpn(p, training=False) for p in p_maps]
        rpn_logits = tf.concat([out[0] for out in level_outputs], axis=1)   # [B, A, 2]
        rpn_deltas = tf.concat([out[2] for out in level_outputs], axis=1)   # [B, A, 4]

        anchors = tf.constant(get_anchors(cfg, image_hw))
        anchors = tf.broadcast_to(anchors, tf.concat([tf.shape(images)[:1], tf.shape(anchors)], 0))
        proposals = self.proposal_layer(tf.stop_gradient(tf.nn.softmax(rpn_logits)),
                                        tf.stop_gradient(rpn_deltas), anchors)
        gt_boxes = norm_gt_boxes(batch["gt_boxes"], batch["gt_class_ids"], image_hw)
        rois, target_class_ids, target_deltas, target_masks = detection_targets(
            proposals, batch["gt_class_ids"], gt_boxes, batch["gt_masks"], cfg)

        mrcnn_maps = p_maps[:4]
        class_logits, _, class_deltas = self.heads.classifier(rois, metas, mrcnn_maps)
        # Positives come first: the mask head runs on the first slots up to the largest
        # positive count of the batch, the only ones its loss reads (at least one slot:
        # TensorFlow's kernels do not all accept an empty batch).
        positives = tf.maximum(tf.reduce_max(tf.reduce_sum(
            tf.cast(target_class_ids > 0, tf.int32), axis=1)), 1)
        masks = self.heads.mask(rois[:, :positives], metas, mrcnn_maps)
        active_class_ids = metas[:, 12:]
        return {
            "rpn_class_loss": L.rpn_class_loss(batch["rpn_match"], rpn_logits),
            "rpn_bbox_loss": L.rpn_bbox_loss(batch["rpn_bbox"], batch["rpn_match"], rpn_deltas),
            "mrcnn_class_loss": L.mrcnn_class_loss(target_class_ids, class_logits,
                                                   active_class_ids),
            "mrcnn_bbox_loss": L.mrcnn_bbox_loss(target_deltas, target_class_ids, class_deltas),
            "mrcnn_mask_loss": L.mrcnn_mask_loss(target_masks[:, :positives],
                                                 target_class_ids[:, :positives], masks),
        }


def batch_signature(config, image_shape, mask_shape) -> dict:
    """tf.TensorSpec of each batch entry (fixed batch size, so shapes stay static)."""
    b, m = config.BATCH_SIZE, config.MAX_GT_INSTANCES
    anchors = len(get_anchors(config, image_shape[:2]))
    return {
        "images": tf.TensorSpec([b, *image_shape], tf.float32),
        "image_meta": tf.TensorSpec([b, config.IMAGE_META_SIZE], tf.float32),
        "rpn_match": tf.TensorSpec([b, anchors], tf.int32),
        "rpn_bbox": tf.TensorSpec([b, config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4], tf.float32),
        "gt_class_ids": tf.TensorSpec([b, m], tf.int32),
        "gt_boxes": tf.TensorSpec([b, m, 4], tf.float32),
        "gt_masks": tf.TensorSpec([b, *mask_shape, m], tf.bool),
    }


def total_loss(losses: dict, config, decayed) -> tuple:
    """(total, weighted losses, decay term): sum of LOSS_WEIGHTS[name] * loss + weight decay."""
    weighted = {name: losses[name] * float(config.LOSS_WEIGHTS.get(name, 1.0))
                for name in L.LOSS_NAMES}
    decay = L.weight_decay(decayed, config.WEIGHT_DECAY)
    return tf.add_n(list(weighted.values())) + decay, weighted, decay


__all__ = ["LAYER_REGEX", "TrainingGraph", "batch_signature", "batchnorm_parameters",
           "decayed_variables", "norm_gt_boxes", "set_trainable", "total_loss",
           "weighted_layers"]
