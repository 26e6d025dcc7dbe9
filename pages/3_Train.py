"""Train: watch Mask R-CNN learn generated shapes, live.

One short run per server process (``studio.training_run.TrainingRun``), shared by
every visitor: whoever opens the page while it trains watches the same run. The page
only starts, stops and draws; the run trains in a child process at the lowest CPU
priority, so detection on the other pages goes first.
"""
from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from mrcnn.draw.figures import enlarge
from mrcnn.draw.overlay import draw_detections
from mrcnn.training.losses import LOSS_NAMES
from studio import alt_text
from studio.accessibility_ui import accessible_page
from studio.public import guarded, is_operator, operator_unlock, setting
from studio.settings import CONFIG_ENV
from studio.training_run import SHAPES_CONFIG, RunInProgress, RunSpec, TrainingRun

st.set_page_config(page_title="Train · Mask R-CNN Studio", page_icon=":chart_with_downwards_trend:",
                   layout="wide")

STEPS_PER_EPOCH = 25
PICTURE_SIZE = 384
RUNS_DIR_ENV = "MRCNN_TRAIN_DIR"     # where runs write their checkpoints (newest few kept)


def runs_dir() -> Path:
    return Path(setting(RUNS_DIR_ENV) or Path(tempfile.gettempdir()) / "mrcnn_studio_training")


@st.cache_resource
def training_slot() -> dict:
    """The process-wide run: {"run": the latest TrainingRun or None, "lock": ...}."""
    return {"run": None, "lock": threading.Lock()}


def app_shapes_model():
    """(config path, weights file) of the app's own model when it is a shapes model."""
    from mrcnn.config import config_from_path
    from mrcnn.training.shapes import ShapesConfig
    from mrcnn.weights import default_weights_path
    path = setting(CONFIG_ENV)
    if not path:
        return None
    try:
        config = config_from_path(path)
    except (ImportError, ValueError):
        return None
    weights = default_weights_path()
    return (path, weights) if isinstance(config, ShapesConfig) and weights.exists() else None


def start_ui(slot: dict) -> None:
    """The settings of a new run, and the button that starts it (an operator's, on a
    public app)."""
    if not operator_unlock("starting and stopping training", key="train"):
        return
    options = {"from scratch: random weights": (SHAPES_CONFIG, None)}
    app_model = app_shapes_model()
    if app_model is not None:
        options[f"from the app's model ({app_model[1].name})"] = (app_model[0],
                                                                  str(app_model[1]))
    left, middle, right = st.columns(3)
    layers = left.radio("Layers to train", ["all", "heads"], horizontal=True,
                        help="'heads': only the feature pyramid, the RPN and the box, class "
                             "and mask heads; the ResNet backbone stays as it is. "
                             "'all': every layer. From scratch, train 'all': a random backbone "
                             "that stays random gives the heads little to learn from.")
    epochs = middle.slider("Epochs", 2, 40, 20,
                           help=f"Each epoch is {STEPS_PER_EPOCH} steps of 4 generated "
                                "images (about 20 s on two CPU cores), then a checkpoint and "
                                "a look at the validation image. From scratch, the first "
                                "shapes are found after 15 to 20 epochs.")
    start = right.radio("Start", list(options))
    if st.button("Start training", type="primary"):
        config_path, weights = options[start]
        spec = RunSpec(layers=layers, epochs=epochs, steps_per_epoch=STEPS_PER_EPOCH,
                       config_path=config_path, weights=weights)
        with slot["lock"]:
            try:
                slot["run"] = TrainingRun(spec, runs_dir()).start()
            except RunInProgress as error:
                st.warning(str(error))
        st.rerun()


def loss_chart(snapshot: dict) -> None:
    losses = snapshot["losses"]
    if not losses:
        st.info("Building the network and compiling the training step (about half a minute)…")
        return
    frame = pd.DataFrame(losses).set_index("step")[["loss", *LOSS_NAMES]]
    smoothed = frame.rolling(5, min_periods=1).mean()
    st.line_chart(smoothed, x_label="step", y_label="loss (mean of the last 5 steps)")
    latest = smoothed.iloc[-1]
    st.caption(f"The chart in words: at step {smoothed.index[-1]}, the mean of the last 5 "
               "steps is " + ", ".join(f"{name} {latest[name]:.3f}" for name in smoothed))


def detections_view(run: TrainingRun, snapshot: dict) -> None:
    epochs = snapshot["epochs"]
    truth, found = st.columns(2)
    shapes = ", ".join(run.class_names[i] for i in run.true_class_ids)
    truth.image(enlarge(run.image, PICTURE_SIZE), width="stretch",
                caption=f"Validation image: {len(run.true_class_ids)} shapes ({shapes})",
                alt=alt_text.photo(f"Generated validation image with {len(run.true_class_ids)} "
                                   f"shapes: {shapes}", run.image.shape))
    if not epochs:
        found.info("The detections appear here after the first epoch.")
        return
    last = epochs[-1]
    picture = draw_detections(run.image, last["detections"], run.class_names)
    count = len(last["detections"]["class_ids"])
    found.image(enlarge(picture, PICTURE_SIZE), width="stretch",
                caption=f"After epoch {last['epoch']}: {count} detection(s) at confidence ≥ 0.5",
                alt=alt_text.annotated_photo(
                    f"The validation image after epoch {last['epoch']}",
                    [run.class_names[i] for i in last["detections"]["class_ids"]],
                    last["detections"]["scores"], threshold=0.5))


def status_line(snapshot: dict) -> str:
    step = len(snapshot["losses"])
    total = snapshot["total_epochs"] * snapshot["steps_per_epoch"]
    elapsed = (snapshot["finished"] or time.time()) - snapshot["started"]
    done = len(snapshot["epochs"])
    words = {"starting": "Starting", "training": "Training", "stopping": "Stopping after this step",
             "finished": "Finished", "stopped": "Stopped", "failed": "Failed"}
    return (f"**{words[snapshot['status']]}** · layers `{snapshot['layers']}` · epoch "
            f"{min(done + 1, snapshot['total_epochs'])} of {snapshot['total_epochs']} · step "
            f"{step} of {total} · {elapsed:.0f} s")


def outcome(snapshot: dict) -> None:
    """A status box that screen readers announce, and that changes only when the run
    does (it runs, it ended): the line above it, the chart and the pictures redraw
    every 2 s without a word, and never take the keyboard's focus."""
    done = len(snapshot["epochs"])
    epochs = f"{done} epoch{'s' * (done != 1)}"
    if snapshot["status"] == "failed":
        st.error("The run failed. The server's log says why; start a new run to try again.")
    elif snapshot["status"] == "finished":
        st.success(f"Training finished after {epochs}.", icon=":material/check_circle:")
    elif snapshot["status"] == "stopped":
        st.info(f"Training stopped after {epochs}.", icon=":material/stop_circle:")
    else:
        st.info("Training is running: the line above, the loss chart and the pictures below "
                "update every 2 seconds; this box changes when the run ends.",
                icon=":material/model_training:")


def run_view(run: TrainingRun) -> None:
    snapshot = run.snapshot()
    st.markdown(status_line(snapshot))
    outcome(snapshot)
    if run.alive and is_operator() and st.button("Stop", key="stop_training"):
        run.stop()
        st.rerun()
    loss_chart(snapshot)
    detections_view(run, snapshot)
    if snapshot["epochs"]:
        st.caption(f"Latest checkpoint: `{Path(snapshot['epochs'][-1]['checkpoint']).name}`")


@st.fragment(run_every=2)
def live(slot: dict) -> None:
    run = slot["run"]
    run_view(run)
    if not run.alive:
        st.rerun()            # the run ended: redraw the page without the live refresh


def page() -> None:
    accessible_page()
    st.title("Train Mask R-CNN")
    st.markdown(
        "A short training run on generated images of squares, circles and triangles, live. "
        "Each **step** draws 4 images, labels the anchors the RPN should find (IoU ≥ 0.7 with a "
        "shape) and those it should reject (IoU < 0.3), samples 32 RoIs from the proposals (a "
        "third of them on a shape), and takes one SGD step on the five losses: RPN objectness "
        "and box, and the heads' class, box and mask. Each **epoch** ends with a checkpoint, "
        "and the network then detects the shapes of the same validation image, so you see it "
        "learn.")
    st.info(
        "Training runs in its own process at the lowest priority, so photos on the other pages "
        "are answered first and the run slows down while they are. One run at a time per "
        "server; everyone who opens this page watches the same run.")

    slot = training_slot()
    run = slot["run"]
    if run is not None and run.alive:
        live(slot)
    else:
        if run is not None:
            run_view(run)
            st.divider()
        start_ui(slot)


guarded(page)
