"""The Train page's background run: live losses, per-epoch detections, stop, one per process."""
from __future__ import annotations

import time

import numpy as np
import pytest

from mrcnn.training.background import RunInProgress, TrainingRun
from mrcnn.training.losses import LOSS_NAMES
from mrcnn.training.shapes import ShapesConfig


class TinyShapes(ShapesConfig):
    NAME = "tinyshapes"
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    IMAGES_PER_GPU = 1
    TOP_DOWN_PYRAMID_SIZE = 32
    FPN_CLASSIF_FC_LAYERS_SIZE = 32
    TRAIN_ROIS_PER_IMAGE = 12
    POST_NMS_ROIS_TRAINING = 60
    POST_NMS_ROIS_INFERENCE = 30


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_a_run_reports_losses_and_detections_each_epoch_and_stops(tmp_path):
    run = TrainingRun(layers="all", epochs=50, steps_per_epoch=2, config=TinyShapes(),
                      model_dir=tmp_path)
    assert run.image.shape == (64, 64, 3) and len(run.true_class_ids) >= 1
    run.start()
    try:
        with pytest.raises(RunInProgress):
            TrainingRun(config=TinyShapes(), model_dir=tmp_path).start()
        assert TrainingRun.active() is run
        wait_for(lambda: len(run.snapshot()["epochs"]) >= 2 or not run.alive, 240)
        run.stop()
        run.join(120)
    finally:
        run.stop()
        run.join(120)
    state = run.snapshot()
    assert state["status"] == "stopped", state.get("traceback")
    assert not run.alive and TrainingRun.active() is None
    assert 2 <= len(state["epochs"]) < 50
    losses = state["losses"]
    assert [entry["step"] for entry in losses] == list(range(1, len(losses) + 1))
    assert losses[0]["epoch"] == 1 and losses[-1]["epoch"] == len(state["epochs"])
    assert all(np.isfinite(entry[name]) for entry in losses for name in ("loss", *LOSS_NAMES))
    for done in state["epochs"]:
        detections = done["detections"]
        assert set(detections) >= {"rois", "class_ids", "scores", "masks"}
        assert detections["masks"].shape[:2] == (64, 64)
    assert state["epochs"][-1]["checkpoint"].endswith(".h5")
    # The slot is free again.
    again = TrainingRun(epochs=1, steps_per_epoch=1, config=TinyShapes(), model_dir=tmp_path)
    again.start().join(240)
    assert again.snapshot()["status"] == "finished", again.snapshot().get("traceback")


def test_a_failing_run_says_why(tmp_path):
    run = TrainingRun(epochs=1, steps_per_epoch=1, config=TinyShapes(), model_dir=tmp_path,
                      weights=str(tmp_path / "missing.h5"))
    run.start().join(120)
    state = run.snapshot()
    assert state["status"] == "failed" and "missing.h5" in state["error"]
