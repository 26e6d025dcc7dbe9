"""What if a setting were different: one run's detections again, without the backbone.

Every function starts from one run's record (:class:`mrcnn.intermediates.Intermediates`)
and says what changes against that run (the default):

- :func:`nms_what_if`: the detection layer's NMS at another IoU threshold, per class
  (the reference) or over all classes together; numpy on the record's refined RoI
  boxes and scores, so the RoIs compared are the very same.
- :func:`masks_what_if`: the soft masks cut at another threshold; numpy.
- :func:`rerun_heads`: another RPN NMS threshold or number of proposals that reach
  the heads; the proposal layer, the classifier, the detection layer and the mask
  head run again on the record's P2..P5 (``MaskRCNN.heads_from_pyramid``), the
  backbone and the RPN do not. Its objects are matched to the run's by class and
  box overlap (:func:`match_objects`), since the RoIs themselves differ.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from mrcnn.box_ops import box_iou
from mrcnn.explain import detections_at, paste_soft_mask
from mrcnn.intermediates import HEAD_MAPS, Intermediates
from mrcnn.molding import compact_masks, unmold_boxes
from mrcnn.results import CompactMasks

#: A rerun's object is the run's object of the same class when their boxes overlap this much.
SAME_OBJECT_IOU = 0.5


@dataclass
class NmsChange:
    """The detection layer's choice at another NMS setting, as RoI indices."""
    kept: np.ndarray        # RoIs kept, best first (at most DETECTION_MAX_INSTANCES)
    gained: np.ndarray      # kept now, not detections of the run
    lost: np.ndarray        # detections of the run, not kept now


def nms_what_if(record: Intermediates, nms_threshold: float,
                class_agnostic: bool = False) -> NmsChange:
    """The run's candidates (its confidence cut) through NMS at ``nms_threshold``,
    per class or, with ``class_agnostic``, all classes together."""
    kept = detections_at(record, record.detection_min_confidence, nms_threshold,
                         class_agnostic)["kept"]
    default = record.detection_rois
    return NmsChange(kept, kept[~np.isin(kept, default)], default[~np.isin(default, kept)])


@dataclass
class MaskChange:
    """The run's masks cut at another threshold, against the engine's cut at 0.5."""
    threshold: float
    masks: np.ndarray           # (h, w, N) bool
    gained_pixels: np.ndarray   # (N,) inside now, outside at 0.5
    lost_pixels: np.ndarray     # (N,) outside now, inside at 0.5
    vanished: np.ndarray        # detections whose mask is empty now and was not at 0.5
    appeared: np.ndarray        # detections whose mask was empty at 0.5 and is not now


def masks_what_if(record: Intermediates, threshold: float) -> MaskChange:
    """Each detection's soft mask stretched over its box and cut at ``>= threshold``."""
    h, w = record.image.shape[:2]
    masks = np.zeros((h, w, len(record.class_ids)), bool)
    for i, (soft, box) in enumerate(zip(record.soft_masks, record.rois)):
        masks[:, :, i] = paste_soft_mask(soft, box, record.image.shape) >= np.float32(threshold)
    default = record.masks
    now, before = masks.any(axis=(0, 1)), default.any(axis=(0, 1))
    return MaskChange(
        float(threshold), masks,
        gained_pixels=(masks & ~default).sum(axis=(0, 1)),
        lost_pixels=(default & ~masks).sum(axis=(0, 1)),
        vanished=np.flatnonzero(before & ~now), appeared=np.flatnonzero(now & ~before))


@dataclass
class HeadsRerun:
    """The proposal layer and the heads run again on a record's feature maps."""
    rpn_nms_threshold: float
    proposal_slots: int         # POST_NMS_ROIS_INFERENCE of the rerun
    proposal_count: int         # real proposals NMS kept (at most proposal_slots)
    proposals: np.ndarray       # (proposal_count, 4) normalised
    rois: np.ndarray            # (N, 4) int32 original-image pixels, as detect() returns
    class_ids: np.ndarray       # (N,) int32
    scores: np.ndarray          # (N,) float32
    masks: CompactMasks
    roi_indices: np.ndarray     # (N,) int32 the RoI of each detection
    seconds: float

    @property
    def result(self) -> dict:
        """The detections in ``detect_compact()``'s format (without class_probs)."""
        return {"rois": self.rois, "class_ids": self.class_ids, "scores": self.scores,
                "masks": self.masks, "roi_indices": self.roi_indices}

    @property
    def nbytes(self) -> int:
        return int(self.proposals.nbytes + self.rois.nbytes + self.masks.nbytes)


def rerun_heads(model, record: Intermediates, rpn_nms_threshold: float,
                proposal_count: int) -> HeadsRerun:
    """``record``'s image through the proposal layer (NMS at ``rpn_nms_threshold``,
    ``proposal_count`` proposals kept) and the heads again, on its cached P2..P5 and
    RPN outputs. With the same settings in the config, ``model.detect()`` gives
    exactly these detections (``tests/test_what_if.py``)."""
    started = time.perf_counter()
    outputs = model.heads_from_pyramid(
        [record.pyramid[name][None] for name in HEAD_MAPS], record.objectness[None],
        record.rpn_deltas[None], record.anchors, record.image_meta[None],
        RPN_NMS_THRESHOLD=float(rpn_nms_threshold),
        POST_NMS_ROIS_INFERENCE=int(proposal_count))
    real = int((outputs.proposal_anchors[0] >= 0).sum())
    rows, rois, class_ids, scores = unmold_boxes(
        outputs.detections[0], record.image.shape, record.molded_shape + (3,), record.window)
    return HeadsRerun(
        rpn_nms_threshold=float(rpn_nms_threshold), proposal_slots=int(proposal_count),
        proposal_count=real, proposals=outputs.stages["proposals"][0, :real].numpy(),
        rois=rois, class_ids=class_ids, scores=scores,
        masks=compact_masks(outputs.masks[0], rows, rois, record.image.shape),
        roi_indices=outputs.detection_rois[0, rows], seconds=time.perf_counter() - started)


def match_objects(before_rois, before_class_ids, after_rois, after_class_ids,
                  min_iou: float = SAME_OBJECT_IOU) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pair two detection lists (each best first): an object after is the unpaired
    object before of the same class whose box overlaps it most, if by IoU >= ``min_iou``.

    Returns (pairs (k, 2) [before, after], gained: indices into after with no pair,
    lost: indices into before with no pair).
    """
    before_rois = np.asarray(before_rois, np.float32).reshape(-1, 4)
    after_rois = np.asarray(after_rois, np.float32).reshape(-1, 4)
    free = np.ones(len(before_rois), bool)
    pairs = []
    for j, (box, class_id) in enumerate(zip(after_rois, after_class_ids)):
        options = np.flatnonzero(free & (np.asarray(before_class_ids) == class_id))
        if len(options) == 0:
            continue
        overlaps = box_iou(box[None], before_rois[options], either_order=True)[0]
        best = int(np.argmax(overlaps))
        if overlaps[best] >= min_iou:
            free[options[best]] = False
            pairs.append((int(options[best]), j))
    pairs = np.array(pairs, np.int64).reshape(-1, 2)
    gained = np.setdiff1d(np.arange(len(after_rois)), pairs[:, 1])
    return pairs, gained, np.flatnonzero(free)
