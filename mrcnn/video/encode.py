"""Writing frames as an H.264 MP4 every browser plays: yuv420p, even width and height
(an odd last row or column is repeated), the samples' own rate, the index at the front
of the file (``faststart``) so playback starts before the download ends."""
from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

__all__ = ["H264Writer", "even_size"]


def even_size(height: int, width: int) -> tuple[int, int]:
    """The (height, width) the encoder writes: each rounded up to an even number."""
    return height + height % 2, width + width % 2


class H264Writer:
    """``with H264Writer(path, fps) as writer: writer.write(rgb)`` for each frame.

    ``fps`` may be fractional (2.5, 30000/1001); frames are H x W x 3 uint8 RGB, all of
    the size of the first. ``crf``: x264's constant quality (lower is better, 23 default).
    """

    def __init__(self, path, fps: float, crf: int = 23, preset: str = "veryfast"):
        self.path = path
        self.rate = Fraction(fps).limit_denominator(1001)
        self._options = {"crf": str(int(crf)), "preset": preset}
        self._container = None
        self._stream = None
        self.frames = 0
        self.size = None            # (height, width) written

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self, height: int, width: int) -> None:
        self.size = even_size(height, width)
        self._container = av.open(str(self.path), "w", format="mp4",
                                  options={"movflags": "+faststart"})
        stream = self._container.add_stream("libx264", rate=self.rate, options=self._options)
        stream.height, stream.width = self.size
        stream.pix_fmt = "yuv420p"
        self._stream = stream

    def write(self, image: np.ndarray) -> None:
        image = np.asarray(image, np.uint8)
        if self._container is None:
            self._start(*image.shape[:2])
        height, width = self.size
        if image.shape[:2] != (height, width):
            pad_h, pad_w = height - image.shape[0], width - image.shape[1]
            if pad_h not in (0, 1) or pad_w not in (0, 1):
                raise ValueError(f"frame {image.shape[:2]} is not of the clip's size "
                                 f"{(height, width)}")
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = self.frames
        frame.time_base = 1 / self.rate       # the muxer sets the stream's own time base
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
