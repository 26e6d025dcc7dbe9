"""Which sample pictures the app offers for a model: generated shapes for a model
trained on ``mrcnn.training.shapes``, the bundled photos (``mrcnn.inputs.samples``)
for any other. The choice is the app's, made here by the config's ``NAME``; no
config carries it. Plain Python, no Streamlit.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from mrcnn.inputs.samples import SAMPLES, Sample

__all__ = ["SAMPLE_SETS", "SHAPES_SAMPLE_SEED", "samples_for", "shapes_samples"]

#: Seeds of the generated shapes samples, far from any training or benchmark dataset's.
SHAPES_SAMPLE_SEED = 7_000_000


def _draw_shapes_sample(index: int, size: int) -> np.ndarray:
    from mrcnn.training.shapes import draw_shapes
    return draw_shapes(np.random.default_rng([SHAPES_SAMPLE_SEED, index]), size, size)[0]


def shapes_samples(config) -> dict[str, Sample]:
    """Four generated shapes pictures the size of the model's input, none of them in a
    training or benchmark set; each is drawn when it is loaded."""
    size = config.IMAGE_MAX_DIM
    return {f"shapes {i + 1}": Sample(f"Shapes {i + 1}", "", "Generated for this model.",
                                      loader=functools.partial(_draw_shapes_sample, i, size))
            for i in range(4)}


#: A config's ``NAME`` -> the samples for its model; any other model gets ``SAMPLES``.
SAMPLE_SETS: dict[str, Callable[[object], dict[str, Sample]]] = {
    "shapes": shapes_samples,
}


def samples_for(config) -> dict[str, Sample]:
    """The samples that suit a model: the set ``SAMPLE_SETS`` holds for the ``NAME`` of
    its config class or of the nearest base class that has one (a subclass of the
    shapes config gets shapes too), else the bundled photos."""
    for cls in type(config).__mro__:
        chooser = SAMPLE_SETS.get(vars(cls).get("NAME"))
        if chooser is not None:
            return chooser(config)
    return dict(SAMPLES)
