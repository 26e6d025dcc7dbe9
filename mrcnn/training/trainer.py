"""matterport's ``model.train()`` as a ``Trainer`` that takes the model: epochs of SGD on
the selected layers, checkpoints, logs.

>>> model = MaskRCNN(mode="training", config=config, model_dir="logs")
>>> model.load_weights("mask_rcnn_coco.h5", by_name=True, exclude=[
...     "mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"])       # other NUM_CLASSES
>>> trainer = Trainer(model)                  # matterport: model.train(...)
>>> trainer.train(train_set, val_set, config.LEARNING_RATE, epochs=1, layers="heads")
>>> trainer.train(train_set, val_set, config.LEARNING_RATE / 10, epochs=2, layers="all")

The trainer owns the training state (epochs done, log folder, training graph); the
model is only its layers and weights, and ``detect()`` follows every step at once.
``epochs`` counts from the trainer's first call: the second call above trains one more
epoch. Each epoch runs STEPS_PER_EPOCH steps of BATCH_SIZE images, then
VALIDATION_STEPS validation batches, writes ``mask_rcnn_<name>_<epoch>.h5`` (the
Keras 2 HDF5 layout ``load_weights`` and the app read) into
``<model_dir>/<name><YYYYmmddTHHMM>/`` and appends a row to ``losses.csv`` there.

The optimiser is SGD with LEARNING_MOMENTUM, each gradient tensor clipped to
GRADIENT_CLIP_NORM (Keras' ``clipnorm``); the loss is the sum of the five losses
times LOSS_WEIGHTS plus matterport's weight decay (never on BatchNorm gamma/beta).
With TRAIN_BN = True the backbone's BatchNorm trains on batch statistics, and before
each checkpoint its moving statistics are re-measured on STATISTICS_IMAGES training
images with the epoch's final weights (the moving averages lag behind weights that
change fast, and inference uses them).
"""
from __future__ import annotations

import csv
import datetime
import threading
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mrcnn.training.calibration import backbone_statistics
from mrcnn.training.data import TrainingBatches, prefetch
from mrcnn.training.graph import (
    TrainingGraph,
    batch_signature,
    decayed_variables,
    set_trainable,
    total_loss,
)
from mrcnn.training.losses import LOSS_NAMES

LOG_COLUMNS = ("loss",) + LOSS_NAMES
# With TRAIN_BN, BatchNorm statistics are re-measured on this many images before a checkpoint.
STATISTICS_IMAGES = 32


class TrainSteps:
    """The compiled train and validation steps for one (learning rate, layers) choice."""

    def __init__(self, model, graph, learning_rate, layers, image_shape, mask_shape):
        cfg = model.config
        self.model = model
        self.trainable_layers = set_trainable(model.keras_model, layers)
        self.variables = list(model.keras_model.trainable_variables)
        self.decayed = decayed_variables(self.variables, model.keras_model)
        self.optimizer = keras.optimizers.SGD(
            learning_rate=learning_rate, momentum=cfg.LEARNING_MOMENTUM,
            clipnorm=cfg.GRADIENT_CLIP_NORM)
        self.optimizer.build(self.variables)
        signature = [batch_signature(cfg, image_shape, mask_shape)]

        @tf.function(input_signature=signature)
        def train_step(batch):
            with tf.GradientTape() as tape:
                total, weighted, decay = total_loss(graph(batch), cfg, self.decayed)
            gradients = tape.gradient(total, self.variables)
            self.optimizer.apply_gradients(
                [(g, v) for g, v in zip(gradients, self.variables) if g is not None])
            return {"loss": total, **weighted}

        @tf.function(input_signature=signature)
        def validation_step(batch):
            total, weighted, _ = total_loss(graph(batch, training=False), cfg, self.decayed)
            return {"loss": total, **weighted}

        self.train_step, self.validation_step = train_step, validation_step

    @staticmethod
    def run(step, batch) -> dict:
        return {name: float(value) for name, value in step(batch).items()}


def _call(callbacks, method, *args):
    for callback in callbacks:
        function = getattr(callback, method, None)
        if function is not None:
            function(*args)


def _append_row(path: Path, row: dict):
    """One epoch's row of losses.csv (validation columns empty without validation)."""
    columns = ["epoch", "steps", "seconds", *LOG_COLUMNS, *(f"val_{n}" for n in LOG_COLUMNS)]
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        if new:
            writer.writeheader()
        writer.writerow(row)


class Trainer:
    """Trains a ``MaskRCNN``'s own weights; holds what training needs to go on.

    ``model_dir``: the folder for log folders (default: the model's ``model_dir``,
    which ``MaskRCNN(model_dir=...)`` accepts as matterport's did, else ``logs``).
    ``epoch``: epochs trained so far; ``train(epochs=N)`` continues up to N.
    ``log_dir``: ``<model_dir>/<name><YYYYmmddTHHMM>``, fixed at the first ``train()``.
    """

    def __init__(self, model, model_dir=None):
        self.model = model
        self.model_dir = Path(model_dir or getattr(model, "model_dir", None) or "logs")
        self.epoch = 0
        self.log_dir: Path | None = None
        self._graph: TrainingGraph | None = None

    @property
    def graph(self) -> TrainingGraph:
        """The training forward pass on the model's layers (built on first use)."""
        if self._graph is None:
            self._graph = TrainingGraph(self.model)
        return self._graph

    @property
    def name(self) -> str:
        """The config's NAME in lower case: log folders and checkpoints are named after it."""
        return (self.model.config.NAME or "model").lower()

    def folder(self) -> Path:
        """The log folder, named at the first call."""
        if self.log_dir is None:
            self.log_dir = self.model_dir / f"{self.name}{datetime.datetime.now():%Y%m%dT%H%M}"
        return self.log_dir

    def checkpoint_path(self, epoch) -> Path:
        """``mask_rcnn_<name>_<epoch:04d>.h5`` in the log folder (epoch counted from 1)."""
        return self.folder() / f"mask_rcnn_{self.name}_{epoch:04d}.h5"

    def steps(self, learning_rate, layers, image_shape, mask_shape) -> TrainSteps:
        """Compiled train and validation steps for this choice of rate and layers."""
        return TrainSteps(self.model, self.graph, learning_rate, layers, image_shape,
                          mask_shape)

    def train(self, train_dataset, val_dataset, learning_rate, epochs, layers,
              augmentation=None, custom_callbacks=None, stop_event: threading.Event | None = None,
              keep_checkpoints=None, seed=None, verbose=1, prefetch_batches=4):
        """Train until ``epochs`` epochs are done in all; returns this call's epoch logs.

        train_dataset, val_dataset: prepared ``Dataset``s (``val_dataset`` may be None).
        layers: "heads", "3+", "4+", "5+", "all" or a regular expression of layer names.
        augmentation: None or ``f(image, masks) -> (image, masks)`` (see ``load_image_gt``).
        custom_callbacks: objects with any of Keras' callback methods ``on_train_begin()``,
            ``on_epoch_begin(epoch)``, ``on_train_batch_end(step, logs)``,
            ``on_epoch_end(epoch, logs)`` (logs then include ``checkpoint``) and
            ``on_train_end(logs)``.
        stop_event: set it (from another thread) to stop after the current step; the
            epoch in progress is still checkpointed.
        keep_checkpoints: keep only the newest N checkpoint files (default: all).
        """
        model, cfg = self.model, self.model.config
        if seed is not None:
            keras.utils.set_random_seed(seed)
        callbacks = list(custom_callbacks or [])
        batches = TrainingBatches(train_dataset, cfg, shuffle=True, augmentation=augmentation,
                                  seed=seed)
        first = next(batches)
        trainer = self.steps(learning_rate, layers, first["images"].shape[1:],
                             first["gt_masks"].shape[1:3])
        validation = (TrainingBatches(val_dataset, cfg, shuffle=True,
                                      seed=None if seed is None else seed + 1)
                      if val_dataset is not None and cfg.VALIDATION_STEPS else None)
        folder = self.folder()
        folder.mkdir(parents=True, exist_ok=True)
        if verbose:
            print(f"Starting at epoch {self.epoch}, LR={learning_rate}, layers={layers} "
                  f"({len(trainer.trainable_layers)} layers, {len(trainer.variables)} tensors); "
                  f"checkpoints in {folder}")
        history = []
        pending = iter([first])
        source = prefetch(batches, prefetch_batches) if prefetch_batches else batches
        _call(callbacks, "on_train_begin")
        try:
            for epoch in range(self.epoch, epochs):
                if stop_event is not None and stop_event.is_set():
                    break
                _call(callbacks, "on_epoch_begin", epoch)
                started = time.perf_counter()
                progress = keras.utils.Progbar(cfg.STEPS_PER_EPOCH, verbose=verbose)
                sums, steps = dict.fromkeys(LOG_COLUMNS, 0.0), 0
                for step in range(cfg.STEPS_PER_EPOCH):
                    values = TrainSteps.run(trainer.train_step, next(pending, None) or next(source))
                    steps += 1
                    for name in LOG_COLUMNS:
                        sums[name] += values[name]
                    progress.update(step + 1, [(name, sums[name] / steps) for name in LOG_COLUMNS])
                    _call(callbacks, "on_train_batch_end", step, values)
                    if not np.isfinite(values["loss"]):
                        raise FloatingPointError(f"The loss became {values['loss']} at epoch "
                                                 f"{epoch + 1}, step {step + 1}: lower the "
                                                 "learning rate.")
                    if stop_event is not None and stop_event.is_set():
                        break
                logs = {"epoch": epoch + 1, "steps": steps,
                        "seconds": round(time.perf_counter() - started, 2)}
                logs.update({name: sums[name] / steps for name in LOG_COLUMNS})
                if validation is not None:
                    val = [TrainSteps.run(trainer.validation_step, next(validation))
                           for _ in range(cfg.VALIDATION_STEPS)]
                    logs.update({f"val_{name}": float(np.mean([v[name] for v in val]))
                                 for name in LOG_COLUMNS})
                self.epoch = epoch + 1
                if cfg.TRAIN_BN:
                    statistics_images = np.concatenate(
                        [next(source)["images"]
                         for _ in range(-(-STATISTICS_IMAGES // cfg.BATCH_SIZE))])
                    backbone_statistics(model, statistics_images, self.graph)
                path = save_checkpoint(model, self.checkpoint_path(epoch + 1), keep_checkpoints)
                _append_row(folder / "losses.csv", logs)
                if verbose:
                    print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in logs.items()))
                history.append({**logs, "checkpoint": str(path)})
                _call(callbacks, "on_epoch_end", epoch, history[-1])
        finally:
            if source is not batches:
                source.close()
        _call(callbacks, "on_train_end", history[-1] if history else {})
        return history


def save_checkpoint(model, path, keep=None) -> Path:
    """Write the weights in the Keras 2 HDF5 layout."""
    from mrcnn.weights.keras_h5 import save_h5_weights
    path = Path(path)
    save_h5_weights(model.keras_model, path)
    if keep:
        older = sorted(path.parent.glob(path.name.rsplit("_", 1)[0] + "_*.h5"))
        for stale in [p for p in older if p != path][:-(keep - 1) or None]:
            stale.unlink()
    return path
