"""A trained shapes model in the app, in a real browser.

A session fixture trains ``ShapesConfig`` on this machine's CPU for about ten
minutes (``train_shapes_from_scratch``, the benchmark's recipe with fewer steps), the
app runs it (``MRCNN_CONFIG`` + ``MRCNN_WEIGHTS``), Chromium uploads a generated shapes image the model never saw, and every true
shape must come back in the COCO results download with its class and a mask of
IoU >= 0.8. ``MRCNN_TEST_SHAPES_WEIGHTS=/path.h5`` skips the training with a file
trained before (e.g. by ``benchmarks/train_shapes.py``).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from mrcnn.testing.browser import CHROMIUM, launch_chromium, open_app, streamlit_app

CONFIG = "mrcnn.training.shapes:ShapesConfig"
TEST_IMAGE_SEED = 8_000_000          # far from every training, benchmark and sample seed
# The benchmark's recipe, shorter: 1000 steps instead of 1500 (about 10 minutes on 2 cores).
CI_EPOCHS, CI_LOW_LR_EPOCHS = 20, 2

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed at /usr/bin/chromium")


@pytest.fixture(scope="session")
def shapes_weights(tmp_path_factory) -> Path:
    given = os.environ.get("MRCNN_TEST_SHAPES_WEIGHTS")
    if given:
        return Path(given)
    from mrcnn.config import config_from_path
    from mrcnn.training.shapes import train_shapes_from_scratch
    config = config_from_path(CONFIG, {"VALIDATION_STEPS": 0})
    _, marks = train_shapes_from_scratch(config, tmp_path_factory.mktemp("shapes_training"),
                                         CI_EPOCHS, CI_LOW_LR_EPOCHS, verbose=0)
    return Path(marks[-1][0])


@pytest.fixture
def shapes_server(shapes_weights, tmp_path):
    with streamlit_app({"MRCNN_WEIGHTS": str(shapes_weights), "MRCNN_CONFIG": CONFIG,
                        "MRCNN_SERVE_URL": None}, tmp_path / "streamlit.log") as (url, _):
        yield url


def test_the_trained_shapes_model_finds_every_shape_in_the_browser(shapes_server, tmp_path):
    from PIL import Image
    from playwright.sync_api import sync_playwright
    from pycocotools import mask as mask_utils

    from mrcnn.training.shapes import CLASS_NAMES, draw_shapes

    image, true_masks, true_class_ids = draw_shapes(np.random.default_rng(TEST_IMAGE_SEED))
    assert len(true_class_ids) >= 2
    picture = tmp_path / "shapes.png"
    Image.fromarray(image).save(picture)

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 2000},
                                       accept_downloads=True).new_page()
            open_app(page, shapes_server).set_input_files(picture)
            page.locator('.st-key-download_json button').wait_for(timeout=240_000)
            page.wait_for_function(
                "() => !document.querySelectorAll('[data-stale=\"true\"]').length",
                timeout=60_000)
            text = page.locator("body").inner_text()
            with page.expect_download() as download:
                page.locator(".st-key-download_json button").click()
            results = json.loads(Path(download.value.path()).read_text())
            assert page.locator('[data-testid="stException"]').count() == 0
            page.screenshot(path=str(tmp_path / "shapes_app.png"), full_page=True)
        finally:
            browser.close()

    found = [(r["category_id"], mask_utils.decode(
        {"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"].encode()}) > 0)
        for r in results]
    for i, class_id in enumerate(true_class_ids):
        truth = true_masks[:, :, i]
        best = max((np.logical_and(m, truth).sum() / np.logical_or(m, truth).sum()
                    for c, m in found if c == class_id), default=0.0)
        assert best >= 0.8, (CLASS_NAMES[class_id], best, [c for c, _ in found])
        assert CLASS_NAMES[class_id] in text
