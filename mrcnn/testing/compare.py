"""Comparing two detection answers within float32 rounding (tests and the load benchmark).

An answer is the HTTP API's list of detection dicts (``mrcnn.export.coco.detections_json``):
``{"class_id", "class_name", "score", "box", "mask": RLE}``, best score first.
"""
from __future__ import annotations

from mrcnn.export.coco import decode_mask

__all__ = ["detections_difference"]


def detections_difference(expected: list[dict], actual: list[dict], score_tolerance: float = 1e-3,
                          mask_tolerance: float = 0.01, max_unmatched: int = 1) -> str | None:
    """``None`` when two API detection lists agree, else the first difference.

    They agree when every expected detection has its own counterpart with the
    same class, a box within 1 px, a score within ``score_tolerance`` and a mask
    that differs in at most ``mask_tolerance`` of its area (2 pixels at least),
    and ``actual`` is ordered by score. Use it to compare a *batched* answer with
    a one-image answer: TensorFlow's oneDNN kernels round float32 sums
    differently for a batch than for one image (about 1e-7 relative). That can
    swap detections whose scores tie, flip a mask pixel whose probability sits
    on 0.5, or let a neighbouring, almost identical proposal survive NMS (same
    box, score off by ~1e-4). A different TensorFlow thread count (a replica
    pinned to its CPU share, the app using every core) can flip a mask pixel
    the same way. With ``TF_ENABLE_ONEDNN_OPTS=0`` batched and single results
    are identical bit for bit.

    Up to ``max_unmatched`` detections may lack a counterpart (the engine's own
    acceptance rule against the reference: "all but at most one matched"): a
    near-degenerate box, one pixel wide at the image border, can come out of
    the two roundings with a different size. An answer meant for another image
    shares no detections with this one, so cross-talk is still caught.
    """
    if abs(len(expected) - len(actual)) > max_unmatched:
        return f"{len(actual)} detections instead of {len(expected)}"
    scores = [float(d["score"]) for d in actual]
    if scores != sorted(scores, reverse=True):
        return "detections are not ordered by score"
    unmatched = list(range(len(actual)))
    missing = []
    for i, want in enumerate(expected):
        match = next((j for j in unmatched if _same_detection(want, actual[j], score_tolerance,
                                                             mask_tolerance)), None)
        if match is None:
            missing.append(f"expected detection {i} ({want['class_name']}, score "
                           f"{want['score']:.6f}, box {want['box']}) has no counterpart")
        else:
            unmatched.remove(match)
    if len(missing) > max_unmatched or len(unmatched) > max_unmatched:
        return "; ".join(missing) or f"{len(unmatched)} detections have no counterpart"
    return None


def _same_detection(want: dict, got: dict, score_tolerance: float, mask_tolerance: float) -> bool:
    if want["class_id"] != got["class_id"] or want["class_name"] != got["class_name"]:
        return False
    if abs(float(want["score"]) - float(got["score"])) > score_tolerance:
        return False
    if any(abs(a - b) > 1 for a, b in zip(want["box"], got["box"])):
        return False
    if want["mask"] == got["mask"]:
        return True
    if want["mask"]["size"] != got["mask"]["size"]:
        return False
    wanted, given = decode_mask(want["mask"]), decode_mask(got["mask"])
    return int((wanted != given).sum()) <= max(2, mask_tolerance * int(wanted.sum()))
