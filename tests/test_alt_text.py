"""Alt texts: each says what its picture shows, from the data it was drawn from.

The annotated photo's text is checked against a real run of the network (generated
weights, the Coffee sample): the objects it names, in score order, with the scores the
table shows. Every ``st.image`` call in the app passes ``alt=``, found by reading the
source, so a new picture without one fails here before it reaches a browser.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from mrcnn.classes import class_name
from mrcnn.draw.overlay import label_text
from studio import alt_text

ROOT = Path(__file__).resolve().parent.parent
APP_SOURCES = [ROOT / "app.py", *sorted((ROOT / "pages").glob("*.py")),
               *sorted((ROOT / "studio").glob("*.py"))]


def test_annotated_photo_names_the_best_objects_first_then_counts_the_rest():
    names = ["spoon", "cup", "bowl", "cup", "spoon", "table", "cup"]
    scores = np.array([0.91, 0.98, 0.77, 0.62, 0.55, 0.51, 0.99], np.float32)
    text = alt_text.annotated_photo("Coffee", names, scores)
    assert text == ("Coffee, 7 objects found: cup 0.99, cup 0.98, spoon 0.91, bowl 0.77, "
                    "cup 0.62 and 2 more")
    assert alt_text.annotated_photo("Coffee", names[:2], scores[:2], first=5) == \
        "Coffee, 2 objects found: cup 0.98, spoon 0.91"
    assert alt_text.annotated_photo("Cat", ["cat"], [0.7049], threshold=0.7) == \
        "Cat, 1 object found at confidence 0.70 or more: cat 0.70"
    assert alt_text.annotated_photo("Cat", [], np.zeros(0), threshold=0.95) == \
        "Cat, no objects found at confidence 0.95 or more"
    with pytest.raises(ValueError, match="3 names but 2 scores"):
        alt_text.annotated_photo("Cat", ["a", "b", "c"], [0.5, 0.6])


def test_cutout_and_figures_say_what_and_how_big():
    assert alt_text.cutout("cup", 1, np.float32(0.9812)) == "cut-out of cup #1, score 0.98"
    assert alt_text.feature_map("P3", (128, 128, 256)) == \
        "P3 feature map, 128x128, mean over 256 channels as a heat map"
    assert alt_text.feature_map("C5", (32, 32, 2048), over=True).endswith(
        "mean over 2048 channels as a heat map, laid over the photo")
    assert alt_text.photo("Original photo, Sample: Coffee", (400, 600, 3)) == \
        "Original photo, Sample: Coffee, 600x400 px"
    assert alt_text.heat_map("Soft mask of detection #2, cup", (28, 28), 0.01, 0.97) == \
        "Soft mask of detection #2, cup, heat map of 28x28 cells, values 0.010 to 0.970"
    assert alt_text.boxes_figure("Top anchors", 1, (512, 512, 3)) == \
        "Top anchors: 1 box on a 512x512 px picture"
    assert alt_text.probability_bars(["cup", "bowl"], [0.8, 0.15]) == \
        "bar chart of class probabilities: cup 0.800, bowl 0.150"
    assert alt_text.DECORATIVE == ""


def test_the_coffee_runs_alt_text_describes_its_detections(coco_model, photos):
    """From a real run: the named objects are the best-scored detections, with the
    class names and two-decimal scores the labels and the table show."""
    from mrcnn import COCO_CLASS_NAMES
    result = coco_model.detect([photos["coffee"]], DETECTION_MIN_CONFIDENCE=0.1)[0]
    names = [class_name(COCO_CLASS_NAMES, c) for c in result["class_ids"]]
    text = alt_text.annotated_photo("Sample: Coffee", names, result["scores"])
    count = len(names)
    assert count > alt_text.FIRST_OBJECTS, "the generated weights find many objects"
    found = re.fullmatch(r"Sample: Coffee, (\d+) objects found: (.+) and (\d+) more", text)
    assert found, text
    assert int(found.group(1)) == count
    assert int(found.group(3)) == count - alt_text.FIRST_OBJECTS
    best = np.argsort(-result["scores"], kind="stable")[:alt_text.FIRST_OBJECTS]
    assert found.group(2).split(", ") == [label_text(names[i], result["scores"][i])
                                          for i in best]


def image_calls_without_alt(source: str) -> list[int]:
    """Line numbers of ``<something>.image(...)`` calls in ``source`` with no ``alt=``."""
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr == "image"
            and not any(k.arg == "alt" for k in node.keywords)]


def test_every_picture_of_the_app_has_an_alt_text():
    assert len(APP_SOURCES) > 10
    missing = {str(path.relative_to(ROOT)): lines for path in APP_SOURCES
               if (lines := image_calls_without_alt(path.read_text()))}
    assert not missing, f"st.image without alt= at {missing}"
    # The check finds a call without one, in any form.
    probe = ("import streamlit as st\nst.image(b'x', caption='c')\ncol.image(b'x', alt='')\n"
             "st.columns(2)[0].image(\n    b'x')\n")
    assert image_calls_without_alt(probe) == [2, 4]
