"""Streamlit's clean-up between script runs, made harmless to a model serving other visitors.

After every script run, on the thread that ran it, Streamlit calls
``keras.backend.clear_session()`` (``_clean_problem_modules`` in
``streamlit/runtime/scriptrunner/script_runner.py``). With TensorFlow that ends in
``context.context().clear_kernel_cache()``, which frees the eager context's cached and
stateful kernels while other threads may be executing them. A training thread in the
app's process died of it within a minute ("corrupted double-linked list", a general
protection fault in ``libtensorflow_framework.so.2``); Keras' other resets (its name
counters, ``reset_default_graph``) hammered the same way did no harm (README, "The
Train page crash").

The clean-up exists for scripts that build a new Keras model on every run. This app
builds its model once per process (``mrcnn.model.shared_model``) and trains in a child
process, so there is nothing for it to free: :func:`install` makes the call that
Streamlit makes leave TensorFlow's state alone. ``ORIGINAL_CLEAR_SESSION`` is Keras'
own, for code that means it.
"""
from __future__ import annotations

import keras

ORIGINAL_CLEAR_SESSION = keras.backend.clear_session


def keep_session(free_memory: bool = True) -> None:
    """What ``keras.backend.clear_session`` does in the app's process: nothing.

    Neither TensorFlow's kernel cache (the crash) nor Keras' name counters (a model
    being built in another thread would get clashing names) are reset, and no full
    ``gc.collect()`` runs after every rerun (about 20 ms each, for nothing to free).
    """


def install() -> None:
    """Make Streamlit's per-run ``keras.backend.clear_session()`` call :func:`keep_session`."""
    keras.backend.clear_session = keep_session


def installed() -> bool:
    return keras.backend.clear_session is keep_session
