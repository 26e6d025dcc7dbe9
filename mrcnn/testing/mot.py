"""Tracking scores from a reader that isn't ours: TrackEval (the MOTChallenge's own
evaluation code, ``pip install trackeval``) reads a ground-truth file and a tracker's
MOTChallenge file from disk and scores them (CLEAR: MOTA, ID switches; Identity: IDF1).

Ground truth rows are ``frame,id,x,y,w,h,1,1,1`` (considered, class 1, fully visible).
"""
from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path

__all__ = ["ground_truth_row", "mot_scores"]


def ground_truth_row(frame: int, track_id: int, box) -> str:
    """One ground-truth line; ``box`` is ``[y1, x1, y2, x2]``, ``frame`` counts from 1."""
    y1, x1, y2, x2 = (int(v) for v in box)
    return f"{frame},{track_id},{x1},{y1},{x2 - x1},{y2 - y1},1,1,1\n"


def mot_scores(ground_truth: str, tracker: str, frames: int) -> dict:
    """``{"IDF1", "MOTA", "IDSW", "IDTP", "CLR_TP", "CLR_FN", "CLR_FP", "GT_IDs", "IDs"}``
    for a ``frames``-long sequence (box IoU >= 0.5, TrackEval's MOTChallenge reader)."""
    from trackeval.datasets import MotChallenge2DBox
    from trackeval.metrics import CLEAR, Identity
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "gt" / "clip" / "gt").mkdir(parents=True)
        (root / "gt" / "clip" / "gt" / "gt.txt").write_text(ground_truth)
        (root / "trackers" / "ours" / "data").mkdir(parents=True)
        (root / "trackers" / "ours" / "data" / "clip.txt").write_text(tracker)
        with contextlib.redirect_stdout(io.StringIO()):
            dataset = MotChallenge2DBox({
                "GT_FOLDER": str(root / "gt"), "TRACKERS_FOLDER": str(root / "trackers"),
                "SKIP_SPLIT_FOL": True, "SEQ_INFO": {"clip": int(frames)},
                "TRACKERS_TO_EVAL": ["ours"], "PRINT_CONFIG": False, "DO_PREPROC": False})
            raw = dataset.get_raw_seq_data("ours", "clip")
            data = dataset.get_preprocessed_seq_data(raw, "pedestrian")
            clear = CLEAR({"PRINT_CONFIG": False}).eval_sequence(data)
            identity = Identity({"PRINT_CONFIG": False}).eval_sequence(data)
    return {"IDF1": float(identity["IDF1"]), "MOTA": float(clear["MOTA"]),
            "IDSW": int(clear["IDSW"]), "IDTP": int(identity["IDTP"]),
            "CLR_TP": int(clear["CLR_TP"]), "CLR_FN": int(clear["CLR_FN"]),
            "CLR_FP": int(clear["CLR_FP"]), "GT_IDs": int(data["num_gt_ids"]),
            "IDs": int(data["num_tracker_ids"])}
