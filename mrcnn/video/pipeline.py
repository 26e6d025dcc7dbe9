"""A whole clip in one pass: decode -> detect -> track -> draw -> encode, and the exports.

The command line and the benchmark use :func:`analyse_clip`; the app runs the same
steps one frame at a time through its fair queue. Frames stream through: only the
current frame is held in full, the detections of all frames stay compact (masks as RLE).
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from mrcnn.results import filter_detections
from mrcnn.video.decode import DEFAULT_FPS, ClipInfo, probe, sample_frames, sample_times
from mrcnn.video.encode import H264Writer
from mrcnn.video.export import FrameArchive, coco_video_document, jpeg_bytes, mot_csv
from mrcnn.video.render import draw_tracked
from mrcnn.video.track import TrackedFrame, Tracker, distinct_objects, missed_frames

__all__ = ["VideoReport", "analyse_clip", "output_paths", "planned_samples"]


@dataclass
class VideoReport:
    """What :func:`analyse_clip` wrote and how long each step took (seconds)."""
    info: ClipInfo
    fps: float                       # the sampled rate (the output clip's rate)
    tracked: list[TrackedFrame]
    paths: dict[str, Path]           # "video", "mot", "coco", "zip"
    seconds: dict = field(default_factory=dict)   # decode, network, track, draw, encode, export

    @property
    def track_count(self) -> int:
        return len({int(i) for frame in self.tracked for i in frame.track_ids})


def output_paths(input_path, out_dir) -> dict[str, Path]:
    """Where the outputs of ``input_path`` go in ``out_dir`` (the MOT file's name says mot)."""
    stem = Path(input_path).stem
    out_dir = Path(out_dir)
    return {"video": out_dir / f"{stem}_tracked.mp4", "mot": out_dir / f"{stem}_mot.csv",
            "coco": out_dir / f"{stem}_coco.json", "zip": out_dir / f"{stem}_frames.zip"}


def planned_samples(info: ClipInfo, fps: float, start_s: float = 0.0,
                    end_s: float | None = None, max_frames: int | None = None) -> int:
    """How many frames :func:`~mrcnn.video.decode.sample_frames` will give (from metadata)."""
    if info.fps:
        fps = min(fps, info.fps)
    end = info.duration_s if end_s is None else min(end_s, info.duration_s or end_s)
    count = len(sample_times(start_s, end, fps)) if end > start_s else 1
    return count if max_frames is None else min(count, max_frames)


def analyse_clip(path, out_dir, detect: Callable[[list], list], class_names, *,
                 fps: float = DEFAULT_FPS, start_s: float = 0.0, end_s: float | None = None,
                 max_seconds: float | None = None, max_frames: int | None = None,
                 min_score: float = 0.5, mask_alpha: float = 0.5,
                 progress: Callable[[int, int, float], None] | None = None,
                 info: ClipInfo | None = None) -> VideoReport:
    """Analyse ``path`` and write :func:`output_paths` into ``out_dir``.

    ``detect(images)`` returns one engine result dict per image (``MaskRCNN.detect`` or
    ``detect_compact``); detections under ``min_score`` are dropped. The span is
    ``start_s`` to ``end_s`` (default: the clip's end), at most ``max_seconds`` long and
    ``max_frames`` frames. ``progress(done, total, seconds)`` is called after each frame.
    """
    info = info or probe(path)
    if info.fps:
        fps = min(fps, info.fps)
    if max_seconds is not None:
        end_s = min(end_s if end_s is not None else math.inf, start_s + max_seconds)
    total = planned_samples(info, fps, start_s, end_s, max_frames)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output_paths(path, out_dir)
    seconds = dict.fromkeys(("decode", "network", "track", "draw", "encode", "export"), 0.0)
    tracker, tracked = Tracker(max_missed=missed_frames(fps)), []
    started = time.perf_counter()
    archive = FrameArchive(paths["zip"])
    with H264Writer(paths["video"], fps) as writer:
        frames = sample_frames(path, fps, start_s, end_s, max_frames, info=info)
        while True:
            clock = time.perf_counter()
            sample = next(frames, None)
            seconds["decode"] += time.perf_counter() - clock
            if sample is None:
                break
            clock = time.perf_counter()
            answer = detect([sample.image])[0]
            seconds["network"] += time.perf_counter() - clock
            clock = time.perf_counter()
            result = distinct_objects(filter_detections(answer, min_score))
            ids = tracker.update(result["rois"], result["class_ids"], result["masks"])
            frame = TrackedFrame(sample.index, sample.time_s, result, ids)
            tracked.append(frame)
            seconds["track"] += time.perf_counter() - clock
            clock = time.perf_counter()
            drawn = draw_tracked(sample.image, frame, class_names, mask_alpha)
            seconds["draw"] += time.perf_counter() - clock
            clock = time.perf_counter()
            writer.write(drawn)
            archive.add_frame(sample.index, jpeg_bytes(sample.image))
            seconds["encode"] += time.perf_counter() - clock
            if progress is not None:
                progress(len(tracked), max(total, len(tracked)), time.perf_counter() - started)
    clock = time.perf_counter()
    image_shape = (info.height, info.width)
    coco = coco_video_document(tracked, class_names, image_shape)
    mot = mot_csv(tracked)
    paths["mot"].write_text(mot)
    paths["coco"].write_text(json.dumps(coco))
    archive.finish(coco, mot)
    seconds["export"] = time.perf_counter() - clock
    return VideoReport(info, fps, tracked, paths, seconds)
