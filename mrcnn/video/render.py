"""Drawing a tracked frame: each track keeps one colour (palette entry = its id) and its
label reads ``person #3 0.92``; masks, outlines and boxes as on the photo page
(:func:`mrcnn.draw.overlay.draw_detections`)."""
from __future__ import annotations

import numpy as np

from mrcnn.classes import class_name
from mrcnn.draw.overlay import draw_detections, palette

__all__ = ["draw_tracked", "track_colours", "track_label"]


def track_colours(track_ids) -> np.ndarray:
    """``(N, 3) uint8``: track ``i``'s colour is ``palette`` entry ``i`` in every frame."""
    ids = np.asarray(track_ids, np.int64).reshape(-1)
    if not ids.size:
        return np.zeros((0, 3), np.uint8)
    return palette(int(ids.max()) + 1)[ids]


def track_label(class_names, class_id: int, track_id: int, score: float | None = None) -> str:
    """``"person #3 0.92"`` (the score left out when None)."""
    text = f"{class_name(class_names, int(class_id))} #{int(track_id)}"
    return text if score is None else f"{text} {float(score):.2f}"


def draw_tracked(image, frame, class_names, mask_alpha: float = 0.5) -> np.ndarray:
    """``image`` with a :class:`~mrcnn.video.track.TrackedFrame`'s detections drawn in
    their tracks' colours and labels; a new ``H x W x 3 uint8``."""
    result = frame.result
    ids = frame.track_ids
    # The overlay labels detection i with class_names[class_ids[i]] and its score: hand
    # it one name per detection ("person #3") and the detection's own index as class id.
    names = [track_label(class_names, c, t) for c, t in zip(result["class_ids"], ids)]
    per_detection = {**result, "class_ids": np.arange(len(ids), dtype=np.int32)}
    return draw_detections(image, per_detection, names, colors=track_colours(ids),
                           mask_alpha=mask_alpha)
