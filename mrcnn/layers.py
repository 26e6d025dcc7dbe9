"""Mask R-CNN's custom Keras layers: proposals, pyramid RoI-align, detections.

Each layer is a ``keras.layers.Layer`` with ``get_config``; the computation follows
matterport's graph functions operation by operation (same TensorFlow kernels:
``top_k``, ``non_max_suppression``, ``crop_and_resize``) so results match.

Image meta layout (float32, per image): [image_id, original h, w, c, molded h, w, c,
window y1, x1, y2, x2, scale, active class ids...].
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from mrcnn.box_ops import clip_boxes, decode_boxes, norm_window, roi_pyramid_level


def meta_image_shape(image_meta):
    """Molded image (h, w, c) of each image: (B, 3)."""
    return image_meta[:, 4:7]


def meta_window(image_meta):
    """Window of the real image inside the molded frame, pixels: (B, 4)."""
    return image_meta[:, 7:11]


class RoiDistributed(keras.layers.Wrapper):
    """Apply a layer to every RoI: (B, N, ...) -> (B*N, ...) -> layer -> (B, N, ...).

    Plays the role of Keras' ``TimeDistributed`` in the reference (the weights are
    named after this wrapper), computed as one batched call instead of a loop.
    """

    def build(self, input_shape):
        self.layer.build((None,) + tuple(input_shape[2:]))
        self.built = True

    def call(self, inputs, training=None):
        return self.over_rois(lambda flat: self.layer(flat, training=training), inputs)

    @staticmethod
    def over_rois(fn, inputs):
        """``fn`` on (B*N, ...) for ``inputs`` (B, N, ...), its output back as (B, N, ...)."""
        shape = tf.shape(inputs)
        outputs = fn(tf.reshape(inputs, tf.concat([[-1], shape[2:]], axis=0)))
        out_shape = tf.shape(outputs)
        return tf.reshape(outputs, tf.concat([shape[:2], out_shape[1:]], axis=0))

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((None,) + tuple(input_shape[2:]))
        return tuple(input_shape[:2]) + tuple(inner[1:])


def propose(scores, rpn_bbox, anchors, proposal_count, nms_threshold, pre_nms_limit,
            rpn_bbox_std_dev):
    """The proposal layer's computation, with where each proposal came from.

    scores (B, A): each anchor's foreground probability (``rpn_probs[:, :, 1]``),
    rpn_bbox (B, A, 4), anchors (B, A, 4). ``proposal_count`` and ``nms_threshold``
    may be Python numbers (the layer) or scalar tensors (a compiled step that
    changes them without retracing); the operations are the same.
    Returns proposals (B, proposal_count, 4) normalised, zero-padded, and
    anchor_ids (B, proposal_count) int32: the index into ``anchors`` of the pre-NMS
    box each proposal is (-1 for padding rows).
    """
    deltas = rpn_bbox * tf.reshape(tf.constant(rpn_bbox_std_dev, tf.float32), [1, 1, 4])
    limit = tf.minimum(pre_nms_limit, tf.shape(anchors)[1])
    top = tf.math.top_k(scores, limit, sorted=True, name="top_anchors").indices
    scores = tf.gather(scores, top, batch_dims=1)          # (B, K)
    deltas = tf.gather(deltas, top, batch_dims=1)          # (B, K, 4)
    anchors = tf.gather(anchors, top, batch_dims=1)        # (B, K, 4)
    boxes = decode_boxes(anchors, deltas)
    boxes = clip_boxes(boxes, tf.constant([0.0, 0.0, 1.0, 1.0]))

    def nms(args):
        image_boxes, image_scores, image_top = args
        keep = tf.image.non_max_suppression(
            image_boxes, image_scores, proposal_count, nms_threshold,
            name="rpn_non_max_suppression")
        proposals = tf.gather(image_boxes, keep)
        padding = tf.maximum(proposal_count - tf.shape(proposals)[0], 0)
        return (tf.pad(proposals, [(0, padding), (0, 0)]),
                tf.pad(tf.gather(image_top, keep), [(0, padding)], constant_values=-1))

    rows = proposal_count if isinstance(proposal_count, int) else None
    return tf.map_fn(nms, (boxes, scores, top),
                     fn_output_signature=(tf.TensorSpec([rows, 4], tf.float32),
                                          tf.TensorSpec([rows], tf.int32)))


class ProposalLayer(keras.layers.Layer):
    """RPN scores and deltas + anchors -> (B, proposal_count, 4) normalised proposals.

    Top ``pre_nms_limit`` anchors by foreground probability (``top_k``: lower index
    first among equals), deltas scaled by ``rpn_bbox_std_dev`` and applied, clipped
    to [0, 1], NMS at ``nms_threshold``, zero-padded to ``proposal_count``.
    ``propose_with_anchors`` also gives each proposal's anchor (see ``propose``).
    """

    def __init__(self, proposal_count, nms_threshold, pre_nms_limit, rpn_bbox_std_dev,
                 **kwargs):
        super().__init__(**kwargs)
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_limit = int(pre_nms_limit)
        self.rpn_bbox_std_dev = [float(v) for v in rpn_bbox_std_dev]

    def get_config(self):
        return {**super().get_config(), "proposal_count": self.proposal_count,
                "nms_threshold": self.nms_threshold, "pre_nms_limit": self.pre_nms_limit,
                "rpn_bbox_std_dev": self.rpn_bbox_std_dev}

    def propose_with_anchors(self, rpn_probs, rpn_bbox, anchors):
        """(proposals (B, proposal_count, 4), anchor_ids (B, proposal_count) int32)."""
        return propose(rpn_probs[:, :, 1], rpn_bbox, anchors, self.proposal_count,
                       self.nms_threshold, self.pre_nms_limit, self.rpn_bbox_std_dev)

    def call(self, rpn_probs, rpn_bbox, anchors):
        # rpn_probs (B, A, 2), rpn_bbox (B, A, 4), anchors (B, A, 4)
        return self.propose_with_anchors(rpn_probs, rpn_bbox, anchors)[0]

    def compute_output_shape(self, rpn_probs_shape, rpn_bbox_shape, anchors_shape):
        return (rpn_probs_shape[0], self.proposal_count, 4)


class PyramidROIAlign(keras.layers.Layer):
    """Crop-and-resize each box from the pyramid level its size selects.

    Inputs: boxes (B, N, 4) normalised, image_meta (B, META), feature maps P2..P5.
    Output: (B, N, pool_h, pool_w, channels), in the boxes' order.
    """

    def __init__(self, pool_shape, **kwargs):
        super().__init__(**kwargs)
        self.pool_shape = tuple(int(v) for v in pool_shape)

    def get_config(self):
        return {**super().get_config(), "pool_shape": list(self.pool_shape)}

    def call(self, boxes, image_meta, feature_maps, levels=None):
        if levels is None:
            levels = self.levels(boxes, image_meta)              # (B, N)
        pooled, positions = [], []
        for i, level in enumerate(range(2, 6)):
            ix = tf.where(tf.equal(levels, level))               # (n_level, 2): batch, box
            level_boxes = tf.gather_nd(boxes, ix)
            pooled.append(tf.image.crop_and_resize(
                feature_maps[i], level_boxes, tf.cast(ix[:, 0], tf.int32),
                self.pool_shape, method="bilinear"))
            positions.append(ix)
        pooled = tf.concat(pooled, axis=0)
        positions = tf.concat(positions, axis=0)
        out_shape = tf.concat([tf.shape(boxes, out_type=tf.int64)[:2],
                               tf.shape(pooled, out_type=tf.int64)[1:]], axis=0)
        return tf.scatter_nd(positions, pooled, out_shape)

    @staticmethod
    def levels(boxes, image_meta):
        """Pyramid level (2..5) of each box (B, N, 4) -> (B, N) int32.

        TensorFlow's vectorised float32 log can differ in the last bit from its
        scalar tail, so a box near a level boundary keeps the reference's level only
        if it sits at the same position of a tensor of the same length: callers that
        pool a subset of boxes compute levels on the full tensor and slice.
        """
        image_shape = meta_image_shape(image_meta)[0]
        image_area = tf.cast(image_shape[0] * image_shape[1], tf.float32)
        return roi_pyramid_level(boxes, image_area)

    def compute_output_shape(self, boxes_shape, image_meta_shape, feature_maps_shape,
                             levels_shape=None):
        return tuple(boxes_shape[:2]) + self.pool_shape + (feature_maps_shape[0][-1],)


def refine_detections_with_rois(rois, probs, deltas, window, bbox_std_dev, min_confidence,
                                nms_threshold, max_instances):
    """One image's classified RoIs -> (max_instances, 6) detections and their RoIs.

    rois (N, 4), probs (N, classes), deltas (N, classes, 4), window (4,) normalised.
    Rows are [y1, x1, y2, x2, class_id, score], best first, zero-padded. As in the
    reference, a falsy Python ``min_confidence`` (0 or None) skips the score filter;
    a tensor is always applied (``>= 0`` keeps every probability anyway).
    Also returns (max_instances,) int32: the RoI (row of ``rois``) each detection
    refines, -1 for padding rows.
    """
    class_ids = tf.argmax(probs, axis=1, output_type=tf.int32)
    indices = tf.stack([tf.range(tf.shape(probs)[0]), class_ids], axis=1)
    class_scores = tf.gather_nd(probs, indices)
    deltas_specific = tf.gather_nd(deltas, indices)
    refined = decode_boxes(rois, deltas_specific * tf.constant(
        np.asarray(bbox_std_dev), tf.float32))
    refined = clip_boxes(refined, window)

    keep = tf.where(class_ids > 0)[:, 0]
    if tf.is_tensor(min_confidence) or min_confidence:
        confident = tf.where(class_scores >= min_confidence)[:, 0]
        keep = tf.sets.intersection(keep[None], confident[None])
        keep = tf.sparse.to_dense(keep)[0]

    pre_class_ids = tf.gather(class_ids, keep)
    pre_scores = tf.gather(class_scores, keep)
    pre_rois = tf.gather(refined, keep)
    unique_class_ids = tf.unique(pre_class_ids)[0]

    def class_nms(class_id):
        ixs = tf.where(tf.equal(pre_class_ids, class_id))[:, 0]
        class_keep = tf.image.non_max_suppression(
            tf.gather(pre_rois, ixs), tf.gather(pre_scores, ixs),
            max_output_size=max_instances, iou_threshold=nms_threshold)
        class_keep = tf.gather(keep, tf.gather(ixs, class_keep))
        gap = max_instances - tf.shape(class_keep)[0]
        return tf.pad(class_keep, [(0, gap)], constant_values=-1)

    def all_classes_nms():
        per_class = tf.map_fn(class_nms, unique_class_ids,
                              fn_output_signature=tf.TensorSpec([None], tf.int64))
        return tf.reshape(per_class, [-1])

    # map_fn cannot stack zero results of unknown length: no candidate, nothing kept.
    nms_keep = tf.cond(tf.size(unique_class_ids) > 0, all_classes_nms,
                       lambda: tf.zeros([0], tf.int64))
    nms_keep = tf.gather(nms_keep, tf.where(nms_keep > -1)[:, 0])
    keep = tf.sets.intersection(keep[None], nms_keep[None])
    keep = tf.sparse.to_dense(keep)[0]

    kept_scores = tf.gather(class_scores, keep)
    count = tf.minimum(tf.shape(kept_scores)[0], max_instances)
    top = tf.math.top_k(kept_scores, k=count, sorted=True).indices
    keep = tf.gather(keep, top)
    detections = tf.concat([
        tf.gather(refined, keep),
        tf.cast(tf.gather(class_ids, keep), tf.float32)[:, None],
        tf.gather(class_scores, keep)[:, None]], axis=1)
    gap = max_instances - tf.shape(detections)[0]
    return (tf.pad(detections, [(0, gap), (0, 0)]),
            tf.pad(tf.cast(keep, tf.int32), [(0, gap)], constant_values=-1))


def detect_batch_with_rois(rois, probs, deltas, image_meta, bbox_std_dev, min_confidence,
                           nms_threshold, max_instances):
    """``refine_detections_with_rois`` over a batch: (B, N, ...) ->
    detections (B, max_instances, 6) and their RoI indices (B, max_instances) int32."""
    image_shape = meta_image_shape(image_meta)[0]
    window = norm_window(meta_window(image_meta), image_shape[:2])
    rows = max_instances if isinstance(max_instances, int) else None
    return tf.map_fn(
        lambda args: refine_detections_with_rois(*args, bbox_std_dev, min_confidence,
                                                 nms_threshold, max_instances),
        (rois, probs, deltas, window),
        fn_output_signature=(tf.TensorSpec([rows, 6], tf.float32),
                             tf.TensorSpec([rows], tf.int32)))


def detect_batch(rois, probs, deltas, image_meta, bbox_std_dev, min_confidence,
                 nms_threshold, max_instances):
    """``refine_detections_with_rois``' detections over a batch: (B, N, ...) ->
    (B, max_instances, 6)."""
    return detect_batch_with_rois(rois, probs, deltas, image_meta, bbox_std_dev,
                                  min_confidence, nms_threshold, max_instances)[0]


class DetectionLayer(keras.layers.Layer):
    """Classified RoIs -> (B, DETECTION_MAX_INSTANCES, 6) normalised detections."""

    def __init__(self, config, **kwargs):
        super().__init__(**kwargs)
        self.config = config

    def get_config(self):
        cfg = self.config
        return {**super().get_config(), "config": {
            "BBOX_STD_DEV": [float(v) for v in cfg.BBOX_STD_DEV],
            "DETECTION_MIN_CONFIDENCE": cfg.DETECTION_MIN_CONFIDENCE,
            "DETECTION_MAX_INSTANCES": cfg.DETECTION_MAX_INSTANCES,
            "DETECTION_NMS_THRESHOLD": cfg.DETECTION_NMS_THRESHOLD}}

    @classmethod
    def from_config(cls, config):
        from types import SimpleNamespace
        config = dict(config)
        return cls(SimpleNamespace(**config.pop("config")), **config)

    def call(self, rois, probs, deltas, image_meta):
        cfg = self.config
        return detect_batch(rois, probs, deltas, image_meta, cfg.BBOX_STD_DEV,
                            cfg.DETECTION_MIN_CONFIDENCE, cfg.DETECTION_NMS_THRESHOLD,
                            cfg.DETECTION_MAX_INSTANCES)

    def compute_output_shape(self, rois_shape, probs_shape, deltas_shape, image_meta_shape):
        return (rois_shape[0], self.config.DETECTION_MAX_INSTANCES, 6)
