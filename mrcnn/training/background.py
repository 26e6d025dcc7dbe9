"""One short training run in a background thread, watched by any number of viewers.

The app's Train page uses it; it has no Streamlit in it. At most one run trains
per process (``TrainingRun.start`` refuses a second while one is alive): the
machine's cores are shared with detection. Viewers read ``snapshot()``, a
consistent copy of the run's state:

- ``status``: "starting", "training", "stopping", "finished", "stopped" or "failed"
  (``error`` then says why);
- ``losses``: one dict per step (``step``, ``epoch``, ``loss`` and the five losses);
- ``epochs``: one dict per finished epoch with its ``checkpoint`` and
  ``detections`` (``detect()``'s result on the fixed validation image ``image``).
"""
from __future__ import annotations

import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np

from mrcnn.training.shapes import ShapesConfig, draw_shapes, shapes_dataset


class RunInProgress(RuntimeError):
    """A training run is already going in this process."""


class TrainingRun:
    """A shapes training run (``ShapesConfig``, 128x128, unless ``config`` is given).

    layers: "heads" or "all" (any ``layers=`` of ``train()``).
    epochs, steps_per_epoch: the length of the run (BATCH_SIZE images per step).
    weights: a weights file to start from; None trains from scratch (BatchNorm
        statistics calibrated first).
    """

    _lock = threading.Lock()
    _active: TrainingRun | None = None

    def __init__(self, layers="all", epochs=4, steps_per_epoch=25, learning_rate=None,
                 weights=None, model_dir=None, config=None, seed=0,
                 validation_seed=4_000_000):
        base = type(config) if config is not None else ShapesConfig
        self.config = type("TrainPageConfig", (base,), {
            "STEPS_PER_EPOCH": int(steps_per_epoch), "VALIDATION_STEPS": 0})()
        self.layers, self.epochs, self.weights = layers, int(epochs), weights
        self.learning_rate = learning_rate or self.config.LEARNING_RATE
        self.model_dir = Path(model_dir or Path(tempfile.gettempdir()) / "mrcnn_train_page")
        self.seed = seed
        size = self.config.IMAGE_MAX_DIM
        self.image, self.true_masks, self.true_class_ids = draw_shapes(
            np.random.default_rng(validation_seed), size, size)
        self.class_names = list(getattr(self.config, "CLASS_NAMES", []))
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._state = {"status": "starting", "error": None, "losses": [], "epochs": [],
                       "started": None, "finished": None, "layers": layers,
                       "total_epochs": self.epochs, "steps_per_epoch": int(steps_per_epoch)}
        self._thread = None

    # ------------------------------------------------------------ control
    @classmethod
    def active(cls) -> TrainingRun | None:
        """The run training in this process now, if any."""
        with cls._lock:
            run = cls._active
            return run if run is not None and run.alive else None

    def start(self) -> TrainingRun:
        with TrainingRun._lock:
            current = TrainingRun._active
            if current is not None and current.alive:
                raise RunInProgress("A training run is already going in this process; "
                                    "watch it or stop it first.")
            TrainingRun._active = self
            self._state["started"] = time.time()
            self._thread = threading.Thread(target=self._run, name="mrcnn-training", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to stop after the current step (the epoch is still checkpointed)."""
        self._stop.set()
        self._update(status="stopping")

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def join(self, timeout=None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def snapshot(self) -> dict:
        with self._state_lock:
            state = dict(self._state)
            state["losses"] = list(state["losses"])
            state["epochs"] = list(state["epochs"])
        return state

    # ------------------------------------------------------------ thread
    def _update(self, **changes):
        with self._state_lock:
            if self._state["status"] in ("finished", "stopped", "failed") and "status" in changes:
                changes.pop("status")
            self._state.update(changes)

    def _run(self):
        try:
            self._train()
            self._update(status="stopped" if self._stop.is_set() else "finished")
        except Exception as error:                      # reported to every viewer
            self._update(status="failed", error=f"{type(error).__name__}: {error}",
                         traceback=traceback.format_exc())
        finally:
            self._update(finished=time.time())

    def _train(self):
        from mrcnn.model import MaskRCNN
        from mrcnn.training.calibration import calibrate_batchnorm
        cfg = self.config
        dataset = shapes_dataset(5000, self.seed + 1, cfg.IMAGE_MAX_DIM)
        model = MaskRCNN(mode="training", config=cfg, model_dir=self.model_dir)
        if self.weights:
            model.load_weights(self.weights)
        else:
            calibrate_batchnorm(model, dataset, seed=self.seed)
        run = self

        class Watcher:
            def on_train_batch_end(self, step, logs):
                with run._state_lock:
                    epoch = model.epoch + 1
                    losses = run._state["losses"]
                    losses.append({"step": len(losses) + 1, "epoch": epoch,
                                   **{k: float(v) for k, v in logs.items()}})
                    if run._state["status"] == "starting":
                        run._state["status"] = "training"

            def on_epoch_end(self, epoch, logs):
                result = model.detect([run.image], DETECTION_MIN_CONFIDENCE=0.5)[0]
                with run._state_lock:
                    run._state["epochs"].append({"epoch": epoch + 1,
                                                 "checkpoint": logs["checkpoint"],
                                                 "detections": result, "logs": logs})

        model.train(dataset, None, self.learning_rate, epochs=self.epochs, layers=self.layers,
                    custom_callbacks=[Watcher()], stop_event=self._stop, keep_checkpoints=2,
                    seed=self.seed, verbose=0)
