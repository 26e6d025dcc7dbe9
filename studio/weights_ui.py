"""The weights panel: what is missing, how to fix it, and the one shared download.

On a public app (:mod:`studio.public`) it shows no server path, and only an
operator may start the download.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import streamlit as st

from mrcnn import weights as weights_module
from studio.public import is_operator, operator_unlock, public_mode

logger = logging.getLogger("mrcnn.studio")


class _Download:
    """One weights download for every visitor of this process (they see the same bar)."""

    def __init__(self, path: Path):
        self.path = path
        self.done, self.total = 0, None
        self.error: str | None = None
        self.finished = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="weights-download")
        self.thread.start()

    def _progress(self, done: int, total: int | None) -> None:
        self.done, self.total = done, total

    def _run(self) -> None:
        try:
            weights_module.download_weights(self.path, progress=self._progress)
        except weights_module.WeightsError as exc:
            self.error = str(exc)
        except Exception:  # shown as one sentence, logged in full
            logger.exception("Downloading the weights failed")
            self.error = "The download failed; the server's log says why. Try again."
        finally:
            self.finished = True


@st.cache_resource
def _downloads() -> tuple[dict, threading.Lock]:
    return {}, threading.Lock()


def _download_for(path: Path, start: bool) -> _Download | None:
    tasks, lock = _downloads()
    with lock:
        task = tasks.get(path)
        if task is not None and task.finished and start:
            task = None
        if task is None and start:
            task = tasks[path] = _Download(path)
        return task


def weights_panel(path: Path, problem: str) -> None:
    """Say plainly that the weights are missing or unusable, and how to fix it.

    On a public app the visitor sees no server path, and only an operator may
    start the download (:mod:`studio.public`)."""
    size_mb = weights_module.WEIGHTS_SIZE / 1e6
    public = public_mode()
    if public:
        problem = ("The weights file is missing or unusable on this server; the server's "
                   "log says which.")
    st.warning("**Mask R-CNN needs its pre-trained weights, and they are not usable on this "
               f"server yet.**\n\n{problem}", icon=":material/warning:")
    st.markdown(f"The file is **{weights_module.WEIGHTS_FILENAME}** ({size_mb:.0f} MB), the "
                "published COCO weights of Mask R-CNN."
                + ("" if public else " This app will look for it at:"))
    if not public:
        st.code(str(path), language=None)
    pressed = False
    if operator_unlock("downloading the weights", key="weights"):
        pressed = st.button(f"Download the weights ({size_mb:.0f} MB)", type="primary",
                            icon=":material/download:", key="download_weights")
    task = _download_for(path, start=pressed and is_operator())
    if task is not None:
        bar = st.progress(0.0, text="Connecting…")
        while not task.finished:
            total = task.total or weights_module.WEIGHTS_SIZE
            bar.progress(min(task.done / total, 1.0),
                         text=f"Downloading… {task.done / 1e6:.0f} MB of {total / 1e6:.0f} MB "
                              "(every visitor sees this same download)")
            time.sleep(0.5)
        if task.error:
            bar.empty()
            st.error("The download failed; the server's log says why. Try again later."
                     if public else task.error, icon=":material/cloud_off:")
        elif pressed or path.exists():
            bar.progress(1.0, text="Downloaded and verified.")
            st.rerun()
    if public:
        return
    with st.expander("Or place the file by hand", expanded=True):
        st.markdown(
            f"1. Download [{weights_module.WEIGHTS_FILENAME}]({weights_module.WEIGHTS_URL}) "
            f"({weights_module.WEIGHTS_SIZE:,} bytes) on a machine that can reach GitHub.\n"
            f"2. Copy it to `{path}` on this server.\n"
            "3. Or keep it anywhere and set the environment variable `MRCNN_WEIGHTS` to the "
            "file's full path, then restart the app.\n"
            "4. Check it with `python -m mrcnn.weights --check PATH`, then reload this page.")
