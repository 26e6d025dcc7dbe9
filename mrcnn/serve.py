"""Mask R-CNN as an HTTP service on Ray Serve: replicas, dynamic batching, recovery.

One deployment, ``MaskRCNN``, answers HTTP itself (raw Starlette requests):

- ``GET /healthz``: 200 once the model is loaded in every replica of the
  deployment, else 503; the JSON says how many replicas run and on what device.
- ``POST /detect``: the body is an uploaded image file (anything
  ``mrcnn.imaging.decode_image`` reads, EXIF orientation applied). Query
  parameters ``min_confidence`` (default: the config's), ``nms_threshold``,
  ``max_instances``, ``image_min_dim`` and ``image_max_dim`` (the engine's
  run-time settings). The answer is ``{"image_size", "device", "replica",
  "batch_size", "input_shape", "timings_ms", "detections"}``, the detections
  exactly as ``mrcnn.export.detections_json`` writes them (box ``[y1, x1, y2,
  x2]`` in original pixels, COCO compressed RLE mask, best score first).
- Anything else: 404. Errors are ``{"error": "<one sentence>"}``: 400 for a
  body that is not a readable image or a bad parameter, 413 for a body over
  ``max_body_bytes`` (checked before it is read) or an image over
  ``max_pixels`` (checked from its header, before decoding), 401 without
  ``Authorization: Bearer $MRCNN_SERVE_TOKEN`` when that variable is set.

Requests that reach a replica together run through the network as one batch
(``serve.batch``; ``max_batch_size`` and ``batch_wait_timeout_s`` come from the
deployment's ``user_config`` and can be changed without a restart). Each replica
pins TensorFlow to its share of the CPUs (``num_cpus``) or takes a GPU
(``num_gpus: 1``, memory growth on).

Command line (local Ray unless ``--address`` / ``RAY_ADDRESS`` names a cluster)::

    python -m mrcnn.serve [--replicas N | --min-replicas A --max-replicas B]
                          [--host 127.0.0.1] [--port 8000] [--weights PATH] ...

``serve_config.yaml`` at the repository root deploys the same application
(``import_path: mrcnn.serve:build_app``) with ``serve run`` / ``serve deploy``.

Ray is imported inside functions, never at module level: a local service must
ask Ray for loopback-only addresses *before* Ray is first imported (see
:func:`start_local_ray`), and ``import mrcnn.serve`` must not decide that.
"""
from __future__ import annotations

import argparse
import asyncio
import hmac
import importlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from mrcnn.classes import class_names_for
from mrcnn.config import CocoConfig, Config
from mrcnn.serve_client import SETTING_PARAMETERS, TOKEN_ENV

logger = logging.getLogger("ray.serve")

APP_NAME = "mrcnn"
DEPLOYMENT_NAME = "MaskRCNN"
DEFAULT_CONFIG = "mrcnn.config:CocoConfig"
DEFAULT_BATCHING = {"max_batch_size": 4, "batch_wait_timeout_s": 0.02}

# Environment for a Ray that lives on this machine only: Ray's single-machine mode
# (its default on macOS and Windows) advertises and binds 127.0.0.1 instead of
# the address of the default route; and no usage statistics are sent. Both are
# read when Ray is first imported.
LOCAL_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}

# POST /detect's query parameters, and the config settings they override.
QUERY_SETTINGS = {query: setting for setting, query in SETTING_PARAMETERS.items()}


# --------------------------------------------------------------------- settings

@dataclass(frozen=True)
class ServiceSettings:
    """What a replica needs to build its model and guard its inputs.

    ``config`` is an import path (``"module:Class"``) of a ``Config`` subclass;
    ``config_overrides`` sets class attributes on top of it (a test's small
    network, a different ``IMAGE_MAX_DIM``). ``weights`` is read on the replica's
    machine; ``None`` means ``mrcnn.weights.default_weights_path()`` there
    (``$MRCNN_WEIGHTS``, else ``weights/mask_rcnn_coco.h5``).
    """
    config: str = DEFAULT_CONFIG
    config_overrides: dict = field(default_factory=dict)
    weights: str | None = None
    max_body_bytes: int = 25 * 1024 * 1024
    max_pixels: int = 40_000_000

    @classmethod
    def from_args(cls, args: dict | None) -> "ServiceSettings":
        args = dict(args or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"Unknown service argument(s) {unknown}; "
                             f"expected some of {sorted(known)}.")
        settings = cls(**args)
        if int(settings.max_body_bytes) <= 0 or int(settings.max_pixels) <= 0:
            raise ValueError("max_body_bytes and max_pixels must be positive.")
        build_config(settings.config, settings.config_overrides)   # fail here, not in a replica
        return settings


def build_config(import_path: str = DEFAULT_CONFIG, overrides: dict | None = None) -> Config:
    """An instance of the config class at ``import_path`` with ``overrides`` applied.

    The overrides become class attributes of a subclass, so the derived values
    (``IMAGE_SHAPE``, ``IMAGE_META_SIZE``, ...) are computed from them. Lists
    are turned back into arrays where the base class has an array (YAML and
    JSON have no numpy).
    """
    module_name, _, class_name = import_path.partition(":")
    if not module_name or not class_name:
        raise ValueError(f"config must look like 'package.module:ClassName', got {import_path!r}.")
    base = getattr(importlib.import_module(module_name), class_name, None)
    if not (isinstance(base, type) and issubclass(base, Config)):
        raise ValueError(f"{import_path} is not a subclass of mrcnn.config.Config.")
    attributes = {}
    for key, value in (overrides or {}).items():
        if not key.isupper() or not hasattr(base, key):
            raise ValueError(f"{key!r} is not a setting of {import_path}; "
                             "config overrides use the config's upper-case names.")
        if isinstance(getattr(base, key), np.ndarray):
            value = np.asarray(value, dtype=getattr(base, key).dtype)
        attributes[key] = value
    if not attributes:
        return base()
    return type(f"Served{base.__name__}", (base,), attributes)()


def config_overrides_of(config: Config) -> dict:
    """The class attributes a config's own class sets over ``Config`` (JSON-able).

    The inverse of :func:`build_config` for configs written as a subclass of
    ``Config``, such as the tests' small network.
    """
    overrides = {}
    for klass in reversed(type(config).__mro__):
        if klass is object or not issubclass(klass, Config) or klass is Config:
            continue
        for key, value in vars(klass).items():
            if key.isupper():
                overrides[key] = value.tolist() if isinstance(value, np.ndarray) else value
    return overrides


# ---------------------------------------------------------------------- replica

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


class _BadRequest(Exception):
    """A client mistake: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _cpu_threads() -> tuple[int, float, float]:
    """(TensorFlow threads, CPUs, GPUs) from what Ray assigned to this replica."""
    import ray
    try:
        assigned = ray.get_runtime_context().get_assigned_resources()
    except Exception:  # outside Ray (a unit test building the class directly)
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
    """The body of one Serve replica: a loaded model, a batch queue, HTTP handling.

    Deployed through :func:`make_deployment`; the constructor takes
    ``ServiceSettings`` as a dict (what Serve serialises), ``reconfigure`` takes
    the batching ``user_config``.
    """

    def __init__(self, settings: dict):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")    # before TensorFlow is imported
        from ray import serve
        from mrcnn.model import MaskRCNN
        from mrcnn.weights import check_weights_file, default_weights_path

        self.settings = ServiceSettings.from_args(settings)
        self.threads, cpus, gpus = _cpu_threads()
        _pin_tensorflow_threads(self.threads)
        config = build_config(self.settings.config, self.settings.config_overrides)
        weights = Path(self.settings.weights) if self.settings.weights else default_weights_path()
        check_weights_file(weights)
        started = time.perf_counter()
        self.model = MaskRCNN(config).load_weights(weights)
        self.class_names = class_names_for(config)
        self.device = (self.model.device if self.model.device.startswith("GPU")
                       else f"CPU ({self.threads} of {os.cpu_count()} cores)")
        self._model_lock = threading.Lock()
        self._token = os.environ.get(TOKEN_ENV) or None
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
        self.model.detect([np.zeros((side, side, 3), np.uint8)])

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
        try:
            self._authorise(request)
            path = _route_path(request.scope)
            if path == "/healthz":
                _require_method(request, "GET")
                status, payload = await self._health()
            elif path == "/detect":
                _require_method(request, "POST")
                status, payload = 200, await self._detect(request)
            else:
                raise _BadRequest(404, f"There is no {path}; use POST /detect or GET /healthz.")
        except _BadRequest as exc:
            status, payload = exc.status, {"error": str(exc)}
        except Exception:
            logger.exception("Request failed")
            status, payload = 500, {"error": "The service failed on this request; "
                                             "try again, and see the replica's log if it persists."}
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return Response(json.dumps(payload), status_code=status, headers=headers,
                        media_type="application/json")

    def _authorise(self, request):
        if self._token is None:
            return
        supplied = request.headers.get("authorization", "")
        scheme, _, token = supplied.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(),
                                                                 self._token.encode()):
            raise _BadRequest(401, "This service needs 'Authorization: Bearer <token>' "
                                   f"with the token in {TOKEN_ENV}.")

    async def _health(self):
        replicas, target, healthy = await asyncio.to_thread(self._deployment_replicas)
        payload = {"status": "ok" if healthy else "not ready", "replicas": replicas,
                   "target_replicas": target, "device": self.device, "replica": self.replica,
                   **self.batching}
        if healthy:
            return 200, payload
        payload["error"] = (f"{replicas} of {target} replicas have loaded the model; "
                            "try again in a few seconds.")
        return 503, payload

    def _deployment_replicas(self) -> tuple[int, int, bool]:
        """(running replicas, all replicas, whether Serve reports the deployment healthy)."""
        from ray import serve
        deployment = serve.status().applications[self._app].deployments[self._deployment]
        states = {str(getattr(k, "value", k)): v for k, v in deployment.replica_states.items()}
        running, total = states.get("RUNNING", 0), sum(states.values())
        healthy = str(getattr(deployment.status, "value", deployment.status)) == "HEALTHY"
        return running, total, healthy and running == total

    async def _detect(self, request) -> dict:
        from mrcnn.imaging import ImageDecodeError, ImageTooLargeError, decode_image
        from mrcnn.export import detections_json
        started = time.perf_counter()
        overrides = self._parse_query(request.query_params)
        body = await self._read_body(request)
        try:
            image = await asyncio.to_thread(decode_image, body, max_pixels=self.settings.max_pixels)
        except ImageTooLargeError as exc:
            raise _BadRequest(413, str(exc)) from None
        except ImageDecodeError as exc:
            raise _BadRequest(400, str(exc)) from None
        decoded = time.perf_counter()
        answer = await self._batched_detect(_Pending(image, overrides, decoded))
        if isinstance(answer, Exception):
            raise answer
        detected = time.perf_counter()
        detections = await asyncio.to_thread(
            detections_json, answer.result, self.class_names, image.shape[:2])
        finished = time.perf_counter()
        timings = {"decode": decoded - started, "queue": answer.queue_s, **answer.timings,
                   "encode": finished - detected, "total": finished - started}
        return {"image_size": [int(image.shape[0]), int(image.shape[1])],
                "device": self.device, "replica": self.replica,
                "batch_size": answer.batch_size,
                "input_shape": [int(v) for v in answer.input_shape],
                "timings_ms": {k: round(v * 1000.0, 3) for k, v in timings.items()},
                "detections": detections}

    def _parse_query(self, params) -> dict:
        """Query parameters -> ``detect()`` overrides, each checked against the config."""
        unknown = sorted(set(params) - set(QUERY_SETTINGS))
        if unknown:
            raise _BadRequest(400, f"Unknown query parameter(s) {unknown}; "
                                   f"allowed: {', '.join(QUERY_SETTINGS)}.")
        config = self.model.config
        # The app offers up to 1024 px and 100 instances (the COCO values) whatever the
        # deployed config; a config with larger values allows those.
        largest = max(int(config.IMAGE_MAX_DIM), CocoConfig.IMAGE_MAX_DIM)
        most = max(int(config.DETECTION_MAX_INSTANCES), CocoConfig.DETECTION_MAX_INSTANCES)
        step = 64 if config.IMAGE_RESIZE_MODE == "square" else 1
        rules = {   # name -> (parser, what the client is told)
            "min_confidence": (lambda t: _number(t, float, 0.0, 1.0), "a number from 0 to 1"),
            "nms_threshold": (lambda t: _number(t, float, 0.01, 1.0), "a number from 0.01 to 1"),
            "max_instances": (lambda t: _number(t, int, 1, most), f"a whole number from 1 to {most}"),
            "image_min_dim": (lambda t: _number(t, int, 0, largest),
                              f"a whole number from 0 to {largest}"),
            "image_max_dim": (lambda t: _number(t, int, step, largest, step),
                              f"a multiple of {step} from {step} to {largest}"),
        }
        overrides = {}
        for name, text in params.items():
            parse, allowed = rules[name]
            try:
                overrides[QUERY_SETTINGS[name]] = parse(text)
            except ValueError:
                raise _BadRequest(400, f"{name} must be {allowed}, not {text!r}.") from None
        return overrides

    async def _read_body(self, request) -> bytes:
        limit = int(self.settings.max_body_bytes)
        too_large = _BadRequest(413, f"The upload is larger than the limit of {limit:,} bytes; "
                                     "send a smaller image.")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        return b"".join(chunks)

    # --------------------------------------------------------------- batching
    async def _detect_batch(self, requests: list[_Pending]) -> list:
        """Run queued requests through the network: one ``detect()`` per group.

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
                results, timings, input_shape = await asyncio.to_thread(
                    self._run_model, images, requests[indices[0]].overrides)
            except Exception as exc:
                logger.exception("Batch of %d failed", len(indices))
                for i in indices:
                    answers[i] = exc
                continue
            for i, result in zip(indices, results):
                answers[i] = _Answer(result, timings, input_shape, len(indices),
                                     started - requests[i].enqueued)
        return answers

    def _run_model(self, images, overrides):
        with self._model_lock:
            results = self.model.detect(images, **overrides)
            timings = self.model.last_timings
        return results, timings.as_dict(), tuple(timings.input_shape)


def _number(text: str, kind, lowest, highest, multiple_of: int = 1):
    """``kind(text)`` if it lies in [lowest, highest] (and is a multiple), else ValueError."""
    value = kind(text)
    if not lowest <= value <= highest or (multiple_of > 1 and value % multiple_of):
        raise ValueError(text)
    return value


def _route_path(scope: dict) -> str:
    """The request path below the application's route prefix."""
    path, root = scope.get("path", "/"), scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return "/" + path.strip("/")


def _require_method(request, method: str):
    if request.method != method:
        raise _BadRequest(405, f"{request.url.path} answers {method} requests only.")


# ------------------------------------------------------------------ application

def make_deployment(*, replicas: int = 1, min_replicas: int | None = None,
                    max_replicas: int | None = None, num_cpus: float = 1.0,
                    num_gpus: float = 0.0, max_batch_size: int = DEFAULT_BATCHING["max_batch_size"],
                    batch_wait_timeout_s: float = DEFAULT_BATCHING["batch_wait_timeout_s"],
                    max_ongoing_requests: int | None = None, env_vars: dict | None = None):
    """The Serve deployment of :class:`MaskRCNNServer` with these resources.

    ``min_replicas``/``max_replicas`` switch on autoscaling (target: one full
    batch in flight per replica) instead of a fixed ``replicas``. ``env_vars``
    reach the replicas' processes (e.g. ``MRCNN_WEIGHTS`` on a cluster).
    """
    from ray import serve
    actor_options: dict = {"num_cpus": num_cpus}
    if num_gpus:
        actor_options["num_gpus"] = num_gpus
    if env_vars:
        actor_options["runtime_env"] = {"env_vars": {k: str(v) for k, v in env_vars.items()}}
    options = {
        "name": DEPLOYMENT_NAME,
        "ray_actor_options": actor_options,
        "user_config": {"max_batch_size": int(max_batch_size),
                        "batch_wait_timeout_s": float(batch_wait_timeout_s)},
        # Room for a full batch waiting while another one runs.
        "max_ongoing_requests": max_ongoing_requests or max(8, 2 * int(max_batch_size)),
        "health_check_period_s": 10,
        "graceful_shutdown_timeout_s": 30,
    }
    if min_replicas is not None or max_replicas is not None:
        low = min_replicas if min_replicas is not None else 1
        options["autoscaling_config"] = {
            "min_replicas": low, "initial_replicas": low,
            "max_replicas": max_replicas if max_replicas is not None else max(low, 1),
            "target_ongoing_requests": int(max_batch_size)}
    else:
        options["num_replicas"] = int(replicas)
    return serve.deployment(MaskRCNNServer, **options)


def make_app(args: dict | None = None, **deployment_options):
    """The Serve application: ``args`` are :class:`ServiceSettings` fields,
    ``deployment_options`` go to :func:`make_deployment`."""
    settings = ServiceSettings.from_args(args)
    return make_deployment(**deployment_options).bind(asdict(settings))


def build_app(args: dict):
    """``import_path: mrcnn.serve:build_app`` in a Serve config (Serve passes ``args:``).

    A Serve config sets replicas, resources and batching under ``deployments:``.
    """
    return make_app(args)


# ------------------------------------------------------------------- local Ray

def start_local_ray(num_cpus: float | None = None, namespace: str = APP_NAME, **init_kwargs):
    """Start Ray on this machine only: 127.0.0.1, no dashboard, no usage statistics.

    Must run before anything else in the process imports Ray (the address
    choice is read then); otherwise it stops and says so rather than listen on
    the machine's network address.
    """
    already_imported = "ray" in sys.modules
    os.environ.update(LOCAL_RAY_ENV)
    import ray
    # address="local": a new Ray here even when `ray start` left a cluster running.
    ray.init(address="local", num_cpus=num_cpus, namespace=namespace, include_dashboard=False,
             **init_kwargs)
    node_ip = ray.util.get_node_ip_address()
    if node_ip not in ("127.0.0.1", "::1", "localhost"):
        ray.shutdown()
        hint = (" (Ray was imported before mrcnn.serve.start_local_ray ran)"
                if already_imported else "")
        raise RuntimeError(
            f"Ray would listen on {node_ip}, not only on 127.0.0.1{hint}; set "
            + " ".join(f"{k}={v}" for k, v in LOCAL_RAY_ENV.items())
            + " in the environment before starting Python.")
    return ray


def wait_until_healthy(url: str, timeout_s: float = 600.0, token: str | None = None,
                       interval_s: float = 0.5) -> dict:
    """Poll ``GET {url}/healthz`` until it answers 200; return its JSON."""
    import httpx
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    deadline = time.monotonic() + timeout_s
    last = "no answer yet"
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            try:
                response = client.get(f"{url.rstrip('/')}/healthz", headers=headers)
                if response.status_code == 200:
                    return response.json()
                last = f"HTTP {response.status_code}: {response.text[:200]}"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(interval_s)
    raise TimeoutError(f"{url}/healthz did not answer 200 within {timeout_s:.0f} s ({last}).")


# ------------------------------------------------------------------------- CLI

def _parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m mrcnn.serve",
        description="Serve Mask R-CNN over HTTP with Ray Serve (POST /detect, GET /healthz).")
    parser.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or None,
                        help="Ray cluster to join (default $RAY_ADDRESS; none: start Ray here)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP host to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    scaling = parser.add_mutually_exclusive_group()
    scaling.add_argument("--replicas", type=int, default=1, help="fixed number of replicas")
    scaling.add_argument("--min-replicas", type=int, help="autoscaling lower bound")
    parser.add_argument("--max-replicas", type=int, help="autoscaling upper bound")
    parser.add_argument("--num-cpus", type=float,
                        help="CPUs per replica (default: this machine's cores / replicas)")
    parser.add_argument("--num-gpus", type=float,
                        help="GPUs per replica (default: 1 where Ray sees enough GPUs, "
                             "a share of them when replicas outnumber them, else 0)")
    parser.add_argument("--max-batch-size", type=int, default=DEFAULT_BATCHING["max_batch_size"])
    parser.add_argument("--batch-wait-ms", type=float,
                        default=DEFAULT_BATCHING["batch_wait_timeout_s"] * 1000.0)
    parser.add_argument("--weights", help="weights file (default $MRCNN_WEIGHTS, "
                                          "else weights/mask_rcnn_coco.h5)")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="config class, module:Class")
    parser.add_argument("--config-overrides", type=json.loads, default={},
                        help='JSON object of config attributes, e.g. \'{"IMAGE_MAX_DIM": 640}\'')
    parser.add_argument("--max-body-mb", type=float, default=ServiceSettings.max_body_bytes / 2**20)
    parser.add_argument("--max-pixels", type=int, default=ServiceSettings.max_pixels)
    parser.add_argument("--name", default=APP_NAME, help="Serve application name")
    args = parser.parse_args(argv)
    if args.max_replicas is not None and args.min_replicas is None:
        args.min_replicas = 1
    return args


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = _parse_args(argv)
    from mrcnn.weights import WeightsError, check_weights_file, default_weights_path
    token = os.environ.get(TOKEN_ENV) or None
    local = not args.address
    weights = args.weights
    if local:
        weights = str(Path(weights or default_weights_path()).expanduser().resolve())
        try:
            check_weights_file(weights)
        except WeightsError as exc:
            print(exc, file=sys.stderr)
            return 1
    settings = ServiceSettings.from_args({
        "config": args.config, "config_overrides": args.config_overrides, "weights": weights,
        "max_body_bytes": int(args.max_body_mb * 2**20), "max_pixels": args.max_pixels})

    if local:
        ray = start_local_ray(log_to_driver=False)
    else:
        import ray
        ray.init(address=args.address, namespace=APP_NAME, log_to_driver=False)
    from ray import serve

    replicas = args.min_replicas or args.replicas
    num_gpus = args.num_gpus
    if num_gpus is None:    # a GPU each; replicas share when there are more of them than GPUs
        gpus = ray.cluster_resources().get("GPU", 0.0)
        num_gpus = min(1.0, gpus / max(1, args.max_replicas or replicas)) if gpus else 0.0
    num_cpus = args.num_cpus
    if num_cpus is None:
        num_cpus = max(0.5, (os.cpu_count() or 1) // max(1, replicas)) if local else 2.0
    env_vars = {} if local else {k: os.environ[k] for k in (TOKEN_ENV, "MRCNN_WEIGHTS")
                                  if os.environ.get(k)}
    app = make_app(asdict(settings), replicas=args.replicas, min_replicas=args.min_replicas,
                    max_replicas=args.max_replicas, num_cpus=num_cpus, num_gpus=num_gpus,
                    max_batch_size=args.max_batch_size,
                    batch_wait_timeout_s=args.batch_wait_ms / 1000.0, env_vars=env_vars)

    signal.signal(signal.SIGTERM, _interrupt)         # stop cleanly while starting, too
    try:
        serve.start(http_options={"host": args.host, "port": args.port})
        serve.run(app, name=args.name, route_prefix="/")
        probe_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
        health = wait_until_healthy(f"http://{probe_host}:{args.port}", token=token)
        print(f"Mask R-CNN service ready at http://{probe_host}:{args.port} "
              f"({health['replicas']} replica(s), {health['device']}); Ctrl-C stops it.",
              flush=True)
        stopping = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stopping.append(signum))
        while not stopping:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        print("Stopping the service ...", flush=True)
        if local:
            serve.shutdown()
        else:
            serve.delete(args.name)
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
