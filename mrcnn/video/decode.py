"""Reading a clip with PyAV: what it is (from its metadata, before any frame is decoded),
and its frames sampled at a chosen rate over a chosen span, upright.

Any container and codec FFmpeg reads (MP4 with H.264 or H.265, MOV, WebM, animated GIF).
The rotation a phone stores in the display matrix is applied, so a portrait clip comes
out portrait. A variable frame rate is fine: samples are taken by presentation time,
each sample being the frame on screen at that moment.

Every refusal is a :class:`ClipError` whose text is one sentence for the person who
gave the clip.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["DEFAULT_FPS", "MAX_CLIP_SECONDS", "MAX_FRAME_PIXELS", "ClipError", "ClipInfo",
           "Sample", "probe", "sample_frames", "sample_times", "upright"]

#: Frames analysed per second when nobody says otherwise.
DEFAULT_FPS = 2.0
#: Longer clips are refused from their metadata (a span of them would still need seeking
#: through, and a 2-hour upload is a mistake more often than a wish).
MAX_CLIP_SECONDS = 1800.0
#: Larger frames are refused from the metadata (one decoded 10,000 x 10,000 frame is 300 MB).
MAX_FRAME_PIXELS = 40_000_000


class ClipError(ValueError):
    """A clip that can't be used; ``str()`` is one sentence for the person who gave it."""


@dataclass(frozen=True)
class ClipInfo:
    """What the metadata says about a clip's first video stream (sizes upright)."""
    width: int
    height: int
    duration_s: float
    fps: float                 # the stream's average rate (0 when unknown)
    frames: int                # frames the container declares (0 when it doesn't)
    rotation: int              # degrees counter-clockwise applied to each frame
    codec: str
    container: str


@dataclass(frozen=True)
class Sample:
    """One sampled frame: ``index`` counts samples from 0, ``time_s`` is the sample's
    time in the clip (from the clip's start, not the span's), ``source_time_s`` that of
    the frame shown then."""
    index: int
    time_s: float
    source_time_s: float
    image: np.ndarray          # H x W x 3 uint8 RGB, upright


def _open(path):
    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise ClipError("This file is not a video this app can read (the container is "
                        "damaged or of an unknown kind); try an MP4, MOV, WebM or GIF.") from exc


def _rotation_of(container, stream) -> int:
    """The display rotation (degrees counter-clockwise, a multiple of 90) of the stream,
    read from its first frame's display matrix (PyAV gives it per frame)."""
    try:
        for frame in container.decode(stream):
            return int(round((frame.rotation or 0) / 90.0)) * 90 % 360
    except av.error.FFmpegError:
        return 0
    return 0


def probe(path, *, max_clip_seconds: float = MAX_CLIP_SECONDS,
          max_frame_pixels: int = MAX_FRAME_PIXELS) -> ClipInfo:
    """The clip's :class:`ClipInfo`, or a :class:`ClipError`: unreadable container, no
    video stream, nothing in it, a frame over ``max_frame_pixels``, longer than
    ``max_clip_seconds`` (read from the metadata; only the first frame is decoded,
    for its rotation, and only once those checks pass)."""
    with _open(path) as container:
        if not container.streams:
            raise ClipError("The clip is empty: it holds no frames.")
        if not container.streams.video:
            raise ClipError("This file has no video stream (only sound or data); "
                            "upload a video clip.")
        stream = container.streams.video[0]
        width, height = int(stream.codec_context.width), int(stream.codec_context.height)
        if width * height > max_frame_pixels:
            raise ClipError(f"Its frames are {width} x {height} pixels, more than this app "
                            f"takes ({max_frame_pixels / 1e6:g} million pixels); scale the "
                            "clip down first.")
        duration = 0.0
        if stream.duration and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        if not duration and container.duration:
            duration = container.duration / av.time_base
        if duration > max_clip_seconds:
            raise ClipError(f"The clip is {_minutes(duration)} long; this app takes clips "
                            f"of up to {_minutes(max_clip_seconds)}. Cut the part you want "
                            "first.")
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        frames = int(stream.frames or 0)
        if frames == 1:
            raise ClipError("The clip has a single frame; open it as a photo on the main "
                            "page instead.")
        codec = stream.codec_context.name
        rotation = _rotation_of(container, stream)
        if width == 0 or height == 0:
            raise ClipError("The clip's video stream has no picture size; it is damaged.")
    if rotation in (90, 270):
        width, height = height, width
    return ClipInfo(width, height, duration, fps, frames, rotation, codec,
                    Path(str(path)).suffix.lower().lstrip("."))


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} minutes"


def sample_times(start_s: float, end_s: float, fps: float) -> list[float]:
    """Sample times ``start_s + k / fps`` before ``end_s`` (exact fractions, no drift)."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    step = Fraction(fps).limit_denominator(1001)
    start = Fraction(start_s).limit_denominator(100000)
    count = max(0, math.ceil((Fraction(end_s).limit_denominator(100000) - start) * step))
    return [float(start + k / step) for k in range(count)]


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """``image`` turned ``rotation`` degrees counter-clockwise (a multiple of 90)."""
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(image, turns)) if turns else image


#: Frames within this many seconds of a sample time count as shown at that time.
_EPSILON_S = 1e-4


def sample_frames(path, fps: float = DEFAULT_FPS, start_s: float = 0.0,
                  end_s: float | None = None, max_frames: int | None = None,
                  info: ClipInfo | None = None) -> Iterator[Sample]:
    """The frames on screen at ``start_s + k / fps`` (k = 0, 1, ...) before ``end_s``
    (default: the end of the clip), at most ``max_frames``, upright RGB.

    ``fps`` above the clip's own rate is lowered to it, so the clip's rate gives every
    frame once. Raises :class:`ClipError` when the clip has no frame, only one, or none
    in the span.
    """
    info = info or probe(path)
    if info.fps and fps > info.fps:
        fps = info.fps
    end = math.inf if end_s is None else end_s    # the metadata's duration may be short
    step = Fraction(fps).limit_denominator(1001)
    start = Fraction(start_s).limit_denominator(100000)
    limit = math.inf if max_frames is None else max_frames
    emitted = decoded = 0
    previous: tuple[float, object] | None = None    # (time, frame) shown before the target

    def target() -> float:
        return float(start + emitted / step)

    def emit(time_s, frame) -> Sample:
        return Sample(emitted, target(), time_s,
                      upright(frame.to_ndarray(format="rgb24"), info.rotation))

    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if start_s > 0 and stream.time_base:
            container.seek(int(start_s / stream.time_base), stream=stream, backward=True)
        try:
            for frame in container.decode(stream):
                decoded += 1
                time_s = float(frame.time) if frame.time is not None else 0.0
                shown = previous or (time_s, frame)     # before the first frame: the first
                while emitted < limit and target() < min(time_s, end) - _EPSILON_S:
                    yield emit(*shown)
                    emitted += 1
                if emitted >= limit or time_s >= end - _EPSILON_S:
                    break
                previous = (time_s, frame)
            else:
                # The stream ended: its last frame stays on screen until the clip's end
                # (with no known end, it is sampled once at most).
                if decoded == 1 and start_s == 0:
                    raise ClipError("The clip has a single frame; open it as a photo on "
                                    "the main page instead.")
                last = previous[0] if previous else 0.0
                stop = min(end, max(info.duration_s, last + 2 * _EPSILON_S))
                while previous is not None and emitted < limit and target() < stop - _EPSILON_S:
                    yield emit(*previous)
                    emitted += 1
        except av.error.FFmpegError as exc:
            if emitted == 0:
                raise ClipError("The clip's frames could not be decoded; it is damaged or "
                                "cut short.") from exc
    if decoded == 0:
        raise ClipError("The clip holds no frames at all; it is empty.")
    if emitted == 0:
        span = f"after {start_s:.1f} s" if end == math.inf else \
            f"between {start_s:.1f} s and {end:.1f} s"
        raise ClipError(f"The clip has no frames {span}; choose a span inside it.")
