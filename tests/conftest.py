"""Shared fixtures: generated weights files in the published layout and loaded models.

Building the full COCO model costs a few seconds, so the models are session-scoped.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from mrcnn.testing.configs import small_config

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def coco_weights(tmp_path_factory) -> Path:
    """mask_rcnn_coco.h5's exact layout (Keras 2.0.8 training-model file), seeded values."""
    from mrcnn.testing.synthetic_weights import generate_coco_weights
    return generate_coco_weights(tmp_path_factory.mktemp("weights") / "coco_original.h5", seed=0)


@pytest.fixture(scope="session")
def coco_model(coco_weights):
    """The full COCO-sized model (ResNet-101, 81 classes) with the generated weights."""
    from mrcnn.model import MaskRCNN
    from mrcnn import CocoConfig
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
    """Real photos shipped with scikit-image: astronaut (512x512), chelsea (300x451), coffee (400x600)."""
    import skimage.data
    return {"astronaut": skimage.data.astronaut(), "chelsea": skimage.data.chelsea(),
            "coffee": skimage.data.coffee()}
