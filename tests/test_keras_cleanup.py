"""Streamlit's clean-up after each script run can't touch the model's TensorFlow state.

Unguarded, ``tests/scripts/cleanup_under_training.py --unguarded`` (training in a thread,
Streamlit's ``_clean_problem_modules`` every 20 ms) dies of a segmentation fault within
seconds of the first step: ``keras.backend.clear_session`` clears TensorFlow's kernel
cache under the running step.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import keras
import pytest
from streamlit.runtime.scriptrunner.script_runner import _clean_problem_modules
from tensorflow.python.eager import context

import studio.services  # noqa: F401 - importing the pages' services installs the guard
from studio import keras_cleanup

ROOT = Path(__file__).resolve().parent.parent


def test_streamlit_cleanup_leaves_tensorflows_kernels_alone(monkeypatch):
    assert keras_cleanup.installed()
    cleared = []
    monkeypatch.setattr(type(context.context()), "clear_kernel_cache",
                        lambda self: cleared.append(True))
    _clean_problem_modules()                     # Streamlit's own function, as it runs it
    assert cleared == []
    keras_cleanup.ORIGINAL_CLEAR_SESSION(free_memory=False)   # the spy does see Keras' own
    assert cleared == [True]
    assert keras.backend.clear_session is keras_cleanup.keep_session


@pytest.mark.slow
def test_training_in_a_thread_survives_streamlit_cleanup_between_runs():
    done = subprocess.run([sys.executable, str(ROOT / "tests/scripts/cleanup_under_training.py"),
                           "20"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = int(done.stdout.split("survived: ")[1].split()[0])
    assert steps > 0, done.stdout
