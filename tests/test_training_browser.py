"""A trained shapes model in the app, in a real browser: the app shows exactly what the
model computes.

``trained_shapes_weights`` (conftest: a short seeded training, or
``MRCNN_TEST_SHAPES_WEIGHTS=/path.h5``) runs in the app (``MRCNN_CONFIG`` +
``MRCNN_WEIGHTS``). Chromium uploads a generated shapes picture the model never saw,
moves the confidence slider to its minimum and downloads the COCO results JSON. This
process loads the same file with the same config and runs ``model.detect`` with the
app's own run settings (its defaults for this model) and its slider filter. Detection
for detection, in order, the download must have the same category id, the same score,
the box within a pixel (COCO's ``[x, y, w, h]`` against ``rois`` ``[y1, x1, y2, x2]``)
and the very same mask once the RLE is decoded.

What is compared is the app's plumbing (upload, decoding, run settings, filter,
export), never the model's quality: a short training's model is good or bad by luck,
so no verdict here depends on how well it finds the shapes. So that the comparison is
never empty, the picture uploaded is, of a few candidates, the one with the most
detections. Should the short training have learned to call everything background (no
detection on any candidate), the test runs the app on seeded generated weights for the
same config instead, which detect plenty: either way the app is compared with the
engine on detections that exist.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from mrcnn.testing.browser import CHROMIUM, launch_chromium, open_app, streamlit_app

CONFIG = "mrcnn.training.shapes:ShapesConfig"
TEST_IMAGE_SEED = 8_000_000          # far from every training, benchmark and sample seed
CANDIDATES = 32
CONFIDENCE_SLIDER = '.st-key-min_score [data-testid="stSlider"] input[type=range]'
# Settled: nothing re-running and the annotated image's caption names the threshold.
SETTLED = """(threshold) => !document.querySelectorAll('[data-stale="true"]').length
    && document.body.innerText.includes('at confidence ≥ ' + threshold)"""

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed at /usr/bin/chromium")]


def app_run(model, image) -> dict:
    """What the app shows for ``image`` with its settings at their defaults for this
    model and the confidence slider at its minimum: its network run, then its filter."""
    from mrcnn.config import CocoConfig
    from mrcnn.results import kept_indices
    from studio.results_ui import DETECT_THRESHOLD, RunSettings
    settings = RunSettings(image_max_dim=int(model.config.IMAGE_MAX_DIM),
                           nms_threshold=float(CocoConfig.DETECTION_NMS_THRESHOLD),
                           max_instances=int(CocoConfig.DETECTION_MAX_INSTANCES))
    result = model.detect([image], **settings.overrides())[0]
    kept = kept_indices(result, DETECT_THRESHOLD)
    return {"rois": result["rois"][kept], "class_ids": result["class_ids"][kept],
            "scores": result["scores"][kept], "masks": result["masks"][:, :, kept]}


@pytest.fixture
def plumbing_case(trained_shapes_weights, tmp_path):
    """(weights file, picture, what the app must show for it) on the trained model, or on
    seeded generated weights if the trained one detects nothing on any candidate."""
    from mrcnn.config import config_from_path
    from mrcnn.model import MaskRCNN, load_model
    from mrcnn.testing.synthetic_weights import generate_model_weights
    from mrcnn.training.shapes import draw_shapes

    config = config_from_path(CONFIG)
    candidates = [draw_shapes(np.random.default_rng([TEST_IMAGE_SEED, i]))[0]
                  for i in range(CANDIDATES)]
    weights = trained_shapes_weights
    model = load_model(weights, config)
    runs = [app_run(model, image) for image in candidates]
    if not any(len(run["class_ids"]) for run in runs):
        print("\nThe trained model detects nothing on any candidate: generated weights instead")
        weights = generate_model_weights(MaskRCNN(config).keras_model,
                                         tmp_path / "generated_shapes.h5", seed=0)
        model = load_model(weights, config)
        runs = [app_run(model, image) for image in candidates]
    best = max(range(CANDIDATES), key=lambda i: len(runs[i]["class_ids"]))
    return weights, candidates[best], runs[best]


def test_the_browser_download_is_exactly_what_the_model_detects(plumbing_case, tmp_path):
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from mrcnn.classes import category_ids_for, class_names_for
    from mrcnn.config import config_from_path
    from mrcnn.export.coco import decode_mask
    from studio.results_ui import DETECT_THRESHOLD

    weights, image, expected = plumbing_case
    count = len(expected["class_ids"])
    assert count >= 1, f"no detection in {CANDIDATES} pictures: nothing to compare"
    picture = tmp_path / "shapes.png"
    Image.fromarray(image).save(picture)
    threshold = f"{DETECT_THRESHOLD:.2f}"
    config = config_from_path(CONFIG)
    server = streamlit_app({"MRCNN_WEIGHTS": str(weights), "MRCNN_CONFIG": CONFIG,
                            "MRCNN_SERVE_URL": None}, tmp_path / "streamlit.log")

    with server as (url, _), sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 2000},
                                       accept_downloads=True).new_page()
            open_app(page, url).set_input_files(picture)
            page.locator(".st-key-download_json button").wait_for(timeout=240_000)
            page.wait_for_function(SETTLED, arg="0.70", timeout=60_000, polling=100)
            slider = page.locator(CONFIDENCE_SLIDER)
            slider.focus()
            page.keyboard.press("Home")
            page.wait_for_function(SETTLED, arg=threshold, timeout=60_000, polling=100)
            assert slider.get_attribute("value") == str(DETECT_THRESHOLD)
            shown = re.search(rf"(\d+) objects? at confidence ≥ {threshold}",
                              page.locator("body").inner_text())
            with page.expect_download() as download:
                page.locator(".st-key-download_json button").click()
            results = json.loads(Path(download.value.path()).read_text())
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(tmp_path / "shapes_app.png"), full_page=True)
        finally:
            browser.close()

    assert shown and int(shown.group(1)) == count, (shown and shown.group(0), count)
    categories = category_ids_for(class_names_for(config))
    assert len(results) == count, (len(results), expected["class_ids"])
    for i, found in enumerate(results):
        y1, x1, y2, x2 = expected["rois"][i]
        assert found["category_id"] == categories[expected["class_ids"][i]], i
        assert found["score"] == pytest.approx(float(expected["scores"][i]), abs=1e-6), i
        assert np.allclose(found["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=1), (i, found["bbox"])
        mask = decode_mask(found["segmentation"])
        assert mask.shape == image.shape[:2], i
        assert np.array_equal(mask, expected["masks"][:, :, i]), (
            i, int(np.sum(mask != expected["masks"][:, :, i])))
