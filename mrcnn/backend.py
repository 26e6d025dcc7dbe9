"""One small client interface over the two ways to run the model.

The app (and any script) asks ``make_backend()`` for a backend and calls
``backend.detect(image, **settings)``; it does not care whether the network runs
in this process or behind the Ray Serve deployment (``MRCNN_SERVE_URL``).
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class DetectionRun:
    """One image's detections plus what the page shows about how they were made."""
    result: dict                     # matterport's dict: rois, class_ids, scores, masks
    timings: dict                    # seconds per step, e.g. {"mold":..., "network":..., "masks":...}
    input_shape: tuple = ()          # (h, w) the network saw
    device: str = ""
    backend: str = ""                # "in-process" or the service URL
    extra: dict = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def describe(self) -> dict: ...

    def detect(self, image: np.ndarray, **settings) -> DetectionRun: ...


class InProcessBackend:
    """The model in this process; calls are serialised with a lock (one graph, many sessions)."""

    name = "in-process"

    def __init__(self, model):
        self.model = model
        self._lock = threading.Lock()

    def describe(self) -> dict:
        return {"backend": self.name, "device": self.model.device}

    def detect(self, image, **settings) -> DetectionRun:
        with self._lock:
            start = time.perf_counter()
            result = self.model.detect([image], **settings)[0]
            timings = self.model.last_timings
            total = time.perf_counter() - start
        return DetectionRun(result, {**timings.as_dict(), "total": total},
                            tuple(timings.input_shape), self.model.device, self.name)


def serve_url() -> str | None:
    """The Ray Serve endpoint the app should use, if any ($MRCNN_SERVE_URL)."""
    return os.environ.get("MRCNN_SERVE_URL") or None


def make_backend(model_loader=None, url: str | None = None, token: str | None = None) -> Backend:
    """The service client when a URL is configured, else the in-process model.

    ``model_loader`` is a zero-argument callable returning a loaded ``MaskRCNN``
    (the app passes its cached loader). ``url`` and ``token`` default to
    ``$MRCNN_SERVE_URL`` and ``$MRCNN_SERVE_TOKEN`` (the app also reads them from
    Streamlit secrets and passes them in).
    """
    url = url or serve_url()
    if url:
        from mrcnn.serve_client import ServeBackend
        return ServeBackend(url, token=token)
    if model_loader is None:
        from mrcnn.model import load_model
        model_loader = load_model
    return InProcessBackend(model_loader())
