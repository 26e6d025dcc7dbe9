"""Alt texts for every picture the app shows, written from the data the picture shows.

Plain functions of names, scores and shapes (no Streamlit), so each is tested against
the detections it describes (``tests/test_alt_text.py``). What a screen reader hears:

- the annotated photo: ``"Coffee, 6 objects found: cup 0.98, spoon 0.91, bowl 0.77,
  cup 0.62, spoon 0.55 and 1 more"``, the best few by score;
- a cut-out: ``"cut-out of cup #1, score 0.98"``;
- a figure of the lesson: what it is and its shape (``"P3 feature map, 128x128, mean
  over 256 channels"``).

Pictures that only decorate (a sample's thumbnail beside the button that names it) get
:data:`DECORATIVE`, deliberately, so a screen reader skips them.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["DECORATIVE", "FIRST_OBJECTS", "annotated_photo", "boxes_figure", "cutout",
           "feature_map", "grid", "heat_map", "photo", "pixels", "probability_bars"]

#: The alt text of a picture that adds nothing to the words beside it.
DECORATIVE = ""
#: How many objects the annotated photo's alt text names before "and N more".
FIRST_OBJECTS = 5


def pixels(shape) -> str:
    """``"600x400 px"``: a picture's width and height, from its ``(H, W, ...)`` shape."""
    return f"{int(shape[1])}x{int(shape[0])} px"


def grid(shape) -> str:
    """``"128x128"``: a map's rows and columns, from its ``(rows, columns, ...)`` shape."""
    return f"{int(shape[0])}x{int(shape[1])}"


def annotated_photo(picture: str, names: Sequence[str], scores, first: int = FIRST_OBJECTS,
                    threshold: float | None = None) -> str:
    """The annotated photo: how many objects, the ``first`` best by score with their
    scores, and how many more. ``names[i]`` and ``scores[i]`` describe object ``i``."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(names) != len(scores):
        raise ValueError(f"{len(names)} names but {len(scores)} scores")
    at = "" if threshold is None else f" at confidence {threshold:.2f} or more"
    if not len(scores):
        return f"{picture}, no objects found{at}"
    order = np.argsort(-scores, kind="stable")
    named = ", ".join(f"{names[i]} {scores[i]:.2f}" for i in order[:first])
    more = len(scores) - min(first, len(scores))
    count = f"{len(scores)} object{'s' * (len(scores) != 1)}"
    return f"{picture}, {count} found{at}: {named}" + (f" and {more} more" if more else "")


def cutout(name: str, number: int, score: float) -> str:
    """One object cut out of the photo: ``"cut-out of cup #1, score 0.98"``."""
    return f"cut-out of {name} #{int(number)}, score {float(score):.2f}"


def photo(what: str, shape) -> str:
    """A photo as it is (or framed as the network sees it): ``"what, 600x400 px"``."""
    return f"{what}, {pixels(shape)}"


def feature_map(level: str, shape, over: bool = False) -> str:
    """A feature map drawn as its mean over channels: ``shape`` is (rows, columns,
    channels); ``over`` when it is laid over the photo."""
    rows, columns, channels = (int(v) for v in shape)
    where = ", laid over the photo" if over else ""
    return (f"{level} feature map, {rows}x{columns}, mean over {channels} channels as a "
            f"heat map{where}")


def heat_map(what: str, shape, low: float | None = None, high: float | None = None) -> str:
    """A map of numbers drawn in colour: ``"what, heat map of 32x32 cells"`` and, when
    given, the range of its values."""
    values = "" if low is None else f", values {low:.3f} to {high:.3f}"
    return f"{what}, heat map of {grid(shape)} cells{values}"


def boxes_figure(what: str, count: int, shape, colours: str = "") -> str:
    """Boxes drawn on a picture: ``"what: 30 boxes on the 1024x1024 px network input"``
    and what their colours mean, when they mean something."""
    key = f"; {colours}" if colours else ""
    return f"{what}: {int(count)} box{'es' * (int(count) != 1)} on a {pixels(shape)} picture{key}"


def probability_bars(names: Sequence[str], probabilities) -> str:
    """A bar chart of class probabilities, best first, as the words it shows."""
    values = ", ".join(f"{name} {float(p):.3f}" for name, p in zip(names, probabilities))
    return f"bar chart of class probabilities: {values}"
