"""What every page of one server process shares: one model (or service client), one
fair queue, one store of results.

Pages call :func:`ready_services`, which explains on the page what is missing when it
returns None, then :func:`studio.queue_ui.run_through_queue` for every network run. The
queue's worker hands each batch to :func:`studio.jobs.run_batch`.
"""
from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from mrcnn import weights as weights_module
from mrcnn.classes import class_names_for
from mrcnn.config import config_from_path
from mrcnn.serve.protocol import URL_ENV
from studio import keras_cleanup
from studio.fair_queue import FairQueue
from studio.jobs import run_batch
from studio.public import public_mode
from studio.run_store import RunStore
from studio.sessions import session_alive
from studio.settings import Limits, model_config_path, precision_setting, service_settings
from studio.sizing import payload_bytes, result_bytes
from studio.weights_ui import weights_panel

# Before any TensorFlow work in this process: Streamlit's clean-up after each script
# run must not clear TensorFlow's kernels under a running network (studio.keras_cleanup).
# Every page that loads the model comes through here.
keras_cleanup.install()

logger = logging.getLogger("mrcnn.studio")


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
            model.precision = precision_setting()
        return model


def _run_jobs(services_holder: dict, jobs: list) -> list:
    """The queue's worker: a batch of one kind of job, by ``studio.jobs.RUNNERS``."""
    return run_batch(services_holder["services"], jobs)


@st.cache_resource(show_spinner="Loading Mask R-CNN. This happens once per server and "
                                "takes about half a minute…")
def _services(weights_path: str, url: str | None, token: str | None, config_path: str,
              limits: Limits) -> Services:
    from mrcnn.serve.backends import make_backend
    config = config_from_path(config_path)

    def load():
        from mrcnn.model import shared_model  # one model object per process
        model = shared_model(weights_path, config)
        model.precision = precision_setting()    # MRCNN_PRECISION, from secrets too
        return model

    backend = make_backend(model_loader=load, url=url, token=token)
    device = backend.describe().get("device") or ""
    batch = limits.queue_batch or (4 if url or str(device).startswith("GPU") else 1)
    holder: dict = {}
    queue = FairQueue(lambda jobs: _run_jobs(holder, jobs), max_batch=batch,
                      is_alive=session_alive, max_per_session=limits.queued_per_session,
                      max_per_address=limits.queued_per_address, max_total=limits.queue_total,
                      payload_bytes=payload_bytes)
    store = RunStore(limits.results_budget_mb * 2**20, result_bytes, is_alive=session_alive,
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
            _explain_missing_weights(path, exc, url, explain_missing_weights)
            return None
    try:
        return _services(str(path), url, token, model_config_path(), Limits.read())
    except Exception:  # a page must not die on a bad file or service
        logger.exception("The model could not be started")
        st.error("The model could not be started on this server. Its operator can find the "
                 "reason in the server's log; replace the weights file or fix the "
                 "configuration, then reload the page.", icon=":material/error:")
        return None


def _explain_missing_weights(path: Path, error: Exception, url: str | None,
                             offer_download: bool) -> None:
    """Say on the page why there is no model: no weights here (the weights panel, or one
    sentence), or a service that can't give this page the stages it needs."""
    if url:
        st.warning(
            "This page shows the network's intermediate stages, which only a model "
            "running in this process has: the service at the configured "
            f"{URL_ENV} returns final detections only. Put the weights file "
            f"({weights_module.WEIGHTS_FILENAME}) on this server and set "
            "MRCNN_WEIGHTS to it (or run `python -m mrcnn.weights`), then reload. "
            f"The main page works through the service meanwhile.",
            icon=":material/info:")
    elif offer_download:
        weights_panel(path, str(error))
    elif public_mode():
        st.error("The model's weights are not on this server yet, so this page "
                 "can't run.", icon=":material/warning:")
    else:
        st.error(f"{error} The main page offers to download them.",
                 icon=":material/warning:")
