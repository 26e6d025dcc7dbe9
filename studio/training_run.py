"""One training run in a child process, watched by every visitor of the app.

The Train page starts it; nothing here imports Streamlit. The run trains in its own
process (``multiprocessing`` with ``spawn``) at the lowest CPU priority, never in a
thread of the app: its memory goes back to the system when it ends, a photo uploaded
meanwhile is answered first, and *Stop* ends it within 2 s at any stage (build,
calibration, a step, a checkpoint) by terminating, then killing it. Only a finished
checkpoint is ever left: a half-written ``.tmp`` is removed.

The child reports through a pipe, and a reader thread in the app's process folds the
reports into the state that ``snapshot()`` copies:

- ``status``: "starting", "training", "stopping", "finished", "stopped" or "failed"
  (``error`` then says why; the traceback goes to the server's log);
- ``losses``: one dict per step (``step``, ``epoch``, ``loss`` and the five losses);
- ``epochs``: one dict per finished epoch with its ``checkpoint`` (a path in the run's
  folder) and ``detections`` (``detect()`` on the fixed validation ``image``).

At most one run is alive per process (:class:`RunInProgress`). Each run gets a folder
of its own under ``runs_dir``; only the newest ``KEEP_RUNS`` folders are kept.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import sys
import threading
import time
import traceback
import types
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mrcnn.training.shapes import draw_shapes

logger = logging.getLogger("mrcnn.studio.training")

KEEP_RUNS = 3                  # run folders kept under runs_dir, the newest ones
STOP_GRACE_S = 1.5             # after SIGTERM, before SIGKILL
SHAPES_CONFIG = "mrcnn.training.shapes:ShapesConfig"


class RunInProgress(RuntimeError):
    """A training run is already going in this process."""


@dataclass(frozen=True)
class RunSpec:
    """What to train: everything the child needs, picklable.

    config_path: ``module:Class`` of the config; ``config_overrides`` change its
        upper-case settings (``mrcnn.config.config_from_path``).
    layers: "heads", "all" or any ``layers=`` of ``train()``.
    weights: a weights file to start from; None trains from scratch (BatchNorm
        statistics calibrated first).
    """
    layers: str = "all"
    epochs: int = 4
    steps_per_epoch: int = 25
    config_path: str = SHAPES_CONFIG
    config_overrides: dict = field(default_factory=dict)
    learning_rate: float | None = None
    weights: str | None = None
    seed: int = 0
    validation_seed: int = 4_000_000

    def config(self):
        from mrcnn.config import config_from_path
        return config_from_path(self.config_path, {
            **self.config_overrides, "STEPS_PER_EPOCH": int(self.steps_per_epoch),
            "VALIDATION_STEPS": 0})

    def validation_image(self, size: int):
        """(image, masks, class_ids): the fixed picture the run detects on after each epoch."""
        return draw_shapes(np.random.default_rng(self.validation_seed), size, size)


class TrainingRun:
    """A run of ``spec`` whose checkpoints go to a new folder under ``runs_dir``."""

    _lock = threading.Lock()
    _active: TrainingRun | None = None

    def __init__(self, spec: RunSpec, runs_dir):
        self.spec = spec
        config = spec.config()
        self.image, self.true_masks, self.true_class_ids = spec.validation_image(
            config.IMAGE_MAX_DIM)
        self.class_names = list(getattr(config, "CLASS_NAMES", []))
        self.runs_dir = Path(runs_dir)
        self.folder: Path | None = None
        self._process = None
        self._reader: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self._stopping = False
        self._state = {"status": "starting", "error": None, "losses": [], "epochs": [],
                       "started": None, "finished": None, "layers": spec.layers,
                       "total_epochs": int(spec.epochs),
                       "steps_per_epoch": int(spec.steps_per_epoch)}

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
                raise RunInProgress("A training run is already going on this server; "
                                    "watch it or stop it first.")
            self.folder = new_run_folder(self.runs_dir)
            context = multiprocessing.get_context("spawn")
            receiver, sender = context.Pipe(duplex=False)
            self._process = context.Process(target=train_in_child,
                                            args=(self.spec, str(self.folder), sender),
                                            name="mrcnn-training", daemon=True)
            self._state["started"] = time.time()
            # spawn re-runs the parent's __main__ in the child; under Streamlit that is the
            # page's script (under AppTest a script that only runs there): start the child
            # from an empty __main__ instead, so it imports only what train_in_child needs.
            main = sys.modules["__main__"]
            sys.modules["__main__"] = types.ModuleType("__main__")
            try:
                self._process.start()
            finally:
                sys.modules["__main__"] = main
            sender.close()            # the child holds the only writer: its exit is EOF here
            self._reader = threading.Thread(target=self._read, args=(receiver,),
                                            name="mrcnn-training-reports", daemon=True)
            self._reader.start()
            TrainingRun._active = self
        return self

    def stop(self) -> None:
        """End the run now: SIGTERM, then SIGKILL after ``STOP_GRACE_S``; a checkpoint
        being written is discarded. Returns once the child is gone (about 2 s at most)."""
        with self._state_lock:
            if self._state["status"] in ("finished", "stopped", "failed"):
                return
            self._stopping = True
            self._state["status"] = "stopping"
        process = self._process
        if process is not None and process.is_alive():
            process.terminate()
            process.join(STOP_GRACE_S)
            if process.is_alive():
                process.kill()
                process.join()
        if self._reader is not None:
            self._reader.join(5)

    @property
    def alive(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def join(self, timeout=None) -> None:
        if self._reader is not None:
            self._reader.join(timeout)

    def snapshot(self) -> dict:
        with self._state_lock:
            state = dict(self._state)
            state["losses"] = list(state["losses"])
            state["epochs"] = list(state["epochs"])
        return state

    # ------------------------------------------------------------ reports
    def _read(self, receiver) -> None:
        """Fold the child's reports into the state until it exits."""
        ended = None
        try:
            while True:
                try:
                    kind, data = receiver.recv()
                except (EOFError, OSError):
                    break
                with self._state_lock:
                    if kind == "step":
                        self._state["losses"].append(data)
                        if self._state["status"] == "starting":
                            self._state["status"] = "training"
                    elif kind == "epoch":
                        self._state["epochs"].append(data)
                    elif kind == "ended":
                        ended = data
        finally:
            receiver.close()
            self._process.join()
            self._finish(ended)

    def _finish(self, ended: dict | None) -> None:
        for partial in self.folder.rglob("*.tmp"):      # a checkpoint cut off by Stop
            partial.unlink(missing_ok=True)
        with self._state_lock:
            if self._stopping:
                self._state["status"] = "stopped"
            elif ended is not None:
                self._state.update(status=ended["status"], error=ended.get("error"))
                if ended.get("traceback"):
                    logger.error("Training run in %s failed:\n%s", self.folder,
                                 ended["traceback"])
            else:
                self._state.update(status="failed", error=(
                    "the training process ended unexpectedly (exit code "
                    f"{self._process.exitcode})"))
                logger.error("Training process for %s exited with code %s", self.folder,
                             self._process.exitcode)
            self._state["finished"] = time.time()


def new_run_folder(runs_dir: Path) -> Path:
    """A new, unique folder for one run under ``runs_dir``; older runs beyond the newest
    ``KEEP_RUNS - 1`` are removed first. Names sort by start time."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    older = sorted(p for p in runs_dir.iterdir() if p.is_dir() and p.name.startswith("run-"))
    for stale in older[:max(len(older) - (KEEP_RUNS - 1), 0)]:
        shutil.rmtree(stale, ignore_errors=True)
    now = time.time_ns()
    stamp = f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(now // 10**9))}.{now % 10**9:09d}"
    folder = runs_dir / f"run-{stamp}-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    return folder


# ------------------------------------------------------------------ the child

def lowest_priority() -> None:
    """Every thread of this process (and those it starts later) at nice 19 and, where
    Linux allows, SCHED_IDLE: it runs on what the app's own work leaves over."""
    threads = [int(t) for t in os.listdir("/proc/self/task")] if os.path.isdir(
        "/proc/self/task") else [0]
    for thread in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, thread, 19)
        except OSError:
            pass
        try:
            os.sched_setscheduler(thread, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError):
            pass


def train_in_child(spec: RunSpec, folder: str, sender) -> None:
    """The child process: build, calibrate or load, train; report through ``sender``."""
    lowest_priority()
    try:
        _train(spec, Path(folder), sender)
        sender.send(("ended", {"status": "finished"}))
    except BaseException as error:  # noqa: BLE001 - reported to the app, which logs it
        sender.send(("ended", {"status": "failed", "error": f"{type(error).__name__}: {error}",
                               "traceback": traceback.format_exc()}))
    finally:
        sender.close()


def _train(spec: RunSpec, folder: Path, sender) -> None:
    from mrcnn.model import MaskRCNN
    from mrcnn.training.calibration import calibrate_batchnorm
    from mrcnn.training.shapes import shapes_dataset
    from mrcnn.training.trainer import Trainer

    config = spec.config()
    image = spec.validation_image(config.IMAGE_MAX_DIM)[0]
    dataset = shapes_dataset(5000, spec.seed + 1, config.IMAGE_MAX_DIM)
    model = MaskRCNN(mode="training", config=config, model_dir=folder)
    if spec.weights:
        model.load_weights(spec.weights)
    else:
        calibrate_batchnorm(model, dataset, seed=spec.seed)
    steps = [0]
    trainer = Trainer(model)

    class Reporter:
        def on_train_batch_end(self, step, logs):
            steps[0] += 1
            sender.send(("step", {"step": steps[0], "epoch": trainer.epoch + 1,
                                  **{k: float(v) for k, v in logs.items()}}))

        def on_epoch_end(self, epoch, logs):
            detections = model.detect([image], DETECTION_MIN_CONFIDENCE=0.5)[0]
            sender.send(("epoch", {"epoch": epoch + 1, "checkpoint": logs["checkpoint"],
                                   "detections": detections, "logs": logs}))

    trainer.train(dataset, None, spec.learning_rate or config.LEARNING_RATE, epochs=spec.epochs,
                  layers=spec.layers, custom_callbacks=[Reporter()], keep_checkpoints=2,
                  seed=spec.seed, verbose=0)
