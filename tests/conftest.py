"""Shared fixtures: generated weights files in the published layout and loaded models.

Building the full COCO model costs a few seconds, so the models are session-scoped.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mrcnn.testing.configs import small_config

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The parity and fidelity tests compare with matterport's float32 answers, so everything
# here (the app's subprocesses included) runs in float32; tests of the other precisions
# ask for them by name (tests/test_precision.py).
os.environ["MRCNN_PRECISION"] = "fp32"

#: Test files that share one worker under pytest-xdist (``-n 2 --dist loadgroup``,
#: pyproject.toml): the ones that need the shapes model trained in this run, so it is
#: trained once. Every other file is a group of its own: a file's module-scoped
#: fixtures are built once, and its tests run in order on one worker.
SHARED_WORKER = {"test_server_under_load.py": "trained_shapes",
                 "test_training_browser.py": "trained_shapes",
                 "test_precision.py": "trained_shapes"}


@pytest.hookimpl(tryfirst=True)      # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        name = item.path.name
        item.add_marker(pytest.mark.xdist_group(SHARED_WORKER.get(name, name)))
    # The longest group (the training, then two browser tests) goes first, so the other
    # worker runs everything else meanwhile instead of idling at the end.
    items.sort(key=lambda item: item.path.name not in SHARED_WORKER)


@pytest.fixture(scope="session")
def coco_weights(tmp_path_factory) -> Path:
    """mask_rcnn_coco.h5's exact layout (Keras 2.0.8 training-model file), seeded values."""
    from mrcnn.testing.synthetic_weights import generate_coco_weights
    return generate_coco_weights(tmp_path_factory.mktemp("weights") / "coco_original.h5", seed=0)


@pytest.fixture(scope="session")
def coco_model(coco_weights):
    """The full COCO-sized model (ResNet-101, 81 classes) with the generated weights."""
    from mrcnn import CocoConfig
    from mrcnn.model import MaskRCNN
    return MaskRCNN(CocoConfig()).load_weights(coco_weights)


@pytest.fixture(scope="session")
def small_model(tmp_path_factory):
    """A small model and its generated weights file (Keras 2 layout)."""
    from mrcnn.model import MaskRCNN
    from mrcnn.testing.synthetic_weights import generate_model_weights
    model = MaskRCNN(small_config())
    path = generate_model_weights(model.keras_model, tmp_path_factory.mktemp("small") / "small.h5")
    model.load_weights(path)
    model.weights_path = path
    return model


@pytest.fixture(scope="session")
def photos():
    """Real photos shipped with scikit-image: astronaut (512x512), chelsea (300x451),
    coffee (400x600)."""
    import skimage.data
    return {"astronaut": skimage.data.astronaut(), "chelsea": skimage.data.chelsea(),
            "coffee": skimage.data.coffee()}


#: The CI's shapes training (``train_shapes_from_scratch``, seed 0): 4 epochs of 40 steps,
#: all at LEARNING_RATE, about 2.5-3.5 minutes on 2 cores. A model that detects something,
#: not a good one: the tests that use it compare the app with the model, never the model
#: with the truth. ROI_POSITIVE_RATIO 0.8 (ShapesConfig: 0.33): objects outnumber the
#: background among the real RoIs the classifier trains on, so even this young a model
#: calls some proposals objects. Runs measured on 16 test pictures, pictures with a
#: detection: 8, 0 and 0 at 0.33; 3 to 15 in six runs at 0.66; 14 and 16 at 0.8 (should
#: one detect nothing, the browser test falls back to generated weights). The
#: overrides only change training: the checkpoint loads with ShapesConfig itself. Two
#: runs are not bit-identical (TensorFlow on CPU): no test may depend on which model
#: comes out.
SHAPES_CONFIG = "mrcnn.training.shapes:ShapesConfig"
SHAPES_CI_RECIPE = {"overrides": {"VALIDATION_STEPS": 0, "STEPS_PER_EPOCH": 40,
                                  "ROI_POSITIVE_RATIO": 0.8},
                    "epochs": 4, "low_lr_epochs": 0, "seed": 0}


def train_ci_shapes(model_dir) -> Path:
    """Train ``SHAPES_CI_RECIPE`` under ``model_dir``; returns the last checkpoint (.h5)."""
    from mrcnn.config import config_from_path
    from mrcnn.training.shapes import train_shapes_from_scratch
    recipe = SHAPES_CI_RECIPE
    config = config_from_path(SHAPES_CONFIG, recipe["overrides"])
    _, marks = train_shapes_from_scratch(config, model_dir, recipe["epochs"],
                                         recipe["low_lr_epochs"], seed=recipe["seed"], verbose=0)
    return Path(marks[-1][0])


@pytest.fixture(scope="session")
def trained_shapes_weights(tmp_path_factory) -> Path:
    """A ``ShapesConfig`` checkpoint the app loads with
    ``MRCNN_CONFIG=mrcnn.training.shapes:ShapesConfig``: trained here by
    ``SHAPES_CI_RECIPE``, or the file ``MRCNN_TEST_SHAPES_WEIGHTS=/path.h5`` names."""
    given = os.environ.get("MRCNN_TEST_SHAPES_WEIGHTS")
    if given:
        return Path(given)
    return train_ci_shapes(tmp_path_factory.mktemp("shapes_training"))
