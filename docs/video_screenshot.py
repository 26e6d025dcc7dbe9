"""Regenerate the README's picture of the Video page (``docs/images/video.png``).

    python docs/video_screenshot.py --weights shapes.h5     # a benchmarks/train_shapes.py file

Starts the app with the shapes model (``--config``, ShapesConfig by default), opens the
Video page in Debian's Chromium (Playwright, never ``playwright install``), analyses the
generated "Moving shapes" sample at 2 frames per second and saves the page once the
result is shown, scaled to at most ``--width`` pixels, as a palette PNG.
"""
from __future__ import annotations

import argparse
import io
import re
import tempfile
from pathlib import Path

from PIL import Image

from mrcnn.testing.browser import ROOT, grow_to_content, launch_chromium, streamlit_app

OUT = ROOT / "docs" / "images" / "video.png"


def save_small(png: bytes, path: Path, width: int) -> int:
    """``png`` scaled to ``width`` pixels at most, as a 128-colour palette PNG."""
    picture = Image.open(io.BytesIO(png)).convert("RGB")
    if picture.width > width:
        picture = picture.resize((width, round(picture.height * width / picture.width)),
                                 Image.LANCZOS)
    buffer = io.BytesIO()
    picture.quantize(128, method=Image.Quantize.MEDIANCUT).save(buffer, "PNG", optimize=True)
    path.write_bytes(buffer.getvalue())
    return buffer.tell()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--config", default="mrcnn.training.shapes:ShapesConfig")
    parser.add_argument("--width", type=int, default=1100)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    env = {"MRCNN_WEIGHTS": str(Path(args.weights).resolve()), "MRCNN_CONFIG": args.config,
           "MRCNN_SERVE_URL": None, "MRCNN_PUBLIC": None}
    log = Path(tempfile.mkdtemp(prefix="video_shot_")) / "streamlit.log"
    with streamlit_app(env, log) as (url, _), sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1400})
            page.goto(f"{url}/Video")
            page.get_by_text("Sample clip", exact=True).click(timeout=300_000)
            start = page.get_by_role("button", name=re.compile(r"Analyse \d+ frames"))
            start.wait_for(timeout=300_000)
            start.click()
            page.wait_for_selector("video", timeout=600_000)
            page.wait_for_function("() => document.querySelector('video').readyState >= 2",
                                   timeout=60_000)
            page.wait_for_timeout(3000)        # the chart and the cut-outs finish drawing
            grow_to_content(page, 1300)
            bottom = page.evaluate(
                "() => Math.max(...Array.from(document.querySelectorAll("
                "'[data-testid=\"stDownloadButton\"]')).map(b => b.getBoundingClientRect()"
                ".bottom + window.scrollY))")
            png = page.screenshot(full_page=True, clip={"x": 0, "y": 0, "width": 1300,
                                                        "height": int(bottom) + 30})
        finally:
            browser.close()
    print(OUT, save_small(png, OUT, args.width), "bytes")


if __name__ == "__main__":
    main()
