"""The Video page in a real browser: ``streamlit run`` and Debian's chromium via Playwright.

Uploads a generated clip, starts the analysis, waits for the result, and checks that the
``<video>`` element loads (``readyState >= 2``) with the sampled clip's duration and that
the page lists as many tracks as the engine finds on the same clip with the same network.
"""
from __future__ import annotations

import re

import pytest

from mrcnn.testing.browser import CHROMIUM, launch_chromium, open_app, streamlit_app

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="Debian's chromium is not installed at /usr/bin/chromium")]

CONFIG = "mrcnn.testing.configs:SmallConfig"
FPS, SECONDS = 2.0, 3.0


def engine_track_count(model, clip, tmp_path) -> int:
    """The tracks the engine finds at the page's defaults: the network at 0.1, kept and
    tracked from 0.7 (the confidence slider's default), every half second."""
    from mrcnn.classes import class_names_for
    from mrcnn.video.pipeline import analyse_clip
    from studio.jobs import DETECT_THRESHOLD
    from studio.results_ui import DEFAULT_THRESHOLD
    report = analyse_clip(
        clip, tmp_path / "engine",
        lambda images: model.detect_compact(images, DETECTION_MIN_CONFIDENCE=DETECT_THRESHOLD),
        class_names_for(model.config), fps=FPS, min_score=DEFAULT_THRESHOLD)
    return report.track_count


def test_upload_a_clip_and_play_the_tracked_result_in_chromium(small_model, tmp_path):
    from playwright.sync_api import sync_playwright

    from mrcnn.video.samples import moving_shapes, write_clip
    clip = tmp_path / "shapes.mp4"
    write_clip(clip, (image for image, _ in moving_shapes(SECONDS, 10, 256, 4, seed=2)), 10)
    expected_tracks = engine_track_count(small_model, clip, tmp_path)
    assert expected_tracks > 0           # the generated weights find plenty (25 here)

    env = {"MRCNN_WEIGHTS": str(small_model.weights_path), "MRCNN_CONFIG": CONFIG,
           "MRCNN_SERVE_URL": None, "MRCNN_PUBLIC": None}
    with streamlit_app(env, tmp_path / "streamlit.log") as (url, _), \
            sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            upload = open_app(page, f"{url}/Video")
            upload.set_input_files(clip)
            start = page.get_by_role("button", name=re.compile(r"Analyse 6 frames"))
            start.wait_for(timeout=120_000)
            start.click()
            page.get_by_role("button", name="Cancel").wait_for(timeout=120_000)
            page.wait_for_selector("video", timeout=300_000)
            page.wait_for_function(
                "() => { const v = document.querySelector('video');"
                " return v && v.readyState >= 2 && isFinite(v.duration); }",
                timeout=60_000)
            duration = page.evaluate("() => document.querySelector('video').duration")
            assert duration == pytest.approx(SECONDS, abs=0.25)
            heading = page.locator("h3", has_text="Tracks (").first.inner_text()
            assert int(heading.split("(")[1].rstrip(")")) == expected_tracks
            # The cut-outs, the chart and the downloads arrive after the clip (a loaded
            # machine may take seconds): wait for the last of them before counting.
            page.get_by_role("button", name="Frames + annotations (ZIP)").wait_for(
                timeout=120_000)
            assert page.get_by_role("button", name="Annotated clip (MP4)").count() == 1
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()
