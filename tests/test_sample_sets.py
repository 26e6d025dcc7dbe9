"""The app's choice of sample pictures per model (``studio.sample_sets``): generated
shapes for a shapes model, the bundled photos for any other."""
from __future__ import annotations

import numpy as np

from mrcnn.config import CocoConfig
from mrcnn.inputs.samples import SAMPLES
from mrcnn.training.shapes import ShapesConfig, draw_shapes
from studio.sample_sets import SHAPES_SAMPLE_SEED, samples_for


def test_a_shapes_model_gets_four_generated_pictures_of_its_input_size():
    samples = samples_for(ShapesConfig())
    assert list(samples) == ["shapes 1", "shapes 2", "shapes 3", "shapes 4"]
    assert [s.title for s in samples.values()] == ["Shapes 1", "Shapes 2", "Shapes 3",
                                                   "Shapes 4"]
    pictures = [sample() for sample in samples.values()]
    assert all(p.shape == (128, 128, 3) and p.dtype == np.uint8 for p in pictures)
    np.testing.assert_array_equal(
        pictures[1], draw_shapes(np.random.default_rng([SHAPES_SAMPLE_SEED, 1]), 128, 128)[0])
    bigger = type("Bigger", (ShapesConfig,), {"NAME": "bigger", "IMAGE_MIN_DIM": 256,
                                              "IMAGE_MAX_DIM": 256})()
    assert samples_for(bigger)["shapes 1"]().shape == (256, 256, 3)   # a subclass: shapes too


def test_any_other_model_gets_the_bundled_photos():
    assert samples_for(CocoConfig()).keys() == SAMPLES.keys()
    assert not hasattr(ShapesConfig, "sample_images"), "the config carries no app choice"
