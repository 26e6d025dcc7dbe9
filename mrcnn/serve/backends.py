"""The two ways to run the model behind one interface: in this process, or the service.

``make_backend()`` gives the service's client when a URL is configured
(``MRCNN_SERVE_URL``), else the model in this process. Either way
``backend.detect(images, **overrides)`` takes a list of RGB images and the
engine's run-time settings, like ``MaskRCNN.detect``, and answers one
:class:`DetectionReport` per image: the detections (compact masks) and how
they were made. Callers serialise the calls (the app's fair queue does).
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from mrcnn.precision import LABELS as PRECISION_LABELS
from mrcnn.retry import RetryPolicy
from mrcnn.serve.client import ServeClient
from mrcnn.serve.protocol import (
    MODEL_STEPS,
    URL_ENV,
    decode_detections,
    encode_png,
    query_parameters,
)

__all__ = ["Backend", "DetectionReport", "InProcessBackend", "ServedBackend", "make_backend",
           "serve_url"]


@dataclass
class DetectionReport:
    """One image's detections plus what the page shows about how they were made."""
    result: dict                     # rois, class_ids, scores, masks (CompactMasks)
    timings: dict                    # seconds per step: {"mold":..., "network":..., "masks":...}
    input_shape: tuple = ()          # (h, w) the network saw
    device: str = ""
    backend: str = ""                # "in-process" or the service URL
    extra: dict = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def describe(self) -> dict: ...

    def detect(self, images: list, **overrides) -> list[DetectionReport]: ...


class InProcessBackend:
    """The model in this process; ``detect`` runs the images as one network batch."""

    name = "in-process"

    def __init__(self, model):
        self.model = model

    def describe(self) -> dict:
        return {"backend": self.name, "device": self.model.device}

    def detect(self, images, **overrides) -> list[DetectionReport]:
        start = time.perf_counter()
        results = self.model.detect_compact(list(images), **overrides)
        timings = self.model.last_timings
        total = time.perf_counter() - start
        device = f"{self.model.device} · {PRECISION_LABELS[timings.precision]}"
        return [DetectionReport(result, {**timings.as_dict(), "total": total,
                                         "batch_size": len(results)},
                                tuple(timings.input_shape), device, self.name)
                for result in results]


class ServedBackend:
    """The Ray Serve deployment at ``url`` (``MRCNN_SERVE_URL``) as a backend.

    Several images go up as concurrent requests, so the service can batch them.
    """

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 120.0,
                 retry: RetryPolicy = RetryPolicy()):  # noqa: B008 - immutable
        self.client = ServeClient(url, token=token, timeout_s=timeout_s, retry=retry)
        self.name = self.client.url

    def describe(self) -> dict:
        """Backend, device and replicas from ``/healthz``; never raises (the page shows it)."""
        health = self.client.health()
        return {"backend": self.name, "device": health.get("device", "unknown"),
                "replicas": health.get("replicas"), "status": health.get("status"),
                "max_batch_size": health.get("max_batch_size")}

    def detect(self, images, **overrides) -> list[DetectionReport]:
        params = query_parameters(overrides)
        images = list(images)
        if len(images) <= 1:
            return [self._detect_one(image, params) for image in images]
        with ThreadPoolExecutor(max_workers=len(images)) as pool:
            return list(pool.map(lambda image: self._detect_one(image, params), images))

    def _detect_one(self, image, params) -> DetectionReport:
        start = time.perf_counter()
        payload, attempts = self.client.detect(encode_png(image), params)
        result = decode_detections(payload["detections"], payload["image_size"])
        server = {k: v / 1000.0 for k, v in payload.get("timings_ms", {}).items()}
        timings = {step: server.get(step, 0.0) for step in MODEL_STEPS}
        timings.update({"server": server.get("total", 0.0), "total": time.perf_counter() - start})
        return DetectionReport(
            result, timings, tuple(payload.get("input_shape", ())), payload.get("device", ""),
            self.name, extra={"replica": payload.get("replica"), "attempts": attempts,
                              "batch_size": payload.get("batch_size"),
                              "detections": payload["detections"]})

    @property
    def retries(self) -> int:
        return self.client.retries

    def close(self):
        self.client.close()


def serve_url(environ=None) -> str | None:
    """The Ray Serve endpoint to use, if any (``$MRCNN_SERVE_URL``)."""
    return (os.environ if environ is None else environ).get(URL_ENV) or None


def make_backend(model_loader=None, url: str | None = None, token: str | None = None) -> Backend:
    """The service's client when a URL is configured, else the in-process model.

    ``model_loader`` is a zero-argument callable returning a loaded ``MaskRCNN``
    (default: ``mrcnn.load_model``). ``url`` and ``token`` default to
    ``$MRCNN_SERVE_URL`` and ``$MRCNN_SERVE_TOKEN``.
    """
    url = url or serve_url()
    if url:
        return ServedBackend(url, token=token)
    if model_loader is None:
        from mrcnn.model import load_model
        model_loader = load_model
    return InProcessBackend(model_loader())
