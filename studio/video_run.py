"""One visitor's clip, analysed through the app's one fair queue (no Streamlit here).

A :class:`VideoJob` decodes the sampled frames in a thread of its own and hands them
to the fair queue **one at a time**, each as a ``detect`` job of its visitor (session
and address), and waits for it before sending the next. Other visitors' photos take
their turns between two of its frames, so a 40-frame clip never holds anyone back by
more than one frame per turn. The thread does no TensorFlow work (the queue's worker
runs the network); it only decodes, keeps each answer, and draws a preview.

Afterwards :meth:`VideoJob.outputs` tracks, draws and encodes the kept answers at any
confidence threshold without running the network again (the answers were made at
``studio.jobs.DETECT_THRESHOLD``). The uploaded clip and every file made from it stay
in the job's own temporary folder, removed with the job.
"""
from __future__ import annotations

import io
import logging
import shutil
import tempfile
import threading
import time
import weakref
from collections import Counter
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mrcnn.draw.overlay import cutout_from_crop
from mrcnn.results import filter_detections
from mrcnn.video.decode import ClipError, ClipInfo, sample_frames
from mrcnn.video.encode import H264Writer
from mrcnn.video.export import FrameArchive, coco_video_document, jpeg_bytes, mot_csv
from mrcnn.video.render import draw_tracked
from mrcnn.video.track import (
    TrackedFrame,
    Tracker,
    distinct_objects,
    missed_frames,
    summarise_tracks,
    track_results,
)
from studio.fair_queue import QueueFull

__all__ = ["VideoJob", "VideoOutputs"]

logger = logging.getLogger("mrcnn.studio")


@dataclass
class VideoOutputs:
    """What the page shows and offers for one threshold."""
    min_score: float
    mask_alpha: float
    video: bytes                 # H.264 MP4
    mot: str                     # MOTChallenge CSV
    coco: dict                   # COCO instances with track ids
    zip_bytes: bytes             # frames + annotations
    tracks: list                 # mrcnn.video.track.TrackSummary, by id
    cutouts: dict                # track id -> RGBA cut-out of its best detection
    counts: list                 # one {class name: objects} per frame
    times: list                  # each frame's time in the clip (s)


class VideoJob:
    """A clip's analysis, frame by frame through ``queue`` (a ``FairQueue``).

    ``make_request(sample)`` gives the ``studio.jobs.JobRequest`` of one sampled frame;
    ``is_alive(session)`` says whether the visitor is still there.
    """

    def __init__(self, queue, session: str, address: str | None, clip: Path, info: ClipInfo,
                 fps: float, start_s: float, end_s: float, total: int, make_request,
                 class_names, folder: Path, preview_score: float = 0.5,
                 is_alive=lambda session: True):
        self.queue, self.session, self.address = queue, session, address
        self.clip, self.info, self.fps = clip, info, float(fps)
        self.start_s, self.end_s, self.total = float(start_s), float(end_s), int(total)
        self.make_request, self.class_names = make_request, list(class_names)
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.preview_score = float(preview_score)
        self.is_alive = is_alive
        self.frames: list[tuple[int, float, dict]] = []     # (index, time, answer)
        self.jpegs: list[bytes] = []                         # each sampled frame
        self.latest: np.ndarray | None = None               # the last frame, drawn
        self.state = "running"                               # done, cancelled, failed
        self.error: str | None = None
        self.current = None                                  # the frame in the queue
        self.started = time.monotonic()
        self.finished: float | None = None
        self._cancel = threading.Event()
        self._outputs: VideoOutputs | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="video-job", daemon=True)
        weakref.finalize(self, shutil.rmtree, str(self.folder), True)

    @staticmethod
    def new_folder() -> Path:
        """A private temporary folder for one clip and its outputs."""
        return Path(tempfile.mkdtemp(prefix="mrcnn_video_"))

    # ----------------------------------------------------------- running
    def start(self) -> VideoJob:
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop after the frame in the network now; the frames done stay."""
        self._cancel.set()

    @property
    def running(self) -> bool:
        return self.state == "running"

    def seconds_per_frame(self) -> float | None:
        if not self.frames:
            return None
        return ((self.finished or time.monotonic()) - self.started) / len(self.frames)

    def standing(self):
        """The fair queue's ``Standing`` of the frame waiting now (None: none waits)."""
        current = self.current
        return None if current is None else self.queue.standing(current)

    def _run(self) -> None:
        tracker = Tracker(max_missed=missed_frames(self.fps))
        try:
            samples = sample_frames(self.clip, self.fps, self.start_s, self.end_s,
                                    self.total, info=self.info)
            for sample in samples:
                if self._cancel.is_set():
                    break
                answer = self._through_queue(sample)
                if answer is None:
                    break
                kept = distinct_objects(filter_detections(answer, self.preview_score))
                ids = tracker.update(kept["rois"], kept["class_ids"], kept["masks"])
                preview = draw_tracked(sample.image, TrackedFrame(sample.index, sample.time_s,
                                                                  kept, ids), self.class_names)
                with self._lock:
                    self.frames.append((sample.index, sample.time_s, answer))
                    self.jpegs.append(jpeg_bytes(sample.image))
                    self.latest = preview
            self.state = "cancelled" if self._cancel.is_set() else "done"
        except (ClipError, QueueFull) as exc:       # one sentence for the visitor
            self.error, self.state = str(exc), "failed"
        except Exception:
            logger.exception("The analysis of a clip failed")
            self.error = ("The analysis stopped on the server; the frames done so far are "
                          "below. Try again, or a shorter span.")
            self.state = "failed"
        finally:
            self.current = None
            self.finished = time.monotonic()

    def _through_queue(self, sample) -> dict | None:
        """One frame through the fair queue; None when cancelled or the visitor left."""
        request = self.make_request(sample)
        job = self.queue.submit(self.session, request.key, request.kind, request.payload,
                                slot="video", batch_group=request.batch_group,
                                address=self.address)
        self.current = job
        while True:
            try:
                return job.future.result(timeout=0.5).result
            except FutureTimeout:
                if self._cancel.is_set() or not self.is_alive(self.session):
                    self.queue.detach(self.session, job)
                    self._cancel.set()
                    return None
            except CancelledError:          # the queue dropped it: nobody claims it any more
                self._cancel.set()
                return None

    # ----------------------------------------------------------- results
    def outputs(self, min_score: float, mask_alpha: float = 0.5) -> VideoOutputs:
        """Tracks, clip and exports of the frames done at ``min_score`` (the last ones are
        kept: each slider move costs one re-track, redraw and encode, never the network)."""
        with self._lock:
            frames, jpegs = list(self.frames), list(self.jpegs)
        cached = self._outputs
        if (cached is not None and (cached.min_score, cached.mask_alpha) == (min_score, mask_alpha)
                and len(cached.times) == len(frames)):
            return cached
        tracked = track_results(frames, min_score, max_missed=missed_frames(self.fps))
        images = [np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for data in jpegs]
        video_path = self.folder / f"tracked_{len(frames)}_{min_score:.3f}.mp4"
        with H264Writer(video_path, self.fps) as writer:
            for image, frame in zip(images, tracked):
                writer.write(draw_tracked(image, frame, self.class_names, mask_alpha))
        video = video_path.read_bytes()
        video_path.unlink()
        shape = (self.info.height, self.info.width)
        coco = coco_video_document(tracked, self.class_names, shape)
        mot = mot_csv(tracked)
        buffer = io.BytesIO()
        archive = FrameArchive(buffer)
        for frame, data in zip(tracked, jpegs):
            archive.add_frame(frame.index, data)
        archive.finish(coco, mot)
        tracks = summarise_tracks(tracked)
        cutouts = {}
        for track in tracks:
            frame = tracked[track.best_frame]
            masks = frame.result["masks"]
            y1, x1, _, _ = (int(v) for v in masks.windows[track.best_detection])
            cutouts[track.id] = cutout_from_crop(images[track.best_frame],
                                                 masks.crop(track.best_detection), (y1, x1))
        counts = [dict(Counter(self.class_names[int(c)] for c in f.result["class_ids"]))
                  for f in tracked]
        self._outputs = VideoOutputs(min_score, mask_alpha, video, mot, coco,
                                     buffer.getvalue(), tracks, cutouts, counts,
                                     [f.time_s for f in tracked])
        return self._outputs
