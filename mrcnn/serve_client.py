"""Client of the Ray Serve deployment (``mrcnn.serve``), as an app backend.

``ServeBackend(url)`` has the in-process backend's interface
(``detect(image, **settings) -> DetectionRun`` and ``describe()``), so the app
renders the service's answer unchanged: the image goes up as a lossless PNG,
the COCO RLE masks come back and are decoded to matterport's ``(H, W, N)``
bool array. Connection errors, 5xx and 429 answers are retried with
exponential backoff (a replica that dies mid-request is replaced by Serve; the
retry lands on a live one); a 4xx answer is the caller's mistake and is raised
at once with the service's own sentence.

No TensorFlow and no Ray here: the app imports this module.
"""
from __future__ import annotations

import io
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

from mrcnn.backend import DetectionRun

TOKEN_ENV = "MRCNN_SERVE_TOKEN"

# The engine's run-time settings the service takes as query parameters.
SETTING_PARAMETERS = {"DETECTION_MIN_CONFIDENCE": "min_confidence",
                      "DETECTION_NMS_THRESHOLD": "nms_threshold",
                      "DETECTION_MAX_INSTANCES": "max_instances",
                      "IMAGE_MIN_DIM": "image_min_dim",
                      "IMAGE_MAX_DIM": "image_max_dim"}
# Server-side steps reported in ``timings_ms``, in the order the page lists them.
MODEL_STEPS = ("mold", "network", "masks", "unmold")


class ServeError(RuntimeError):
    """The service refused the request or could not be reached; ``str()`` says why.

    ``status`` is the HTTP status of the last answer (``None`` when there was none).
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry: ``attempts`` tries in all, waits doubling
    from ``backoff_s`` up to ``max_backoff_s``, never past ``deadline_s`` in total.

    The defaults wait up to about a minute in all: long enough for Serve to
    replace the only replica of a deployment on a small CPU machine.
    """
    attempts: int = 10
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    deadline_s: float = 180.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)

    @staticmethod
    def retryable(status: int) -> bool:
        return status >= 500 or status == 429


def encode_png(image) -> bytes:
    """A lossless PNG of an image array (made ``HxWx3 uint8`` RGB first)."""
    from PIL import Image
    from mrcnn.imaging import to_rgb_array
    buffer = io.BytesIO()
    Image.fromarray(to_rgb_array(image)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def query_parameters(settings: dict) -> dict:
    """The engine's setting names (``DETECTION_MIN_CONFIDENCE=...``) as /detect's query."""
    unknown = sorted(k for k, v in settings.items()
                     if v is not None and k not in SETTING_PARAMETERS)
    if unknown:
        raise ValueError(f"The service cannot change {unknown} per request; "
                         f"it takes {sorted(SETTING_PARAMETERS)}.")
    return {SETTING_PARAMETERS[k]: v for k, v in settings.items() if v is not None}


def result_from_detections(detections: list[dict], image_size) -> dict:
    """The API's detection dicts back to matterport's result dict."""
    from mrcnn.export import decode_mask
    h, w = (int(v) for v in image_size)
    count = len(detections)
    masks = np.zeros((h, w, count), dtype=bool)
    for i, detection in enumerate(detections):
        masks[:, :, i] = decode_mask(detection["mask"])
    return {
        "rois": np.array([d["box"] for d in detections], dtype=np.int32).reshape(count, 4),
        "class_ids": np.array([d["class_id"] for d in detections], dtype=np.int32),
        "scores": np.array([d["score"] for d in detections], dtype=np.float32),
        "masks": masks,
    }


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
    from mrcnn.export import decode_mask
    if want["mask"]["size"] != got["mask"]["size"]:
        return False
    wanted, given = decode_mask(want["mask"]), decode_mask(got["mask"])
    return int((wanted != given).sum()) <= max(2, mask_tolerance * int(wanted.sum()))


class ServeBackend:
    """The Ray Serve deployment at ``url`` as a backend (``MRCNN_SERVE_URL``).

    ``token`` defaults to ``$MRCNN_SERVE_TOKEN``. Thread-safe: Streamlit
    sessions share one instance.
    """

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 120.0,
                 retry: RetryPolicy = RetryPolicy()):
        import httpx
        self.url = url.rstrip("/")
        self.name = self.url
        token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retry = retry
        # trust_env=False: the service is addressed directly, never via a proxy.
        self._client = httpx.Client(timeout=timeout_s, headers=headers, trust_env=False)
        self._lock = threading.Lock()
        self.retries = 0   # requests re-sent so far (for the page and the load test)

    def describe(self) -> dict:
        """Backend, device and replicas from ``/healthz``; never raises (the page shows it)."""
        info = {"backend": self.url, "device": "unknown", "replicas": None}
        try:
            response = self._client.get(f"{self.url}/healthz", timeout=10.0)
            payload = response.json()
        except Exception as exc:
            info["status"] = (f"The service at {self.url} did not answer ({type(exc).__name__}); "
                              "start it with `python -m mrcnn.serve` or fix MRCNN_SERVE_URL.")
            return info
        if response.status_code not in (200, 503):
            info["status"] = f"HTTP {response.status_code}: {payload.get('error', '')}".strip()
            return info
        info.update(device=payload.get("device", "unknown"), replicas=payload.get("replicas"),
                    target_replicas=payload.get("target_replicas"),
                    status=payload.get("status", "ok"),
                    max_batch_size=payload.get("max_batch_size"))
        return info

    def detect(self, image, **settings) -> DetectionRun:
        start = time.perf_counter()
        params = query_parameters(settings)
        body = encode_png(image)
        payload, attempts = self._post_detect(body, params)
        result = result_from_detections(payload["detections"], payload["image_size"])
        server = {k: v / 1000.0 for k, v in payload.get("timings_ms", {}).items()}
        timings = {step: server.get(step, 0.0) for step in MODEL_STEPS}
        timings.update({"server": server.get("total", 0.0), "total": time.perf_counter() - start})
        return DetectionRun(
            result, timings, tuple(payload.get("input_shape", ())), payload.get("device", ""),
            self.url, extra={"replica": payload.get("replica"), "attempts": attempts,
                             "batch_size": payload.get("batch_size"),
                             "detections": payload["detections"]})

    def _post_detect(self, body: bytes, params: dict) -> tuple[dict, int]:
        import httpx
        deadline = time.monotonic() + self.retry.deadline_s
        problem = "no attempt made"
        status = None
        for attempt in range(1, self.retry.attempts + 1):
            try:
                response = self._client.post(f"{self.url}/detect", params=params, content=body,
                                             headers={"Content-Type": "image/png"})
            except httpx.TransportError as exc:
                problem, status = f"{type(exc).__name__}: {exc}", None
            else:
                if response.status_code == 200:
                    return response.json(), attempt
                status = response.status_code
                problem = f"HTTP {status}: {_error_text(response)}"
                if not self.retry.retryable(status):
                    raise ServeError(f"The service refused the image: {_error_text(response)}",
                                     status)
            wait = self.retry.delay(attempt)
            if attempt == self.retry.attempts or time.monotonic() + wait > deadline:
                break
            with self._lock:
                self.retries += 1
            time.sleep(wait)
        raise ServeError(f"The service at {self.url} did not answer after {attempt} attempt(s) "
                         f"({problem}); check that it runs (`python -m mrcnn.serve`).", status)

    def close(self):
        self._client.close()


def _error_text(response) -> str:
    try:
        return str(response.json().get("error") or response.text)
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
