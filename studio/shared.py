"""The Streamlit glue every page shares: one model (or service client), one fair queue,
one store of results per process; settings from the environment or Streamlit secrets;
the session keys pages exchange; the weights panel; waiting in line.

Pages call :func:`ready_services` (which explains on the page what is missing
when it returns None), then :func:`run_through_queue` for every network run.
"""
from __future__ import annotations

import gc
import logging
import uuid
from concurrent.futures import CancelledError
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from mrcnn import weights as weights_module
from mrcnn.classes import class_names_for
from mrcnn.config import DEFAULT_CONFIG_PATH, config_from_path
from mrcnn.serve.protocol import TOKEN_ENV, URL_ENV
from studio import keras_cleanup
from studio.fair_queue import FairQueue
from studio.jobs import JobRequest, run_batch
from studio.public import client_address, public_mode, setting
from studio.run_store import RunStore
from studio.weights_ui import weights_panel

# Before any TensorFlow work in this process: Streamlit's clean-up after each script
# run must not clear TensorFlow's kernels under a running network (studio.keras_cleanup).
keras_cleanup.install()

logger = logging.getLogger("mrcnn.studio")

# Session keys the pages exchange.
KEY_IMAGE = "selected_image"             # RGB uint8 array the main page shows
KEY_IMAGE_NAME = "selected_image_name"
KEY_IMAGE_DIGEST = "selected_image_digest"

CONFIG_ENV = "MRCNN_CONFIG"              # module:Class of the model's config (default COCO)
DEFAULT_CONFIG = DEFAULT_CONFIG_PATH


# ------------------------------------------------------------------ settings

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
                   public=public)


def service_settings() -> tuple[str | None, str | None]:
    """(URL, token) of the Ray Serve deployment, from the environment or secrets."""
    return setting(URL_ENV) or None, setting(TOKEN_ENV) or None


def session_id() -> str:
    """This visitor's id in the queue and the run store: ``<Streamlit session>/<random>``.

    The random part lives in the session state, so it is unique even where
    Streamlit gives every session the same id (``AppTest``).
    """
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    ctx = get_script_run_ctx()
    own = st.session_state.setdefault("_studio_visitor", uuid.uuid4().hex[:12])
    return f"{ctx.session_id if ctx is not None else 'no-session'}/{own}"


def session_alive(session: str) -> bool:
    """Whether a browser session still exists (True outside a server, e.g. AppTest)."""
    from streamlit.runtime import Runtime
    if not Runtime.exists():
        return True
    return Runtime.instance().is_active_session(session.split("/", 1)[0])


# ------------------------------------------------------------------ services

@dataclass
class Services:
    """What every page of this server process shares."""
    backend: object                 # mrcnn.serve.backends.Backend
    queue: FairQueue
    store: RunStore
    config: object                  # the model's mrcnn.Config
    config_path: str
    class_names: list
    model_key: str                  # identifies weights + config (+ service) in run keys
    weights_path: Path
    limits: Limits

    def local_model(self):
        """The model in this process (the teaching page needs its intermediate stages)."""
        model = getattr(self.backend, "model", None)
        if model is None:
            from mrcnn.model import shared_model
            model = shared_model(self.weights_path, self.config)
        return model


def _run_jobs(services_holder: dict, jobs: list) -> list:
    """The queue's worker: a batch of one kind of job, by ``studio.jobs.RUNNERS``."""
    return run_batch(services_holder["services"], jobs)


def _result_bytes(value) -> int:
    """What a stored result costs: its own ``nbytes``, else the numpy arrays among its
    fields (and in its fields' dicts), which hold nearly all of its memory."""
    import numpy as np
    nbytes = getattr(value, "nbytes", None)
    if nbytes is not None:
        return int(nbytes)
    total = 4096
    for field in vars(value).values() if hasattr(value, "__dict__") else ():
        items = field.values() if isinstance(field, dict) else (field,)
        total += sum(item.nbytes for item in items if isinstance(item, np.ndarray))
    return total


def _payload_bytes(payload) -> int:
    """Memory a queued job holds: its image (and a teaching rerun's record)."""
    total = 0
    for value in payload.values() if isinstance(payload, dict) else ():
        total += int(getattr(value, "nbytes", 0) or 0)
    return total


@st.cache_resource(show_spinner="Loading Mask R-CNN. This happens once per server and "
                                "takes about half a minute…")
def _services(weights_path: str, url: str | None, token: str | None, config_path: str,
              limits: Limits) -> Services:
    from mrcnn.serve.backends import make_backend
    config = config_from_path(config_path)

    def load():
        from mrcnn.model import shared_model  # one model object per process
        return shared_model(weights_path, config)

    backend = make_backend(model_loader=load, url=url, token=token)
    device = backend.describe().get("device") or ""
    batch = limits.queue_batch or (4 if url or str(device).startswith("GPU") else 1)
    holder: dict = {}
    queue = FairQueue(lambda jobs: _run_jobs(holder, jobs), max_batch=batch,
                      is_alive=session_alive, max_per_session=limits.queued_per_session,
                      max_per_address=limits.queued_per_address, max_total=limits.queue_total,
                      payload_bytes=_payload_bytes)
    store = RunStore(limits.results_budget_mb * 2**20, _result_bytes, is_alive=session_alive,
                     extra_bytes=queue.queued_bytes)
    services = Services(backend, queue, store, config, config_path, class_names_for(config),
                        f"{url or weights_path}|{config_path}", Path(weights_path), limits)
    holder["services"] = services
    # A full gc.collect() walking TensorFlow's and the model's millions of long-lived
    # objects took ~0.3 s. Freezing them once moves them out of its sight.
    gc.freeze()
    return services


def ready_services(need_local_model: bool = False,
                   explain_missing_weights: bool = True) -> Services | None:
    """The shared services, or None after explaining on the page why there are none.

    ``need_local_model``: the page runs the network in this process even when a
    service is configured (the teaching page's intermediate stages).
    ``explain_missing_weights``: show the weights panel (download button); else
    one error sentence pointing to the main page, which has it.
    """
    url, token = service_settings()
    path = weights_module.default_weights_path()
    if not url or need_local_model:
        try:
            weights_module.check_weights_file(path)
        except weights_module.WeightsFileError as exc:
            if url:
                st.warning(
                    "This page shows the network's intermediate stages, which only a model "
                    "running in this process has: the service at the configured "
                    f"{URL_ENV} returns final detections only. Put the weights file "
                    f"({weights_module.WEIGHTS_FILENAME}) on this server and set "
                    "MRCNN_WEIGHTS to it (or run `python -m mrcnn.weights`), then reload. "
                    f"The main page works through the service meanwhile.",
                    icon=":material/info:")
            elif explain_missing_weights:
                weights_panel(path, str(exc))
            elif public_mode():
                st.error("The model's weights are not on this server yet, so this page "
                         "can't run.", icon=":material/warning:")
            else:
                st.error(f"{exc} The main page offers to download them.",
                         icon=":material/warning:")
            return None
    config_path = str(setting(CONFIG_ENV, DEFAULT_CONFIG))
    try:
        return _services(str(path), url, token, config_path, Limits.read())
    except Exception:  # a page must not die on a bad file or service
        logger.exception("The model could not be started")
        st.error("The model could not be started on this server. Its operator can find the "
                 "reason in the server's log; replace the weights file or fix the "
                 "configuration, then reload the page.", icon=":material/error:")
        return None


# --------------------------------------------------------------- the queue

def run_through_queue(services: Services, job: JobRequest, *, slot: str = "main",
                      what: str = "your photo", wrap=lambda result: result, pin: bool = True):
    """The stored result of ``job`` (a ``studio.jobs`` request), or a run through the
    fair queue while the page shows the visitor's place in line; ``wrap(result)`` is
    what gets stored. ``pin``: this is the result the visitor is looking at (the store
    keeps it while the session lives); a side result, such as a rerun of part of it,
    is not. Raises ``QueueFull`` with a sentence for the visitor."""
    key = job.key
    session = session_id()
    stored = services.store.get(session, key, pin=pin)
    if stored is not None:
        return stored
    why = services.store.why_missing(session, key)
    if why:
        st.info(f"Running the network again for {what}: its results were dropped because "
                f"{why}.", icon=":material/history:")
    queued = services.queue.submit(session, key, job.kind, job.payload, slot=slot,
                                   batch_group=job.batch_group, address=client_address())
    result = wait_in_line(services, queued, what)
    stored = services.store.get(session, key, pin=pin)
    if stored is None:
        stored = wrap(result)
        services.store.put(session, key, stored, pin=pin)
    return stored


def wait_in_line(services: Services, job, what: str):
    """Block until ``job`` is done, showing the visitor's place and an estimate."""
    session = session_id()
    box = st.empty()
    finished = False
    shown = None
    try:
        while True:
            try:
                result = job.future.result(timeout=0.4)
                finished = True
                return result
            except FutureTimeout:
                pass
            except CancelledError:
                finished = True
                raise RuntimeError(f"The run for {what} was dropped: a newer request from "
                                   "this page replaced it.") from None
            text = standing_text(services.queue.standing(job), what)
            if text != shown:               # unchanged: nothing to send to the browser
                box.info(text, icon=":material/hourglass_top:")
                shown = text
    finally:
        if not finished:
            services.queue.detach(session, job)
        try:
            box.empty()
        except BaseException:  # noqa: BLE001 - the page is going away anyway
            pass


def standing_text(standing, what: str) -> str:
    """"2 photos ahead of yours, about 8 s" and its variants. Past 10 s the estimate
    moves in steps of 5 s: each change is a message to the browser, and a crowd of
    waiting tabs redrawing every second takes CPU from the network."""
    seconds = max(1, round(standing.eta_s))
    if seconds > 10:
        seconds = 5 * round(seconds / 5)
    if standing.running:
        return f"The network is working on {what} now, about {seconds} s."
    if standing.ahead == 0:
        return f"{what[0].upper()}{what[1:]} is next in line, about {seconds} s."
    photos = "photo" if standing.ahead == 1 else "photos"
    return (f"{standing.ahead} {photos} ahead of yours in the shared queue, about {seconds} s. "
            "Visitors take turns; your place updates while you wait.")
