"""One detection followed back through the network, from one run's record (numpy only).

Every link is the run's own: the anchor each proposal grew from
(``Intermediates.proposal_anchors``) and the RoI each detection refined
(``Intermediates.roi_indices``) are the proposal and detection layers'
selections, kept by the engine; nothing here re-runs or re-derives them.

- :func:`follow_detection`: the anchor, its RPN refinement into a proposal, the
  proposal's pyramid level and RoI-align crops, the class probabilities, the
  refinement into the detection box, the same-class boxes NMS removed in its
  favour, and its 28x28 soft mask.
- :func:`match_selection`: which of the run's detections is an object selected
  elsewhere (the main page's inspector), by class and box overlap.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mrcnn.box_ops import box_iou
from mrcnn.intermediates import Intermediates

#: An object selected elsewhere is this run's detection when the boxes overlap this much.
MATCH_IOU = 0.5


@dataclass
class ObjectTrail:
    """Where detection ``detection`` of a run came from, stage by stage (normalised boxes)."""
    detection: int              # index into the run's final detections (rois, class_ids...)
    roi: int                    # its RoI: row of the proposals the heads classified
    anchor: int                 # index into the run's anchors
    anchor_level: int           # 2..6: the RPN level (P2..P6) the anchor sits on
    anchor_scale: int           # pixels
    anchor_ratio: float         # width / height
    anchor_box: np.ndarray      # (4,)
    objectness: float           # the RPN's foreground probability for the anchor
    pre_nms_rank: int           # its place among the PRE_NMS_LIMIT best anchors (0 = best)
    rpn_deltas: np.ndarray      # (4,) dy, dx, log dh, log dw, times RPN_BBOX_STD_DEV
    proposal: np.ndarray        # (4,) the anchor refined by those deltas, clipped
    roi_level: int              # 2..5: the pyramid level the classifier read the RoI from
    crop_classifier: np.ndarray  # (7, 7, C) the classifier's input
    class_probs: np.ndarray     # (NUM_CLASSES,) the classifier's softmax
    class_deltas: np.ndarray    # (4,) the detected class's deltas, times BBOX_STD_DEV
    box: np.ndarray             # (4,) the proposal refined by them, clipped to the window
    mask_level: int             # 2..5: the level the mask head read the box from
    crop_mask: np.ndarray       # (14, 14, C) the mask head's input
    suppressed: np.ndarray      # (k,) RoIs per-class NMS removed in its favour, best first
    suppressed_iou: np.ndarray  # (k,) their IoU with ``box``
    soft_mask: np.ndarray       # (28, 28) float32 its class's sigmoid mask, before pasting


def anchor_level(record: Intermediates, anchor: int) -> int:
    """The RPN level (2..6) an anchor index belongs to (anchors are stored level by level)."""
    return 2 + int(np.searchsorted(np.cumsum(record.anchors_per_level), anchor, side="right"))


def suppressed_in_favour(record: Intermediates, roi: int) -> tuple[np.ndarray, np.ndarray]:
    """The RoIs per-class NMS dropped because ``roi`` was kept: same class, candidates
    at the run's confidence cut, visited after it (lower score, or an equal score and a
    higher index) and overlapping its refined box by IoU above the NMS threshold.
    Returns (RoI indices, their IoU), best score first.
    """
    class_id = record.roi_class_ids[roi]
    candidate = record.roi_class_ids == class_id
    if record.detection_min_confidence:
        candidate &= record.roi_scores >= np.float32(record.detection_min_confidence)
    order = np.flatnonzero(candidate)
    order = order[np.argsort(-record.roi_scores[order], kind="stable")]
    later = order[int(np.flatnonzero(order == roi)[0]) + 1:]
    boxes = np.asarray(record.roi_refined_boxes, np.float32)
    overlaps = box_iou(boxes[roi][None], boxes[later], either_order=True)[0]   # as NMS
    removed = overlaps > np.float32(record.detection_nms_threshold)
    return later[removed], overlaps[removed]


def follow_detection(record: Intermediates, detection: int) -> ObjectTrail:
    """The trail of final detection ``detection`` (an index into ``record.class_ids``)."""
    roi = int(record.roi_indices[detection])
    anchor = int(record.proposal_anchors[roi])
    level = anchor_level(record, anchor)
    first = int(record.anchors_per_level[:level - 2].sum())
    rank = int(np.flatnonzero(record.pre_nms_anchor_ids == anchor)[0])
    suppressed, overlaps = suppressed_in_favour(record, roi)
    return ObjectTrail(
        detection=detection, roi=roi, anchor=anchor, anchor_level=level,
        anchor_scale=record.anchor_scales[level - 2],
        anchor_ratio=record.anchor_ratios[(anchor - first) % len(record.anchor_ratios)],
        anchor_box=record.anchors[anchor], objectness=float(record.objectness[anchor]),
        pre_nms_rank=rank, rpn_deltas=record.pre_nms_deltas[rank],
        proposal=record.proposals[roi], roi_level=int(record.proposal_levels[roi]),
        crop_classifier=record.detection_crops_classifier[detection],
        class_probs=record.class_probs[roi], class_deltas=record.roi_deltas[roi],
        box=record.roi_refined_boxes[roi], mask_level=int(record.detection_levels[detection]),
        crop_mask=record.detection_crops_mask[detection],
        suppressed=suppressed, suppressed_iou=overlaps,
        soft_mask=record.soft_masks[detection])


@dataclass
class SelectionMatch:
    """Which detection of a run an object selected elsewhere is, or why none is."""
    detection: int | None       # index into the run's final detections, None when unmatched
    overlap: float              # IoU of the boxes (the best one, when unmatched)
    reason: str                 # one sentence for the visitor when unmatched, else ""


def match_selection(record: Intermediates, class_id: int, box, score: float | None = None
                    ) -> SelectionMatch:
    """The run's detection of class ``class_id`` whose box (original-image pixels
    [y1, x1, y2, x2]) overlaps ``box`` most, if by IoU >= ``MATCH_IOU``.

    ``score`` (the object's score where it was selected) explains a miss: a score
    below this run's confidence cut means the run kept no such detection.
    """
    name = record.class_name(class_id)
    same = np.flatnonzero(record.class_ids == class_id)
    overlaps = box_iou(np.asarray(box, np.float32).reshape(1, 4),
                       record.rois[same].astype(np.float32), either_order=True)[0]
    best = int(np.argmax(overlaps)) if len(same) else -1
    if best >= 0 and overlaps[best] >= MATCH_IOU:
        return SelectionMatch(int(same[best]), float(overlaps[best]), "")
    cut = record.detection_min_confidence
    if score is not None and cut and score < cut:
        reason = (f"The selected {name} scored {score:.2f}, below this lesson's confidence "
                  f"threshold of {cut:g}, so the network's own selection dropped it here.")
    elif best < 0:
        reason = f"This run has no {name} among its detections."
    else:
        reason = (f"No {name} here overlaps the selected box enough: the closest has IoU "
                  f"{overlaps[best]:.2f} (a match needs {MATCH_IOU:g}).")
    return SelectionMatch(None, float(overlaps[best]) if best >= 0 else 0.0, reason)
