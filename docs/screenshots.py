"""Regenerate the README's screenshots: the object inspector and the teaching page's sections.

    python docs/screenshots.py                       # generated weights (meaningless detections)
    python docs/screenshots.py --weights weights/mask_rcnn_coco.h5
    python docs/screenshots.py --only inspector --weights shapes.h5 \
        --config mrcnn.training.shapes:ShapesConfig --sample "shapes 1"   # a trained shapes model

Starts the app (``streamlit run app.py``) with the given weights, or with a file
generated in the published layout from seeded values when none is given, opens
"How it works" in Debian's Chromium (Playwright, never ``playwright install``),
sets a few "What if" controls and saves

- ``docs/images/inspector.png``: the main page after a click on an object (the dimmed
  overlay and the object's card);
- ``docs/images/follow_object.png``: section 8, "Follow one object through the network";
- ``docs/images/what_if.png``: section 9, "What if…", after a rerun of the heads.

Each picture is cut to its section, scaled to at most ``--width`` pixels and stored
as a palette PNG when that keeps it under 1 MB.
"""
from __future__ import annotations

import argparse
import io
import tempfile
from pathlib import Path

from PIL import Image

from mrcnn.testing.browser import ROOT, grow_to_content, launch_chromium, streamlit_app

OUT = ROOT / "docs" / "images"
SECTIONS = {"follow": "follow_object.png", "what-if": "what_if.png"}
MAX_BYTES = 1_000_000
TIMEOUT_MS = 600_000


def section_clip(page, anchor: str) -> dict:
    """The page area from section ``anchor``'s heading to the next section's heading."""
    return page.evaluate(
        """(anchor) => {
            const heading = document.getElementById(anchor).closest('[data-testid="stHeading"]')
                || document.getElementById(anchor);
            const headings = [...document.querySelectorAll('[data-testid="stHeading"] h2')];
            const main = document.querySelector('[data-testid="stMain"]').getBoundingClientRect();
            const top = heading.getBoundingClientRect().top;
            const next = headings.map(h => h.getBoundingClientRect().top).find(y => y > top + 5);
            const block = document.querySelector('[data-testid="stMainBlockContainer"]')
                .getBoundingClientRect();
            const last = Math.max(...[...document.querySelectorAll(
                '[data-testid="stMainBlockContainer"] [data-testid="stElementContainer"]')]
                .map(e => e.getBoundingClientRect().bottom));
            const bottom = next === undefined ? last + 8 : next - 8;
            return {x: block.left, y: top - 8, width: block.width, height: bottom - top + 8};
        }""", anchor)


def save_small(png: bytes, path: Path, width: int) -> int:
    picture = Image.open(io.BytesIO(png)).convert("RGB")
    if picture.width > width:
        picture = picture.resize((width, round(picture.height * width / picture.width)),
                                 Image.LANCZOS)
    for candidate in (picture, picture.quantize(256, method=Image.Quantize.MEDIANCUT)):
        buffer = io.BytesIO()
        candidate.save(buffer, "PNG", optimize=True)
        if buffer.tell() <= MAX_BYTES:
            break
    path.write_bytes(buffer.getvalue())
    return buffer.tell()


def move_slider(page, label: str, key: str, steps: int) -> None:
    """Press ``key`` ``steps`` times on the slider labelled ``label``."""
    slider = page.locator('[data-testid="stSlider"]').filter(has_text=label).locator(
        'input[type="range"]')
    slider.focus()
    for _ in range(steps):
        slider.press(key)


def wait_until_idle(page) -> None:
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=TIMEOUT_MS)
    page.wait_for_timeout(1000)


INSPECTOR_CLIP = """() => {
    const top = document.querySelector('.st-key-run_details').getBoundingClientRect().top;
    const card = document.querySelector('.st-key-object_card').getBoundingClientRect();
    const block = document.querySelector('[data-testid="stMainBlockContainer"]')
        .getBoundingClientRect();
    return {x: block.left, y: top - 8, width: block.width, height: card.bottom - top + 16};
}"""


def inspector(page, url: str, width: int, sample: str) -> None:
    """The main page with a sample photo, after a click on its best object."""
    page.goto(url)
    page.get_by_role("button", name=sample).click()
    page.locator('.st-key-gallery [data-testid="stImage"]').first.wait_for(timeout=TIMEOUT_MS)
    wait_until_idle(page)
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    card = page.locator(".st-key-object_card")
    for _ in range(3):                      # a click while plotly still lays out is lost
        box = chart.locator(".scatterlayer .points path").nth(0).bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        try:
            card.wait_for(timeout=30_000)
            break
        except Exception:  # noqa: BLE001 - try again
            page.wait_for_timeout(1000)
    wait_until_idle(page)
    grow_to_content(page, 1400)
    png = page.screenshot(clip=page.evaluate(INSPECTOR_CLIP), full_page=True)
    size = save_small(png, OUT / "inspector.png", width)
    print(f"{OUT / 'inspector.png'}: {size / 1000:.0f} kB")


def take(weights: Path, width: int, log: Path, config: str | None = None,
         sample: str = "Coffee", only: str | None = None) -> None:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with streamlit_app({"MRCNN_WEIGHTS": str(weights), "MRCNN_CONFIG": config}, log) as (url, _), \
            sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            if only != "lesson":
                inspector(page, url, width, sample)
            if only == "inspector":
                return
            page.set_viewport_size({"width": 1400, "height": 1000})
            page.goto(f"{url}/How_it_works")
            page.get_by_role("heading", name="9. What if…").wait_for(timeout=TIMEOUT_MS)
            wait_until_idle(page)
            # What if: NMS over all classes, masks cut at 0.7, a rerun with fewer proposals.
            page.get_by_text("all classes together", exact=True).click()
            wait_until_idle(page)
            move_slider(page, "Mask threshold for every object", "ArrowRight", 4)
            wait_until_idle(page)
            move_slider(page, "Proposals that reach the heads", "ArrowLeft", 3)
            page.get_by_role("button", name="Run the proposal layer and the heads again").click()
            page.get_by_text("Proposals after the rerun").wait_for(timeout=TIMEOUT_MS)
            wait_until_idle(page)
            grow_to_content(page, 1400)
            if page.locator('[data-testid="stException"]').count():
                raise RuntimeError("the page shows an exception; see " + str(log))
            for anchor, name in SECTIONS.items():
                png = page.screenshot(clip=section_clip(page, anchor), full_page=True)
                size = save_small(png, OUT / name, width)
                print(f"{OUT / name}: {size / 1000:.0f} kB")
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="weights file (default: generated)")
    parser.add_argument("--width", type=int, default=1200, help="largest picture width")
    parser.add_argument("--config", help="MRCNN_CONFIG of the weights (module:Class)")
    parser.add_argument("--sample", default="Coffee", help="sample picture the inspector opens")
    parser.add_argument("--only", choices=["inspector", "lesson"], help="take only these")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        weights = args.weights
        if weights is None:
            from mrcnn.testing.synthetic_weights import generate_coco_weights
            weights = generate_coco_weights(Path(scratch) / "coco_generated.h5", seed=0)
        take(Path(weights).resolve(), args.width, Path(scratch) / "streamlit.log", args.config,
             args.sample, args.only)


if __name__ == "__main__":
    main()
