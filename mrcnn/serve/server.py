"""One Ray Serve replica of Mask R-CNN: a loaded model, a batch queue, HTTP handling.

The replica answers HTTP itself (raw Starlette requests):

- ``GET /healthz``: liveness, without the token: ``{"status": "ok"}`` (200) once
  every replica has loaded the model, ``{"status": "not ready"}`` (503) before.
  With the token (or when none is set) it also says how many replicas run, on
  what device, and the batching.
- ``POST /detect``: the body is an image file (anything
  ``mrcnn.inputs.uploads.decode_image`` reads, EXIF orientation applied). Query
  parameters ``min_confidence``, ``nms_threshold``, ``max_instances``,
  ``image_min_dim`` and ``image_max_dim`` (the engine's run-time settings).
  The answer is ``{"image_size", "device", "replica", "batch_size",
  "input_shape", "timings_ms", "detections"}``, detections as
  ``mrcnn.serve.protocol.encode_detections`` writes them.
- Anything else: 404. Errors are ``{"error": "<one sentence>"}``: 400 for a body
  that is not a readable image or a bad parameter; 401 without ``Authorization:
  Bearer <token>`` when a token is set; 413 for a body over ``max_body_bytes``
  (checked before it is read) or an image over ``max_pixels`` (from its header,
  before decoding); 503 (with ``Retry-After``) when ``max_queued_requests``
  requests are already waiting, when the body does not arrive within
  ``body_timeout_s``, when the request takes over ``request_timeout_s``, or when
  decoding runs out of memory; 500 for a failure of the service itself (logged
  with its traceback; the visitor's sentence names no server path).

Requests that reach a replica together run through the network as one batch
(``serve.batch``; ``max_batch_size`` and ``batch_wait_timeout_s`` come from the
deployment's ``user_config`` and can be changed without a restart). Each replica
pins TensorFlow to its share of the CPUs or takes a GPU (memory growth on).

Ray is imported inside functions, never at module level (see
``mrcnn.serve.deployment.start_local_ray``).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from mrcnn.classes import class_names_for
from mrcnn.config import DEFAULT_CONFIG_PATH, config_from_path
from mrcnn.precision import LABELS as PRECISION_LABELS
from mrcnn.serve.protocol import (
    REPLICA_HEADER,
    TOKEN_ENV,
    parse_detect_query,
    read_token,
    token_digest,
    token_matches,
)

__all__ = ["DEFAULT_BATCHING", "DEFAULT_CONFIG", "MaskRCNNServer", "ServiceSettings"]

logger = logging.getLogger("ray.serve")

DEFAULT_CONFIG = DEFAULT_CONFIG_PATH
DEFAULT_BATCHING = {"max_batch_size": 4, "batch_wait_timeout_s": 0.02}


@dataclass(frozen=True)
class ServiceSettings:
    """What a replica needs to build its model and guard its inputs.

    ``config`` is an import path (``"module:Class"``) of a ``Config`` subclass;
    ``config_overrides`` sets class attributes on top of it. ``weights`` is read
    on the replica's machine; ``None`` means ``$MRCNN_WEIGHTS`` there, else
    ``weights/mask_rcnn_coco.h5``. ``token_sha256`` is the SHA-256 of the bearer
    token (so the token itself never travels in the deployment's arguments or
    environment); ``None`` means the replica's own ``$MRCNN_SERVE_TOKEN``, if set.
    """
    config: str = DEFAULT_CONFIG
    config_overrides: dict = None
    weights: str | None = None
    max_body_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 40_000_000
    token_sha256: str | None = None
    max_queued_requests: int = 16       # waiting in this replica before it answers 503
    request_timeout_s: float = 120.0    # the whole request, queue and network included
    body_timeout_s: float = 30.0        # receiving the upload

    @classmethod
    def from_args(cls, args: dict | None) -> ServiceSettings:
        args = dict(args or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"Unknown service argument(s) {unknown}; "
                             f"expected some of {sorted(known)}.")
        args["config_overrides"] = dict(args.get("config_overrides") or {})
        settings = cls(**args)
        if min(int(settings.max_body_bytes), int(settings.max_pixels),
               int(settings.max_queued_requests)) <= 0:
            raise ValueError("max_body_bytes, max_pixels and max_queued_requests must be "
                             "positive.")
        if min(float(settings.request_timeout_s), float(settings.body_timeout_s)) <= 0:
            raise ValueError("request_timeout_s and body_timeout_s must be positive.")
        config_from_path(settings.config, settings.config_overrides)   # fail here, not in a replica
        return settings


@dataclass
class _Pending:
    """One decoded request waiting for a batch."""
    image: np.ndarray
    overrides: dict
    enqueued: float


@dataclass
class _Answer:
    result: dict
    timings: dict
    input_shape: tuple
    batch_size: int
    queue_s: float
    precision: str = "fp32"


class _Refused(Exception):
    """A request answered with ``status`` and ``{"error": message}`` (no traceback)."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None):
        super().__init__(message)
        self.status = status
        self.retry_after_s = retry_after_s


def _cpu_threads() -> tuple[int, float, float]:
    """(TensorFlow threads, CPUs, GPUs) from what Ray assigned to this replica."""
    import ray
    try:
        assigned = ray.get_runtime_context().get_assigned_resources()
    except Exception:  # noqa: BLE001 - outside Ray (a unit test building the class directly)
        assigned = {}
    cpus = float(assigned.get("CPU", os.cpu_count() or 1))
    gpus = float(assigned.get("GPU", 0.0))
    return max(1, int(cpus)), cpus, gpus


def _pin_tensorflow_threads(threads: int) -> None:
    """Keep TensorFlow within the replica's CPU share (before any op runs)."""
    import tensorflow as tf
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(threads, 2))
    except RuntimeError:
        logger.warning("TensorFlow was initialised before the replica could pin its threads.")


class MaskRCNNServer:
    """The body of one Serve replica.

    Deployed through ``mrcnn.serve.deployment.make_deployment``; the constructor
    takes :class:`ServiceSettings` as a dict (what Serve serialises),
    ``reconfigure`` takes the batching ``user_config``.
    """

    def __init__(self, settings: dict):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")    # before TensorFlow is imported
        from ray import serve

        from mrcnn.model import MaskRCNN
        from mrcnn.weights.check import check_weights_file, default_weights_path

        self.settings = ServiceSettings.from_args(settings)
        self.threads, cpus, gpus = _cpu_threads()
        _pin_tensorflow_threads(self.threads)
        config = config_from_path(self.settings.config, self.settings.config_overrides)
        weights = Path(self.settings.weights) if self.settings.weights else default_weights_path()
        check_weights_file(weights)
        started = time.perf_counter()
        self.model = MaskRCNN(config).load_weights(weights)
        self.class_names = class_names_for(config)
        self.device = (self.model.device if self.model.device.startswith("GPU")
                       else f"CPU ({self.threads} of {os.cpu_count()} cores)")
        self._model_lock = threading.Lock()
        token = read_token()
        self._token_digest = self.settings.token_sha256 or (token and token_digest(token))
        self._waiting = 0        # /detect requests in this replica, answered or not yet
        context = serve.get_replica_context()
        self.replica = context.replica_tag
        self._app, self._deployment = context.app_name, context.deployment
        # A bound method decorated here, not at class level: batching settings
        # are per replica and Ray is not imported when this module is.
        self._batched_detect = serve.batch(**DEFAULT_BATCHING)(self._detect_batch)
        self.batching = dict(DEFAULT_BATCHING)
        self._warm_up()
        logger.info("Replica %s ready on %s (%s CPUs, %s GPUs) in %.1f s, weights %s.",
                    self.replica, self.device, cpus, gpus, time.perf_counter() - started, weights)

    def _warm_up(self):
        """Trace the compiled steps now, so the first visitor does not wait for it."""
        side = int(self.model.config.IMAGE_MIN_DIM or 64)
        self.model.detect_compact([np.zeros((side, side, 3), np.uint8)])

    def reconfigure(self, user_config: dict | None):
        """Batching from the deployment's ``user_config`` (changeable live)."""
        batching = {**DEFAULT_BATCHING, **(user_config or {})}
        unknown = sorted(set(batching) - set(DEFAULT_BATCHING))
        if unknown:
            raise ValueError(f"Unknown user_config key(s) {unknown}; "
                             f"expected {sorted(DEFAULT_BATCHING)}.")
        size, wait = int(batching["max_batch_size"]), float(batching["batch_wait_timeout_s"])
        if size < 1 or wait < 0:
            raise ValueError("max_batch_size must be >= 1 and batch_wait_timeout_s >= 0.")
        self._batched_detect.set_max_batch_size(size)
        self._batched_detect.set_batch_wait_timeout_s(wait)
        self.batching = {"max_batch_size": size, "batch_wait_timeout_s": wait}

    # ------------------------------------------------------------------ HTTP
    async def __call__(self, request):
        from starlette.responses import Response
        headers = {REPLICA_HEADER: self.replica}
        try:
            path = _route_path(request.scope)
            if path == "/healthz":
                _require_method(request, "GET")
                status, payload = await self._health(self._authorised(request))
            else:
                if not self._authorised(request):
                    headers["WWW-Authenticate"] = "Bearer"
                    raise _Refused(401, "This service needs 'Authorization: Bearer <token>' "
                                        f"with the token in {TOKEN_ENV}.")
                if path != "/detect":
                    raise _Refused(404, f"There is no {path}; use POST /detect or GET /healthz.")
                _require_method(request, "POST")
                status, payload = 200, await self._detect_within_limits(request)
        except _Refused as exc:
            status, payload = exc.status, {"error": str(exc)}
            if exc.retry_after_s is not None:
                headers["Retry-After"] = str(exc.retry_after_s)
        except Exception:
            logger.exception("Request failed")
            status, payload = 500, {"error": "The service failed on this request; "
                                             "its operator can find the reason in the log."}
        return Response(json.dumps(payload), status_code=status, headers=headers,
                        media_type="application/json")

    def _authorised(self, request) -> bool:
        if self._token_digest is None:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token_matches(token.strip(), self._token_digest)

    async def _health(self, authorised: bool):
        replicas, target, healthy = await asyncio.to_thread(self._deployment_replicas)
        status = 200 if healthy else 503
        payload = {"status": "ok" if healthy else "not ready"}
        if authorised:
            payload.update({"replicas": replicas, "target_replicas": target,
                            "device": self.device, "replica": self.replica, **self.batching})
            if not healthy:
                payload["error"] = (f"{replicas} of {target} replicas have loaded the model; "
                                    "try again in a few seconds.")
        return status, payload

    def _deployment_replicas(self) -> tuple[int, int, bool]:
        """(running replicas, all replicas, whether Serve reports the deployment healthy)."""
        from ray import serve
        deployment = serve.status().applications[self._app].deployments[self._deployment]
        states = {str(getattr(k, "value", k)): v for k, v in deployment.replica_states.items()}
        running, total = states.get("RUNNING", 0), sum(states.values())
        healthy = str(getattr(deployment.status, "value", deployment.status)) == "HEALTHY"
        return running, total, healthy and running == total

    async def _detect_within_limits(self, request) -> dict:
        """:meth:`_detect` under the replica's queue limit and request timeout."""
        limit = int(self.settings.max_queued_requests)
        if self._waiting >= limit:
            raise _Refused(503, f"The service is busy ({limit} images already wait on this "
                                "replica); try again in a few seconds.", retry_after_s=2)
        self._waiting += 1
        try:
            return await asyncio.wait_for(self._detect(request),
                                          float(self.settings.request_timeout_s))
        except asyncio.TimeoutError:
            raise _Refused(503, "The service took longer than "
                                f"{self.settings.request_timeout_s:g} s on this image; try again "
                                "when it is less busy.", retry_after_s=5) from None
        finally:
            self._waiting -= 1

    async def _detect(self, request) -> dict:
        from mrcnn.inputs.uploads import (
            ImageDecodeError,
            ImageMemoryError,
            ImageTooLargeError,
            decode_image,
        )
        from mrcnn.serve.protocol import encode_detections
        started = time.perf_counter()
        overrides = self._parse_query(request.query_params)
        body = await self._read_body(request)
        try:
            image = await asyncio.to_thread(decode_image, body, max_pixels=self.settings.max_pixels)
        except ImageTooLargeError as exc:
            raise _Refused(413, str(exc)) from None
        except ImageMemoryError as exc:
            logger.warning("Out of memory decoding a %d-byte upload", len(body))
            raise _Refused(503, str(exc), retry_after_s=10) from None
        except ImageDecodeError as exc:
            raise _Refused(400, str(exc)) from None
        decoded = time.perf_counter()
        answer = await self._batched_detect(_Pending(image, overrides, decoded))
        if isinstance(answer, Exception):
            raise answer
        detected = time.perf_counter()
        detections = await asyncio.to_thread(
            encode_detections, answer.result, self.class_names, image.shape[:2])
        finished = time.perf_counter()
        timings = {"decode": decoded - started, "queue": answer.queue_s, **answer.timings,
                   "encode": finished - detected, "total": finished - started}
        return {"image_size": [int(image.shape[0]), int(image.shape[1])],
                "device": f"{self.device} · {PRECISION_LABELS[answer.precision]}",
                "precision": answer.precision, "replica": self.replica,
                "batch_size": answer.batch_size,
                "input_shape": [int(v) for v in answer.input_shape],
                "timings_ms": {k: round(v * 1000.0, 3) for k, v in timings.items()},
                "detections": detections}

    def _parse_query(self, params) -> dict:
        try:
            return parse_detect_query(dict(params), self.model.config)
        except ValueError as exc:
            raise _Refused(400, str(exc)) from None

    async def _read_body(self, request) -> bytes:
        limit = int(self.settings.max_body_bytes)
        too_large = _Refused(413, f"The upload is larger than the limit of {limit:,} bytes; "
                                  "send a smaller image.")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large

        async def read_all() -> bytes:
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
            return b"".join(chunks)

        try:
            return await asyncio.wait_for(read_all(), float(self.settings.body_timeout_s))
        except asyncio.TimeoutError:
            raise _Refused(503, f"The upload did not arrive within "
                                f"{self.settings.body_timeout_s:g} s; send it again over a "
                                "faster connection.") from None

    # --------------------------------------------------------------- batching
    async def _detect_batch(self, requests: list[_Pending]) -> list:
        """Run queued requests through the network: one ``detect_compact()`` per group.

        Requests group by their settings (one threshold per network call) and,
        unless the config pads every image to the same square, by image size;
        with the usual ``IMAGE_RESIZE_MODE="square"`` a whole batch is one group.
        A failing group answers its own requests with the exception.
        """
        started = time.perf_counter()
        square = self.model.config.IMAGE_RESIZE_MODE == "square"
        groups = defaultdict(list)
        for index, pending in enumerate(requests):
            shape = None if square else pending.image.shape[:2]
            groups[(tuple(sorted(pending.overrides.items())), shape)].append(index)
        answers: list = [None] * len(requests)
        for indices in groups.values():
            images = [requests[i].image for i in indices]
            try:
                results, timings, input_shape, precision = await asyncio.to_thread(
                    self._run_model, images, requests[indices[0]].overrides)
            except Exception as exc:
                logger.exception("Batch of %d failed", len(indices))
                for i in indices:
                    answers[i] = exc
                continue
            for i, result in zip(indices, results):
                answers[i] = _Answer(result, timings, input_shape, len(indices),
                                     started - requests[i].enqueued, precision)
        return answers

    def _run_model(self, images, overrides):
        with self._model_lock:
            results = self.model.detect_compact(images, **overrides)
            timings = self.model.last_timings
        return results, timings.as_dict(), tuple(timings.input_shape), timings.precision


def _route_path(scope: dict) -> str:
    """The request path below the application's route prefix."""
    path, root = scope.get("path", "/"), scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return "/" + path.strip("/")


def _require_method(request, method: str):
    if request.method != method:
        raise _Refused(405, f"{request.url.path} answers {method} requests only.")
