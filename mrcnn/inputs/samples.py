"""Sample photos for the demo, taken from scikit-image's bundled data.

Every image here ships inside the ``scikit-image`` wheel (no download), and
each one's docstring in ``skimage.data`` states that it is free to reuse; the
``credit`` of each sample repeats what that docstring says. Each shows
something among COCO's 80 classes.

``SAMPLES`` maps a short name to a :class:`Sample`; calling a sample returns
its pixels as an ``HxWx3 uint8`` RGB array (grayscale photos are converted)::

    from mrcnn.inputs.samples import SAMPLES
    image = SAMPLES["chelsea"]()

Which samples go with which model is the app's choice, not a config's; a
:class:`Sample` may also get its pixels from any other ``loader`` (generated pictures).

Left out on purpose: ``skimage.data.stereo_motorcycle`` (its docstring names
the Middlebury 2014 stereo benchmark but states no licence).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mrcnn.pixels import to_rgb_array

__all__ = ["SAMPLES", "Sample"]


@dataclass(frozen=True)
class Sample:
    """One sample photo: ``sample()`` loads it as RGB ``uint8``."""

    title: str
    shows: str                      # what the model should find in it
    credit: str                     # source and licence (scikit-image's own words)
    skimage_name: str = ""          # the ``skimage.data`` function that loads it, or
    loader: Callable[[], np.ndarray] | None = None   # any other way to get the pixels

    def __call__(self) -> np.ndarray:
        if self.loader is not None:
            return to_rgb_array(self.loader())
        import skimage.data
        return to_rgb_array(getattr(skimage.data, self.skimage_name)())


SAMPLES: dict[str, Sample] = {
    "astronaut": Sample(
        "Astronaut", "person",
        "Eileen Collins, NASA Great Images database; public domain "
        "(no known copyright restrictions).",
        "astronaut"),
    "chelsea": Sample(
        "Cat", "cat",
        "Photo by Stefan van der Walt; CC0.",
        "chelsea"),
    "coffee": Sample(
        "Coffee", "cup, spoon, dining table",
        "Photo by Rachel Michetti, courtesy of Pikolo Espresso Bar; CC0.",
        "coffee"),
    "camera": Sample(
        "Cameraman", "person (grayscale photo)",
        "Photo by Lav Varshney; CC0.",
        "camera"),
    "clock": Sample(
        "Clock", "clock (motion-blurred, grayscale)",
        "Photo by Stefan van der Walt; public domain.",
        "clock"),
}
