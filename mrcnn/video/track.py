"""Track ids across frames: each detection gets the id of the object it continues.

A small online tracker (numpy and scipy only). Before it sees a frame,
:func:`distinct_objects` keeps one detection per object (per-class NMS can leave one
shape found both as a square and as a triangle). Then:

1. Each live track predicts where its object is now: its last box and mask moved on by
   its velocity (the box centre's smoothed motion per frame).
2. Detections and predictions of the same class are matched by optimal assignment
   (``scipy.optimize.linear_sum_assignment``) on ``mask_weight * mask IoU +
   (1 - mask_weight) * box IoU``; a pair below ``min_overlap`` is never matched.
3. What is left is matched, same class again, on the distance between the predicted
   and the detected box centres, within ``max_jump`` box diagonals (the larger of the
   two boxes) plus the predicted motion: a fast object sampled at 2 frames per second
   may not overlap its last position at all, and a half-hidden one's box shrinks.
4. Last, a leftover detection of another class that overlaps a leftover track's
   prediction by ``relabel_overlap`` continues it: the classifier changed its mind, not
   the object. A track's class is the one most of its detections had.
5. A detection left over starts a new track (ids count from 1); a track left over is
   missed, and is dropped after ``max_missed`` missed frames in a row, so an object
   hidden for a moment comes back under its id.

Why not ``trackers``' ByteTrack: it matches boxes only, without classes (two crossing
objects are told apart here by their masks), and ``trackers`` 2.x requires
``opencv-python``, the GUI build with a second FFmpeg, which the app's runtime would carry
for nothing else (the tests' TrackEval brings it to the test environment only).

Shape shorthand: boxes ``(N, 4)`` ``[y1, x1, y2, x2]`` in image pixels (the engine's
``rois``); a mask is ``(window, crop)`` as in :class:`mrcnn.results.CompactMasks`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from mrcnn.box_ops import box_iou
from mrcnn.results import PER_DETECTION_KEYS, PROVENANCE_KEYS, CompactMasks, filter_detections

__all__ = ["MISSED_SECONDS", "TrackSummary", "TrackedFrame", "Tracker", "distinct_objects",
           "missed_frames", "summarise_tracks", "track_results"]

#: How long a track outlives its object's last detection (at least 3 sampled frames).
MISSED_SECONDS = 0.5


def missed_frames(fps: float) -> int:
    """Missed frames a track survives at ``fps`` sampled frames per second."""
    return max(3, int(round(MISSED_SECONDS * fps)))


@dataclass
class _Track:
    id: int
    votes: Counter               # class id -> detections of that class so far
    box: np.ndarray              # (4,) float, last seen
    window: tuple | None         # (y1, x1, y2, x2) of the last mask's crop
    crop: np.ndarray | None      # bool crop of the last mask
    velocity: np.ndarray         # (2,) centre motion per frame (dy, dx)
    missed: int = 0

    @property
    def class_id(self) -> int:
        """The class most of its detections had (the first one on a tie)."""
        return self.votes.most_common(1)[0][0]

    def shift(self) -> np.ndarray:
        """Where the object is predicted to have moved since it was last seen."""
        return self.velocity * (self.missed + 1)

    def predicted_box(self) -> np.ndarray:
        dy, dx = self.shift()
        return self.box + np.array([dy, dx, dy, dx])


def _centre(box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0])


def _diagonal(box) -> float:
    return float(np.hypot(box[2] - box[0], box[3] - box[1]))


def _mask_iou(window_a, crop_a, window_b, crop_b) -> float:
    """IoU of two masks, each a bool crop placed at its window's top-left corner."""
    area_a, area_b = int(crop_a.sum()), int(crop_b.sum())
    if area_a == 0 or area_b == 0:
        return 0.0
    top, left = max(window_a[0], window_b[0]), max(window_a[1], window_b[1])
    bottom = min(window_a[0] + crop_a.shape[0], window_b[0] + crop_b.shape[0])
    right = min(window_a[1] + crop_a.shape[1], window_b[1] + crop_b.shape[1])
    if bottom <= top or right <= left:
        return 0.0
    a = crop_a[top - window_a[0]:bottom - window_a[0], left - window_a[1]:right - window_a[1]]
    b = crop_b[top - window_b[0]:bottom - window_b[0], left - window_b[1]:right - window_b[1]]
    inter = int(np.count_nonzero(a & b))
    return inter / float(area_a + area_b - inter)


class Tracker:
    """Online tracking, one frame at a time: ``ids = tracker.update(boxes, class_ids,
    masks)`` gives each detection its track id (``(N,) int64``, from 1)."""

    def __init__(self, max_missed: int = 3, min_overlap: float = 0.1,
                 mask_weight: float = 0.5, max_jump: float = 1.5, smoothing: float = 0.5,
                 relabel_overlap: float = 0.5):
        self.max_missed = int(max_missed)
        self.min_overlap = float(min_overlap)
        self.mask_weight = float(mask_weight)
        self.max_jump = float(max_jump)
        self.smoothing = float(smoothing)
        self.relabel_overlap = float(relabel_overlap)
        self.tracks: list[_Track] = []
        self.next_id = 1

    def update(self, boxes, class_ids, masks=None) -> np.ndarray:
        """``boxes`` ``(N, 4)``, ``class_ids`` ``(N,)``, ``masks`` a
        :class:`~mrcnn.results.CompactMasks` of N masks, matterport's ``(H, W, N)`` array,
        or None (boxes only)."""
        if masks is not None and not isinstance(masks, CompactMasks):
            masks = CompactMasks.from_full(masks)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        class_ids = np.asarray(class_ids, np.int64).reshape(-1)
        crops = ([(tuple(int(v) for v in masks.windows[i]), masks.crop(i))
                  for i in range(len(masks))] if masks is not None else [None] * len(boxes))
        ids = np.zeros(len(boxes), np.int64)
        matched_tracks: set[int] = set()
        for track_index, det in self._match(boxes, class_ids, crops):
            track = self.tracks[track_index]
            seen = track.missed + 1
            motion = (_centre(boxes[det]) - _centre(track.box)) / seen
            track.velocity = self.smoothing * track.velocity + (1 - self.smoothing) * motion
            track.box = boxes[det]
            track.window, track.crop = crops[det] or (None, None)
            track.missed = 0
            track.votes[int(class_ids[det])] += 1
            ids[det] = track.id
            matched_tracks.add(track_index)
        for det in np.flatnonzero(ids == 0):
            window, crop = crops[det] or (None, None)
            self.tracks.append(_Track(self.next_id, Counter([int(class_ids[det])]), boxes[det],
                                      window, crop, np.zeros(2)))
            ids[det] = self.next_id
            self.next_id += 1
        kept = []
        for index, track in enumerate(self.tracks):
            if index not in matched_tracks and track.id not in ids:
                track.missed += 1
            if track.missed <= self.max_missed:
                kept.append(track)
        self.tracks = kept
        return ids

    def _similarity(self, boxes, crops) -> np.ndarray:
        """``(tracks, detections)`` overlap of each track's prediction with each detection,
        whatever their classes."""
        if not self.tracks or not len(boxes):
            return np.zeros((len(self.tracks), len(boxes)))
        predicted = np.stack([t.predicted_box() for t in self.tracks])
        overlap = box_iou(predicted, boxes).astype(np.float64)
        for t, track in enumerate(self.tracks):
            dy, dx = np.rint(track.shift()).astype(int)
            for d in range(len(boxes)):
                if track.crop is not None and crops[d] is not None and overlap[t, d] > 0:
                    window = (track.window[0] + dy, track.window[1] + dx)
                    mask = _mask_iou(window, track.crop, crops[d][0], crops[d][1])
                    overlap[t, d] = (self.mask_weight * mask
                                     + (1 - self.mask_weight) * overlap[t, d])
        return overlap

    def _match(self, boxes, class_ids, crops) -> list[tuple[int, int]]:
        overlap = self._similarity(boxes, crops)
        same_class = np.array([[t.class_id == c for c in class_ids] for t in self.tracks],
                              bool).reshape(overlap.shape)
        pairs = []
        if overlap.size:
            aware = np.where(same_class, overlap, -1.0)
            rows, cols = linear_sum_assignment(-aware)
            pairs = [(r, c) for r, c in zip(rows, cols) if aware[r, c] >= self.min_overlap]
        free_tracks = [t for t in range(len(self.tracks)) if t not in {r for r, _ in pairs}]
        free_dets = [d for d in range(len(boxes)) if d not in {c for _, c in pairs}]
        if free_tracks and free_dets:
            distance = np.full((len(free_tracks), len(free_dets)), np.inf)
            for i, t in enumerate(free_tracks):
                track = self.tracks[t]
                predicted = track.predicted_box()
                for j, d in enumerate(free_dets):
                    if track.class_id == class_ids[d]:
                        reach = (self.max_jump * max(_diagonal(track.box), _diagonal(boxes[d]))
                                 + np.linalg.norm(track.shift()))
                        gap = np.linalg.norm(_centre(predicted) - _centre(boxes[d]))
                        if gap <= reach:
                            distance[i, j] = gap / max(reach, 1e-6)
            finite = np.where(np.isfinite(distance), distance, 1e6)
            rows, cols = linear_sum_assignment(finite)
            pairs += [(free_tracks[r], free_dets[c]) for r, c in zip(rows, cols)
                      if np.isfinite(distance[r, c])]
        # The classifier changed its mind, not the object: a detection of another class
        # where a track is predicted, with nothing else to match either.
        free_tracks = [t for t in range(len(self.tracks)) if t not in {r for r, _ in pairs}]
        free_dets = [d for d in range(len(boxes)) if d not in {c for _, c in pairs}]
        if free_tracks and free_dets:
            left = overlap[np.ix_(free_tracks, free_dets)]
            rows, cols = linear_sum_assignment(-left)
            pairs += [(free_tracks[r], free_dets[c]) for r, c in zip(rows, cols)
                      if left[r, c] >= self.relabel_overlap]
        return pairs


def distinct_objects(result: dict, max_overlap: float = 0.7) -> dict:
    """``result`` without the detections whose mask overlaps a better-scored one's by more
    than ``max_overlap`` (IoU), whatever the class: per-class NMS leaves one object
    detected as a square and as a triangle, and only one of them can be tracked."""
    masks = result.get("masks")
    count = len(result["class_ids"])
    if count < 2 or not isinstance(masks, CompactMasks):
        return result
    boxes = np.asarray(result["rois"], np.float64)
    order = np.argsort(-np.asarray(result["scores"]), kind="stable")
    near = box_iou(boxes, boxes) > 0
    crops: dict[int, np.ndarray] = {}

    def crop(i):
        if i not in crops:
            crops[i] = masks.crop(i)
        return crops[i]
    kept: list[int] = []
    for i in order:
        window = tuple(int(v) for v in masks.windows[i])
        if not any(near[i, k] and _mask_iou(window, crop(i), tuple(int(v) for v in
                                                                 masks.windows[k]), crop(k))
                   > max_overlap for k in kept):
            kept.append(int(i))
    if len(kept) == count:
        return result
    return _take(result, sorted(kept))


def _take(result: dict, indices) -> dict:
    """The detections at ``indices`` (every per-detection key, the masks included)."""
    indices = np.asarray(indices, np.int64)
    out = dict(result)
    for key in (*PER_DETECTION_KEYS, *PROVENANCE_KEYS):
        if key in result:
            out[key] = np.asarray(result[key])[indices]
    out["masks"] = result["masks"].take(indices)
    return out


@dataclass
class TrackedFrame:
    """One sampled frame's detections above the threshold, with their track ids."""
    index: int                 # the sample's index (0-based)
    time_s: float              # its time in the clip
    result: dict               # rois, class_ids, scores, masks (kept detections only)
    track_ids: np.ndarray      # (N,) int64, one per kept detection


def track_results(frames, min_score: float = 0.5, **tracker_settings) -> list[TrackedFrame]:
    """Track ids for every frame of an analysed clip at ``min_score``.

    ``frames`` is a sequence of ``(index, time_s, result)``, ``result`` an engine result
    dict (``detect_compact``'s, made at a lower threshold); only detections scoring
    ``min_score`` or more are kept and tracked. Cheap: a slider move reruns this, not
    the network.
    """
    tracker = Tracker(**tracker_settings)
    out = []
    for index, time_s, result in frames:
        kept = distinct_objects(filter_detections(result, min_score))
        ids = tracker.update(kept["rois"], kept["class_ids"], kept.get("masks"))
        out.append(TrackedFrame(int(index), float(time_s), kept, ids))
    return out


@dataclass
class TrackSummary:
    """One track over a clip: what the page's table shows and where its best view is."""
    id: int
    class_id: int              # the class most of its detections had
    first_s: float
    last_s: float
    frames: int                # sampled frames it was seen in
    best_score: float
    best_frame: int            # position in the tracked list of its best-scored detection
    best_detection: int        # that detection's index in its frame


def summarise_tracks(tracked) -> list[TrackSummary]:
    """A :class:`TrackSummary` per track id of ``tracked`` (TrackedFrames), by id."""
    summaries: dict[int, TrackSummary] = {}
    votes: dict[int, Counter] = {}
    for position, frame in enumerate(tracked):
        scores = np.asarray(frame.result["scores"])
        class_ids = np.asarray(frame.result["class_ids"])
        for detection, track_id in enumerate(frame.track_ids):
            track_id, score = int(track_id), float(scores[detection])
            votes.setdefault(track_id, Counter())[int(class_ids[detection])] += 1
            summary = summaries.get(track_id)
            if summary is None:
                summaries[track_id] = TrackSummary(track_id, int(class_ids[detection]),
                                                   frame.time_s, frame.time_s, 1, score,
                                                   position, detection)
                continue
            summary.last_s = frame.time_s
            summary.frames += 1
            if score > summary.best_score:
                summary.best_score, summary.best_frame = score, position
                summary.best_detection = detection
    for track_id, summary in summaries.items():
        summary.class_id = votes[track_id].most_common(1)[0][0]
    return [summaries[k] for k in sorted(summaries)]
