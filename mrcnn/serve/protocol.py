"""What the Ray Serve service and its client agree on: names, settings, the JSON codec.

Both sides import this module and nothing of each other. No Ray, no TensorFlow.

The answer of ``POST /detect`` carries detections as ``[{"class_id",
"class_name", "score", "box": [y1, x1, y2, x2], "mask": COCO RLE,
"top_classes": [[class_id, probability], ...]}]``, best score first
(:func:`encode_detections`; ``top_classes`` are the classifier head's
``TOP_CLASSES`` most likely classes, when the model reports them);
:func:`decode_detections` turns that list back into a result dict with
:class:`~mrcnn.results.CompactMasks` (and ``class_probs`` holding those
probabilities, zero elsewhere).
"""
from __future__ import annotations

import hashlib
import hmac
import io
import os

import numpy as np

from mrcnn.classes import class_name
from mrcnn.export.coco import encode_masks
from mrcnn.precision import PRECISIONS
from mrcnn.results import CompactMasks

__all__ = ["APP_NAME", "DEPLOYMENT_NAME", "MODEL_STEPS", "QUERY_SETTINGS", "REPLICA_HEADER",
           "RETRYABLE_STATUSES", "SETTING_PARAMETERS", "TOP_CLASSES", "TOKEN_ENV", "URL_ENV",
           "worth_retrying",
           "decode_detections", "encode_detections", "encode_png", "parse_detect_query",
           "query_parameters",
           "read_token", "token_digest", "token_matches"]

APP_NAME = "mrcnn"
DEPLOYMENT_NAME = "MaskRCNN"
#: The service's URL, for the app (environment or Streamlit secrets).
URL_ENV = "MRCNN_SERVE_URL"
#: The bearer token both sides read; the only place its name is spelled.
TOKEN_ENV = "MRCNN_SERVE_TOKEN"

#: The engine's run-time settings the service takes as query parameters.
SETTING_PARAMETERS = {"DETECTION_MIN_CONFIDENCE": "min_confidence",
                      "DETECTION_NMS_THRESHOLD": "nms_threshold",
                      "DETECTION_MAX_INSTANCES": "max_instances",
                      "IMAGE_MIN_DIM": "image_min_dim",
                      "IMAGE_MAX_DIM": "image_max_dim",
                      "precision": "precision"}
#: POST /detect's query parameters, and the config settings they override.
QUERY_SETTINGS = {query: setting for setting, query in SETTING_PARAMETERS.items()}
#: How many of each detection's most likely classes the answer carries.
TOP_CLASSES = 4
#: Server-side steps reported in ``timings_ms``, in the order the page lists them.
MODEL_STEPS = ("mold", "network", "masks", "unmold")
#: Answers worth another try: a gateway that lost its replica, a full queue, too many requests.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
#: Header on every answer a replica itself writes. A 500 with it is the model failing on
#: this request (the same again next time); a 500 without it comes from Ray's proxy when
#: the replica holding the request died, and another replica can answer.
REPLICA_HEADER = "X-Mrcnn-Replica"


def worth_retrying(status: int, headers) -> bool:
    """Whether an answer with ``status`` (and these headers) may succeed on a second try."""
    return status in RETRYABLE_STATUSES or (status == 500 and REPLICA_HEADER not in headers)


def read_token(environ=None) -> str | None:
    """``$MRCNN_SERVE_TOKEN``, or None when unset or empty."""
    return (os.environ if environ is None else environ).get(TOKEN_ENV) or None


def token_digest(token: str) -> str:
    """SHA-256 (hex) of a token: what a replica may be given instead of the token itself."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_matches(supplied: str, digest: str) -> bool:
    """Whether ``supplied`` is the token of ``digest`` (constant-time comparison)."""
    return hmac.compare_digest(token_digest(supplied), digest)


def query_parameters(settings: dict) -> dict:
    """The engine's setting names (``DETECTION_MIN_CONFIDENCE=...``) as /detect's query."""
    unknown = sorted(k for k, v in settings.items()
                     if v is not None and k not in SETTING_PARAMETERS)
    if unknown:
        raise ValueError(f"The service cannot change {unknown} per request; "
                         f"it takes {sorted(SETTING_PARAMETERS)}.")
    return {SETTING_PARAMETERS[k]: v for k, v in settings.items() if v is not None}


def parse_detect_query(params: dict, config) -> dict:
    """POST /detect's query parameters -> ``detect()`` overrides, each checked.

    The ranges allow what the app offers (up to 1024 px and 100 instances, the COCO
    values) whatever the deployed config; a config with larger values allows those.
    Raises ValueError with the sentence for the client.
    """
    unknown = sorted(set(params) - set(QUERY_SETTINGS))
    if unknown:
        raise ValueError(f"Unknown query parameter(s) {unknown}; "
                         f"allowed: {', '.join(QUERY_SETTINGS)}.")
    largest = max(int(config.IMAGE_MAX_DIM), 1024)
    most = max(int(config.DETECTION_MAX_INSTANCES), 100)
    step = 64 if config.IMAGE_RESIZE_MODE == "square" else 1
    rules = {   # name -> (type, lowest, highest, multiple of, what the client is told)
        "min_confidence": (float, 0.0, 1.0, 1, "a number from 0 to 1"),
        "nms_threshold": (float, 0.01, 1.0, 1, "a number from 0.01 to 1"),
        "max_instances": (int, 1, most, 1, f"a whole number from 1 to {most}"),
        "image_min_dim": (int, 0, largest, 1, f"a whole number from 0 to {largest}"),
        "image_max_dim": (int, step, largest, step,
                          f"a multiple of {step} from {step} to {largest}"),
    }
    overrides = {}
    for name, text in params.items():
        if name == "precision":     # one of mrcnn.precision's names
            if text not in PRECISIONS:
                raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, "
                                 f"not {text!r}.")
            overrides["precision"] = text
            continue
        kind, lowest, highest, multiple, allowed = rules[name]
        try:
            value = kind(text)
            if not lowest <= value <= highest or (multiple > 1 and value % multiple):
                raise ValueError
        except ValueError:
            raise ValueError(f"{name} must be {allowed}, not {text!r}.") from None
        overrides[QUERY_SETTINGS[name]] = value
    return overrides


def encode_png(image) -> bytes:
    """A lossless PNG of an image array (made ``HxWx3 uint8`` RGB first): the upload body."""
    from PIL import Image

    from mrcnn.pixels import to_rgb_array
    buffer = io.BytesIO()
    Image.fromarray(to_rgb_array(image)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def encode_detections(result: dict, class_names, image_size=None) -> list[dict]:
    """A result dict (full or compact masks) as the API's JSON-able list, best score first.

    ``image_size`` ``(height, width)``, when given, must match the masks.
    """
    masks = result["masks"]
    size = masks.image_shape if isinstance(masks, CompactMasks) else np.shape(masks)[:2]
    if image_size is not None and tuple(size) != tuple(int(v) for v in tuple(image_size)[:2]):
        raise ValueError(f"masks are {tuple(size)} but the image is {tuple(image_size)[:2]}")
    rois = np.asarray(result["rois"]).reshape(-1, 4)
    class_ids = np.asarray(result["class_ids"]).reshape(-1)
    scores = np.asarray(result["scores"]).reshape(-1)
    rles = encode_masks(masks)
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    probabilities = result.get("class_probs")
    detections = []
    for i in order:
        detection = {"class_id": int(class_ids[i]),
                     "class_name": class_name(class_names, class_ids[i]),
                     "score": float(scores[i]),
                     "box": [int(v) for v in rois[i]],
                     "mask": rles[i]}
        if probabilities is not None:
            best = np.argsort(-probabilities[i], kind="stable")[:TOP_CLASSES]
            detection["top_classes"] = [[int(c), float(probabilities[i][c])] for c in best]
        detections.append(detection)
    return detections


def decode_detections(detections: list[dict], image_size) -> dict:
    """The API's detection list back to a result dict with :class:`CompactMasks` masks.

    Each mask is decoded and cropped to the rectangle that holds it, one at a time.
    """
    from mrcnn.export.coco import decode_mask
    height, width = (int(v) for v in image_size)
    count = len(detections)
    result = {
        "rois": np.array([d["box"] for d in detections], dtype=np.int32).reshape(count, 4),
        "class_ids": np.array([d["class_id"] for d in detections], dtype=np.int32),
        "scores": np.array([d["score"] for d in detections], dtype=np.float32),
        "masks": CompactMasks.from_masks((height, width),
                                         (decode_mask(d["mask"]) for d in detections)),
    }
    if detections and all("top_classes" in d for d in detections):
        classes = 1 + max(int(c) for d in detections for c, _ in d["top_classes"])
        probabilities = np.zeros((count, classes), np.float32)
        for i, detection in enumerate(detections):
            for class_id, probability in detection["top_classes"]:
                probabilities[i, int(class_id)] = probability
        result["class_probs"] = probabilities
    return result
