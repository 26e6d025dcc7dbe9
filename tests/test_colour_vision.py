"""The per-object palette under the common colour-vision deficiencies.

Each colour is simulated as a person with full protanopia, deuteranopia or tritanopia
sees it (Machado, Oliveira and Fernandes 2009, the severity-1.0 matrices, applied to
linear sRGB as the paper prescribes), and colours are compared by CIEDE2000 in CIELAB
(D65). Both come from the colour-science package, not from the code under test.
Objects with neighbouring numbers tend to sit near each other (the numbers follow the
score) and are compared most strictly; any eight consecutive objects must still be
told apart; beyond that, the number written on each label does the work.
"""
from __future__ import annotations

import warnings

import colour
import numpy as np
import pytest

from mrcnn.draw.overlay import palette

OBJECTS = 100                 # DETECTION_MAX_INSTANCES: the most objects a run shows
NEIGHBOURS = 2                # objects i and i + 1, i + 2
NEIGHBOUR_MIN_DELTA_E = 20.0
WINDOW = 8                    # any two among eight consecutive objects
WINDOW_MIN_DELTA_E = 10.0
DEFICIENCIES = {"protanopia": "Protanomaly", "deuteranopia": "Deuteranomaly",
                "tritanopia": "Tritanomaly"}


def seen_as_lab(rgb: np.ndarray, deficiency: str | None) -> np.ndarray:
    """CIELAB of sRGB colours ``(N, 3) uint8`` as seen with ``deficiency`` (None: normal)."""
    linear = colour.models.eotf_sRGB(rgb / 255.0)
    if deficiency is not None:
        with warnings.catch_warnings():          # tritanomaly's note on its model
            warnings.simplefilter("ignore")
            matrix = colour.blindness.matrix_cvd_Machado2009(DEFICIENCIES[deficiency], 1.0)
        linear = np.clip(linear @ matrix.T, 0.0, 1.0)
    return colour.XYZ_to_Lab(colour.RGB_to_XYZ(linear, colour.RGB_COLOURSPACES["sRGB"]))


def nearest_pair(lab: np.ndarray, offsets) -> tuple[float, int, int]:
    """(smallest CIEDE2000, i, j) over pairs ``i``, ``i + d`` for ``d`` in ``offsets``."""
    worst = (np.inf, -1, -1)
    for d in offsets:
        distances = colour.delta_E(lab[:-d], lab[d:], method="CIE 2000")
        i = int(np.argmin(distances))
        worst = min(worst, (float(distances[i]), i, i + d))
    return worst


def test_the_simulation_is_the_published_one():
    """The matrices are the paper's (Table of severity 1.0), and a pure red and green,
    far apart for normal vision, look almost alike with deuteranopia."""
    np.testing.assert_allclose(
        colour.blindness.matrix_cvd_Machado2009("Protanomaly", 1.0),
        [[0.152286, 1.052583, -0.204868], [0.114503, 0.786281, 0.099216],
         [-0.003882, -0.048116, 1.051998]], atol=1e-6)
    red_green = np.array([[200, 40, 40], [110, 110, 40]], np.uint8)
    normal = colour.delta_E(*seen_as_lab(red_green, None), method="CIE 2000")
    deutan = colour.delta_E(*seen_as_lab(red_green, "deuteranopia"), method="CIE 2000")
    assert normal > 30 and deutan < 10, (normal, deutan)


@pytest.mark.parametrize("deficiency", [None, *DEFICIENCIES])
def test_neighbouring_objects_keep_apart(deficiency):
    lab = seen_as_lab(palette(OBJECTS), deficiency)
    distance, i, j = nearest_pair(lab, range(1, NEIGHBOURS + 1))
    assert distance >= NEIGHBOUR_MIN_DELTA_E, (
        f"objects #{i + 1} and #{j + 1}: CIEDE2000 {distance:.1f} "
        f"({deficiency or 'normal vision'})")
    distance, i, j = nearest_pair(lab, range(1, WINDOW))
    assert distance >= WINDOW_MIN_DELTA_E, (
        f"objects #{i + 1} and #{j + 1}: CIEDE2000 {distance:.1f} "
        f"({deficiency or 'normal vision'})")
