"""Train in a thread while the main thread runs Streamlit's own clean-up between script
runs, as fast as a crowd's reruns would; print the steps trained and exit 0 if the
process survived. ``--unguarded`` skips ``studio.keras_cleanup.install()`` (the crash).

usage: python cleanup_under_training.py SECONDS [--unguarded]
"""
from __future__ import annotations

import faulthandler
import sys
import threading
import time

from streamlit.runtime.scriptrunner.script_runner import _clean_problem_modules

from mrcnn.model import MaskRCNN
from mrcnn.testing.configs import TINY_SHAPES
from mrcnn.training.shapes import shapes_dataset
from mrcnn.training.trainer import Trainer
from studio import keras_cleanup
from studio.training_run import RunSpec


def main() -> None:
    faulthandler.enable()
    seconds = float(sys.argv[1])
    if "--unguarded" not in sys.argv:
        keras_cleanup.install()
    config = RunSpec(steps_per_epoch=2, config_overrides=TINY_SHAPES).config()
    model = MaskRCNN(mode="training", config=config, model_dir="/tmp/cleanup_under_training")
    steps, stop = [0], threading.Event()

    class Count:
        def on_train_batch_end(self, step, logs):
            steps[0] += 1

    trainer = threading.Thread(target=Trainer(model).train, args=(
        shapes_dataset(100, 1, 64), None, 0.001, 10**6, "all"),
        kwargs={"custom_callbacks": [Count()], "stop_event": stop, "verbose": 0}, daemon=True)
    trainer.start()
    while not steps[0] and trainer.is_alive():      # built and traced: now it runs steps
        time.sleep(0.1)
    first = steps[0]
    deadline = time.monotonic() + seconds
    cleanups = 0
    while time.monotonic() < deadline and trainer.is_alive():
        _clean_problem_modules()          # what Streamlit runs after every script run
        cleanups += 1
        time.sleep(0.02)
    stop.set()
    trainer.join(60)
    print(f"survived: {steps[0] - first} steps during {cleanups} clean-ups", flush=True)


if __name__ == "__main__":
    main()
