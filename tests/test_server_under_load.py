"""A real ``streamlit run`` with Chromium visitors: the process survives what crashed it.

1. Ten sessions rerun as fast as they can (Streamlit's rerun key, each rerun ending in
   Streamlit's ``keras.backend.clear_session()``) while the first visitor's photo is
   traced and run for the first time.
2. One visitor trains on the Train page (a child process) for at least 60 s, through a
   finished epoch; meanwhile a second uploads two photos and moves the confidence
   slider, and a third opens the teaching page. Then *Stop* ends the run.

At the end the server's process is still alive, and no page showed a traceback.
"""
from __future__ import annotations

import re
import time

import numpy as np
import pytest
from PIL import Image

from mrcnn.testing.browser import CHROMIUM, launch_chromium, open_app, streamlit_app
from mrcnn.training.shapes import draw_shapes

SHAPES_CONFIG = "mrcnn.training.shapes:ShapesConfig"
RESULTS = ".st-key-download_json button"
SLIDER = '[data-testid="stSlider"] input[type=range]'
TRACEBACK = '[data-testid="stException"]'
RUNNING = re.compile(r"(Starting|Training) · layers")      # the Train page's status line

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed at /usr/bin/chromium")]


@pytest.fixture
def server(trained_shapes_weights, tmp_path):
    env = {"MRCNN_WEIGHTS": str(trained_shapes_weights), "MRCNN_CONFIG": SHAPES_CONFIG,
           "MRCNN_SERVE_URL": None, "MRCNN_TRAIN_DIR": str(tmp_path / "runs")}
    with streamlit_app(env, tmp_path / "streamlit.log") as (url, process):
        yield url, process, tmp_path / "streamlit.log"


def pictures(tmp_path, count) -> list:
    paths = []
    for i in range(count):
        path = tmp_path / f"shapes_{i}.png"
        Image.fromarray(draw_shapes(np.random.default_rng([9_000_000, i]))[0]).save(path)
        paths.append(path)
    return paths


def test_the_server_survives_reruns_training_photos_and_the_lesson_at_once(server, tmp_path):
    from playwright.sync_api import sync_playwright
    url, process, log = server
    first_photo, photo_a, photo_b = pictures(tmp_path, 3)

    def alive():
        assert process.poll() is None, f"the server died:\n{log.read_text()[-3000:]}"

    def wait(locator, timeout_s: float):
        """Wait for ``locator`` to show, failing at once if the server dies meanwhile."""
        deadline = time.monotonic() + timeout_s
        while not locator.count():
            alive()
            assert time.monotonic() < deadline, f"timed out waiting for {locator}"
            time.sleep(0.5)

    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1600})
            # 1. Ten sessions rerun while the first photo is traced for the first time.
            crowd = [context.new_page() for _ in range(10)]
            for page in crowd:
                open_app(page, url)
            first = context.new_page()
            open_app(first, url).set_input_files(first_photo)
            reruns, deadline = 0, time.monotonic() + 240
            while not first.locator(RESULTS).count():
                assert time.monotonic() < deadline, "the first photo got no results"
                for page in crowd:
                    page.keyboard.press("r")          # Streamlit's "rerun" key
                    reruns += 1
                alive()
            assert reruns >= 50
            for page in crowd:
                page.close()

            # 2. Training for 60 s or more, with a photo visitor and a lesson.
            trainer = context.new_page()
            trainer.goto(f"{url}/Train")
            trainer.get_by_role("button", name="Start training").click()
            started = time.monotonic()
            wait(trainer.get_by_text(RUNNING), 60)

            visitor = context.new_page()
            upload = open_app(visitor, url)
            upload.set_input_files(photo_a)
            wait(visitor.locator(RESULTS), 240)
            slider = visitor.locator(SLIDER).first
            slider.focus()
            visitor.keyboard.press("Home")
            wait(visitor.get_by_text("at confidence ≥ 0.10").first, 60)
            upload.set_input_files(photo_b)
            wait(visitor.get_by_text(f"Original: {photo_b.name}"), 240)
            wait(visitor.locator(RESULTS), 240)
            alive()

            lesson = context.new_page()
            lesson.goto(f"{url}/How_it_works")
            wait(lesson.get_by_text("Network run:"), 240)
            alive()

            wait(trainer.get_by_text("After epoch 1"), 420)
            while time.monotonic() - started < 60:
                alive()
                time.sleep(1)
            alive()
            stopped_after = None
            if trainer.get_by_text(RUNNING).count():     # 500 steps: still going on a CPU
                stop_pressed = time.monotonic()
                trainer.get_by_role("button", name="Stop").click()
                wait(trainer.get_by_text(re.compile(r"Stopped · layers")), 30)
                stopped_after = time.monotonic() - stop_pressed
            else:
                assert trainer.get_by_text(re.compile(r"Finished · layers")).count() == 1

            for page in (first, trainer, visitor, lesson):
                assert page.locator(TRACEBACK).count() == 0, page.url
        finally:
            browser.close()
    alive()
    print(f"\n{reruns} reruns during the first photo; training stopped "
          f"{stopped_after} s after the click")
    assert not list((tmp_path / "runs").rglob("*.tmp"))
