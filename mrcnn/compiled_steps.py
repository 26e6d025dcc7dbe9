"""The compiled (``tf.function``) steps inference runs, and what a run returns.

``MaskRCNN`` builds them once (``compile_steps``) on its network run with BatchNorm
folded (``mrcnn.folding.InferenceNetwork``) and its proposal layer; every run-time
setting is an input, so they trace once for good:

- ``classify``: molded images -> every stage up to the classified RoIs (``STAGES``)
  and the anchor of each proposal;
- ``detections``: the detection layer, with each detection's RoI;
- ``masks``: the mask head on the real detections only;
- ``heads``: an earlier run's RPN outputs and P2..P5 -> the proposal layer at
  another proposal count and NMS threshold, then the classifier (``classify``'s tail).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from mrcnn.config import Config
from mrcnn.layers import detect_batch_with_rois, propose

#: The intermediate tensors of a run, in network order.
STAGES = ("C2", "C3", "C4", "C5", "P2", "P3", "P4", "P5", "P6", "rpn_probs", "rpn_deltas",
          "proposals", "class_probs", "class_deltas")


@dataclass
class Timings:
    """Seconds spent in each step of the last ``detect()`` call."""
    mold: float = 0.0
    network: float = 0.0
    masks: float = 0.0
    unmold: float = 0.0
    input_shape: tuple = ()   # (h, w) the network saw
    precision: str = "fp32"   # what it computed in (mrcnn.precision)

    def as_dict(self) -> dict:
        return {"mold": self.mold, "network": self.network, "masks": self.masks,
                "unmold": self.unmold}


@dataclass
class NetworkOutputs:
    """What one batch through the network computed, in the molded frame (before unmolding)."""
    config: Config                 # the config of this run (overrides applied)
    molded: list                   # MoldedImage per image
    metas: np.ndarray              # (B, IMAGE_META_SIZE) float32
    anchors: np.ndarray            # (A, 4) normalised
    stages: dict                   # STAGES name -> tf.Tensor (batch first)
    detections: np.ndarray         # (B, DETECTION_MAX_INSTANCES, 6) normalised, zero-padded
    masks: np.ndarray              # (B, n, 28, 28) soft mask of each detection's own class
    timings: Timings
    # (B, POST_NMS_ROIS_INFERENCE) int32: index into ``anchors`` of the pre-NMS box each
    # proposal is (the anchor it grew from), -1 for padding rows
    proposal_anchors: np.ndarray
    # (B, DETECTION_MAX_INSTANCES) int32: the proposal row (RoI) each detection refines,
    # -1 for padding rows
    detection_rois: np.ndarray


class CompiledSteps(NamedTuple):
    """The ``tf.function``s of ``compile_steps``, in the order a run calls them."""
    classify: object
    detections: object
    masks: object
    heads: object


def compile_steps(cfg: Config, network, proposal_layer) -> CompiledSteps:
    """The four steps on ``network`` (an ``InferenceNetwork``) and ``proposal_layer``."""
    channels = cfg.IMAGE_SHAPE[2]
    spec_image = tf.TensorSpec([None, None, None, channels], tf.float32)
    spec_meta = tf.TensorSpec([None, cfg.IMAGE_META_SIZE], tf.float32)
    spec_boxes = tf.TensorSpec([None, None, 4], tf.float32)
    spec_map = tf.TensorSpec([None, None, None, cfg.TOP_DOWN_PYRAMID_SIZE], tf.float32)
    scalar = tf.TensorSpec([], tf.float32)

    @tf.function(input_signature=[spec_image, spec_meta, spec_boxes])
    def classify_step(images, metas, anchors):
        """Molded images -> every stage up to the classified RoIs, by name (STAGES),
        and "proposal_anchors" (see ``NetworkOutputs``)."""
        stages = network.features(images)
        proposals, proposal_anchors = proposal_layer.propose_with_anchors(
            stages["rpn_probs"], stages["rpn_deltas"], anchors)
        class_probs, class_deltas = network.classifier(
            proposals, metas, [stages[name] for name in ("P2", "P3", "P4", "P5")])
        return {**stages, "proposals": proposals, "class_probs": class_probs,
                "class_deltas": class_deltas, "proposal_anchors": proposal_anchors}

    @tf.function(input_signature=[tf.TensorSpec([None, None]), spec_boxes, spec_boxes,
                                  spec_meta] + [spec_map] * 4
                                 + [tf.TensorSpec([], tf.int32), scalar])
    def heads_step(objectness, rpn_deltas, anchors, metas, p2, p3, p4, p5,
                   proposal_count, nms_threshold):
        """An earlier run's RPN outputs and P2..P5 -> the proposal layer at another
        proposal count and NMS threshold, then the classifier (classify_step's tail)."""
        proposals, proposal_anchors = propose(
            objectness, rpn_deltas, anchors, proposal_count, nms_threshold,
            proposal_layer.pre_nms_limit, proposal_layer.rpn_bbox_std_dev)
        class_probs, class_deltas = network.classifier(proposals, metas, [p2, p3, p4, p5])
        return {"proposals": proposals, "proposal_anchors": proposal_anchors,
                "class_probs": class_probs, "class_deltas": class_deltas}

    @tf.function(input_signature=[spec_boxes, tf.TensorSpec([None, None, cfg.NUM_CLASSES]),
                                  tf.TensorSpec([None, None, cfg.NUM_CLASSES, 4]), spec_meta,
                                  scalar, scalar, tf.TensorSpec([], tf.int32)])
    def detections_step(rois, probs, deltas, metas, min_confidence, nms_threshold,
                        max_instances):
        """Classified RoIs -> (detections (B, D, 6), their RoI indices (B, D) int32)."""
        return detect_batch_with_rois(rois, probs, deltas, metas, cfg.BBOX_STD_DEV,
                                      min_confidence, nms_threshold, max_instances)

    @tf.function(input_signature=[spec_boxes, tf.TensorSpec([], tf.int32), spec_meta,
                                  tf.TensorSpec([None, None], tf.int32)] + [spec_map] * 4)
    def masks_step(slots, count, metas, class_ids, p2, p3, p4, p5):
        masks = network.masks(slots, count, metas, [p2, p3, p4, p5])
        # (B, N, h, w, C) -> the channel of each detection's own class: (B, N, h, w)
        masks = tf.transpose(masks, [0, 1, 4, 2, 3])
        return tf.gather(masks, class_ids, axis=2, batch_dims=2)

    return CompiledSteps(classify_step, detections_step, masks_step, heads_step)
