"""The operator's settings: the model's config, the service to use, and the limits on
what one visitor may ask for. Each comes from the environment, else from Streamlit
secrets (:func:`studio.public.setting`); ``MRCNN_WEIGHTS`` is read by
:mod:`mrcnn.weights` from the environment only.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from mrcnn.config import DEFAULT_CONFIG_PATH
from mrcnn.precision import PRECISION_ENV, check_precision
from mrcnn.serve.protocol import TOKEN_ENV, URL_ENV
from studio.public import public_mode, setting

logger = logging.getLogger("mrcnn.studio")

CONFIG_ENV = "MRCNN_CONFIG"              # module:Class of the model's config (default COCO)


def model_config_path() -> str:
    """``module:Class`` of the model's config (``MRCNN_CONFIG``, else COCO's)."""
    return str(setting(CONFIG_ENV, DEFAULT_CONFIG_PATH))


def precision_setting() -> str:
    """What the network computes in (``MRCNN_PRECISION``: auto, fp32, bf16, fp16; see
    :mod:`mrcnn.precision`), "auto" when unset or not one of those."""
    value = setting(PRECISION_ENV, "auto")
    try:
        return check_precision(value)
    except ValueError as exc:
        logger.warning("%s Using auto.", exc)
        return "auto"


def service_settings() -> tuple[str | None, str | None]:
    """(URL, token) of the Ray Serve deployment, from the environment or secrets."""
    return setting(URL_ENV) or None, setting(TOKEN_ENV) or None


def _int_setting(name: str, default: int | None) -> int | None:
    """A positive whole number from the settings; ``default`` (may be None: no limit)."""
    value = setting(name, default)
    if value is None:
        return None
    try:
        number = int(value)
        if number <= 0:
            raise ValueError
        return number
    except (TypeError, ValueError):
        logger.warning("%s=%r is not a positive whole number; using %s.", name, value, default)
        return default


@dataclass(frozen=True)
class Limits:
    """What one visitor may ask for (environment or secrets; public defaults when
    ``MRCNN_PUBLIC`` is on, see :mod:`studio.public`)."""
    run_all_images: int        # MRCNN_MAX_RUN_ALL: images per "Run all"
    image_pixels: int          # MRCNN_MAX_PIXELS: pixels per uploaded image
    queued_per_session: int    # MRCNN_MAX_QUEUED: photos one visitor (tab) may have waiting
    results_budget_mb: int     # MRCNN_RESULTS_MB: memory for everything the sessions keep
    queue_batch: int | None    # MRCNN_QUEUE_BATCH: images per network call (None: by device)
    uploads: int = 50          # MRCNN_MAX_UPLOADS: photos one visitor may upload at once
    queued_per_address: int | None = None   # MRCNN_MAX_QUEUED_PER_ADDRESS: across all tabs
    queue_total: int = 200     # MRCNN_MAX_QUEUE_TOTAL: photos waiting, all visitors together
    public: bool = False       # MRCNN_PUBLIC
    video_seconds: int = 60    # MRCNN_MAX_VIDEO_SECONDS: seconds of a clip analysed per run
    video_frames: int = 300    # MRCNN_MAX_VIDEO_FRAMES: frames of a clip analysed per run
    video_mb: int = 200        # MRCNN_MAX_VIDEO_MB: size of an uploaded clip

    @classmethod
    def read(cls) -> Limits:
        public = public_mode()
        batch = setting("MRCNN_QUEUE_BATCH")
        return cls(run_all_images=_int_setting("MRCNN_MAX_RUN_ALL", 10 if public else 20),
                   image_pixels=_int_setting("MRCNN_MAX_PIXELS", 40_000_000),
                   queued_per_session=_int_setting("MRCNN_MAX_QUEUED", 10 if public else 25),
                   results_budget_mb=_int_setting("MRCNN_RESULTS_MB", 512),
                   queue_batch=_int_setting("MRCNN_QUEUE_BATCH", 1) if batch else None,
                   uploads=_int_setting("MRCNN_MAX_UPLOADS", 10 if public else 50),
                   queued_per_address=_int_setting("MRCNN_MAX_QUEUED_PER_ADDRESS",
                                                   8 if public else None),
                   queue_total=_int_setting("MRCNN_MAX_QUEUE_TOTAL", 60 if public else 200),
                   public=public,
                   video_seconds=_int_setting("MRCNN_MAX_VIDEO_SECONDS", 10 if public else 60),
                   video_frames=_int_setting("MRCNN_MAX_VIDEO_FRAMES", 40 if public else 300),
                   video_mb=_int_setting("MRCNN_MAX_VIDEO_MB", 50 if public else 200))
