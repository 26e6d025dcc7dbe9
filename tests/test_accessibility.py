"""WCAG 2.1 AA in a real browser: axe-core on every page, and the main page by keyboard alone.

axe-core is the npm package pinned in ``tests/a11y/package.json`` (``npm ci --prefix
tests/a11y``, as ``.ci/run`` does); it is injected into Debian's Chromium with Playwright
and run with the WCAG 2.0/2.1 A and AA rules plus axe's best practices. Each page is
checked in the light and the dark colour scheme (the theme follows the browser's).
The counts per page are printed (run with ``-s``); the assertions are the issue's:
no serious or critical violation, and an ``alt`` attribute on every ``<img>``.

The pages: the main page with the Coffee sample's results (generated weights), "How it
works" once its lesson has drawn, the Train page, the Video page when the app has one,
and public mode's reserved controls (the Train page with an operator password set).
Then the main page by keyboard alone: a sample run with Enter, a table row selected
with the keys the page names, the object's card found.
"""
from __future__ import annotations

import json
import re

import pytest

from mrcnn.testing.browser import CHROMIUM, ROOT, launch_chromium, streamlit_app, wait_idle
from mrcnn.testing.browser import RESULTS_SETTLED as SETTLED

AXE = ROOT / "tests" / "a11y" / "node_modules" / "axe-core" / "axe.min.js"

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(),
                                 reason="Debian's chromium is not installed at /usr/bin/chromium"),
              pytest.mark.skipif(not AXE.exists(),
                                 reason="axe-core is not installed: npm ci --prefix tests/a11y")]

RULE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
RUN_AXE = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: 'tag', values: tags},
                                          resultTypes: ['violations']});
  return {version: axe.version,
          violations: result.violations.map(v => ({
            id: v.id, impact: v.impact, count: v.nodes.length,
            where: v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' :: '
                                           + (n.failureSummary || '').slice(0, 160))}))};
}"""
IMAGES_WITHOUT_ALT = """() => Array.from(document.querySelectorAll('img'))
  .filter(img => !img.hasAttribute('alt')).map(img => img.src.slice(0, 60))"""
SAMPLE_BUTTON = ".st-key-sample-{} button"
LESSON_LAST_HEADING = "9. What if…"
HIGH_IMPACT = ("serious", "critical")
SCHEMES = ("light", "dark")


def audit(page) -> dict:
    """axe's violations on ``page`` and the images without an ``alt`` attribute."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(RUN_AXE, RULE_TAGS)
    found["images_without_alt"] = page.evaluate(IMAGES_WITHOUT_ALT)
    found["images"] = page.locator("img").count()
    return found


def summary(name: str, found: dict) -> str:
    high = [v for v in found["violations"] if v["impact"] in HIGH_IMPACT]
    rules = ", ".join(f"{v['id']} ({v['impact']}, {v['count']})" for v in found["violations"])
    where = "".join(f"\n  {v['id']}: {place}" for v in found["violations"]
                    if v["id"] != "image-alt" for place in v["where"])
    return (f"{name}: axe {found['version']}: {sum(v['count'] for v in high)} serious or "
            f"critical nodes; {len(found['images_without_alt'])} of {found['images']} images "
            f"without alt; rules: {rules or 'none'}{where}")


def assert_accessible(name: str, found: dict) -> None:
    print("\n" + summary(name, found))
    high = [v for v in found["violations"] if v["impact"] in HIGH_IMPACT]
    assert not high, json.dumps(high, indent=1)
    assert not found["images_without_alt"], found["images_without_alt"]


def video_page() -> str | None:
    """The Video page's URL path when the app has one (``pages/*_Video.py``)."""
    pages = sorted((ROOT / "pages").glob("*_Video.py"))
    return "/" + re.sub(r"^\d+_", "", pages[0].stem) if pages else None


@pytest.fixture(scope="module")
def server(coco_weights, tmp_path_factory):
    log = tmp_path_factory.mktemp("a11y") / "streamlit.log"
    with streamlit_app({"MRCNN_WEIGHTS": str(coco_weights), "MRCNN_SERVE_URL": None,
                        "MRCNN_PUBLIC": None}, log) as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = launch_chromium(p)
        try:
            yield chromium
        finally:
            chromium.close()


def new_page(browser, scheme: str, width: int = 1440, height: int = 1600):
    return browser.new_context(viewport={"width": width, "height": height},
                               color_scheme=scheme).new_page()


def coffee_results(browser, server: str, scheme: str):
    """A visitor's page showing the Coffee sample's results."""
    page = new_page(browser, scheme)
    page.goto(server)
    page.locator(SAMPLE_BUTTON.format("coffee")).first.click(timeout=180_000)
    page.wait_for_function(SETTLED, arg="0.70", timeout=300_000, polling=200)
    wait_idle(page)
    return page


@pytest.mark.slow                 # the network at 1024 px on the Coffee sample, then axe twice
@pytest.mark.parametrize("scheme", SCHEMES)
def test_main_page_with_results(browser, server, scheme):
    page = coffee_results(browser, server, scheme)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert_accessible(f"main page with results ({scheme})", audit(page))
    page.context.close()


@pytest.mark.slow                 # the lesson's step-by-step run: about 30 s on two cores
@pytest.mark.parametrize("scheme", SCHEMES)
def test_how_it_works_after_its_lesson_draws(browser, server, scheme):
    page = new_page(browser, scheme)
    page.goto(f"{server}/How_it_works")
    page.get_by_role("heading", name=LESSON_LAST_HEADING).wait_for(timeout=600_000)
    wait_idle(page, timeout_s=300)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert_accessible(f"How it works ({scheme})", audit(page))
    page.context.close()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_train_page(browser, server, scheme):
    page = new_page(browser, scheme)
    page.goto(f"{server}/Train")
    page.get_by_role("button", name="Start training").wait_for(timeout=180_000)
    wait_idle(page)
    assert_accessible(f"Train ({scheme})", audit(page))
    page.context.close()


@pytest.mark.skipif(video_page() is None, reason="this app has no Video page")
@pytest.mark.parametrize("scheme", SCHEMES)
def test_video_page(browser, server, scheme):
    page = new_page(browser, scheme)
    page.goto(f"{server}{video_page()}")
    page.locator('[data-testid="stMain"] h1').first.wait_for(timeout=180_000)
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert_accessible(f"Video ({scheme})", audit(page))
    page.context.close()


@pytest.fixture(scope="module")
def public_server(tmp_path_factory):
    """Public mode with an operator password: the reserved controls ask for it."""
    log = tmp_path_factory.mktemp("a11y_public") / "streamlit.log"
    with streamlit_app({"MRCNN_PUBLIC": "1", "MRCNN_ADMIN_PASSWORD": "a11y-operator-secret",
                        "MRCNN_SERVE_URL": None}, log) as (url, _):
        yield url


@pytest.mark.parametrize("scheme", SCHEMES)
def test_public_modes_reserved_controls(browser, public_server, scheme):
    page = new_page(browser, scheme)
    page.goto(f"{public_server}/Train")
    page.get_by_text("is reserved for its operator").wait_for(timeout=180_000)
    page.get_by_label("Operator password").wait_for()
    wait_idle(page)
    assert_accessible(f"public mode, reserved controls ({scheme})", audit(page))
    page.context.close()


# ------------------------------------------------------------------ keyboard only

FOCUSED = """() => { const e = document.activeElement;
  const key = e && e.closest('[class*="st-key-"]');
  const style = e ? getComputedStyle(e) : null;
  return e && {tag: e.tagName, testid: (e.closest('[data-testid]') || {}).dataset?.testid || null,
               key: key ? Array.from(key.classList).find(c => c.startsWith('st-key-')) : null,
               outline: style.outlineStyle, outlineWidth: parseFloat(style.outlineWidth)}; }"""


def tab_to(page, wanted, presses: int = 400) -> dict:
    """Press Tab until ``wanted(focused)`` holds for the focused element; returns it.
    The page has over a hundred stops with results (every cut-out's button); on a busy
    machine an element may also appear only after a first lap."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused and wanted(focused):
            return focused
    raise AssertionError(f"{presses} presses of Tab never reached it (last: {focused})")


@pytest.mark.slow                 # a network run and about 200 key presses
def test_keyboard_alone_runs_a_sample_and_inspects_an_object_from_the_table(browser, server):
    """Tab to the Coffee sample, run it with Enter, Tab into the objects table, move two
    rows down with the arrow keys, select the row with Shift+Space (as the page says)
    and find that object's card; the focus is visibly outlined on the way."""
    page = new_page(browser, "light")
    page.goto(server)
    page.locator(SAMPLE_BUTTON.format("coffee")).first.wait_for(timeout=180_000)
    wait_idle(page)
    sample = tab_to(page, lambda f: f["key"] == "st-key-sample-coffee" and f["tag"] == "BUTTON")
    assert sample["outline"] != "none" and sample["outlineWidth"] >= 2, sample
    page.keyboard.press("Enter")
    page.wait_for_function(SETTLED, arg="0.70", timeout=300_000, polling=200)
    wait_idle(page)
    assert "Shift+Space" in page.get_by_text("Select a row to inspect its object").inner_text()

    grid = tab_to(page, lambda f: f["testid"] == "data-grid-canvas")
    assert grid["key"] == "st-key-objects_table"
    assert grid["outline"] != "none" and grid["outlineWidth"] >= 2, grid
    page.keyboard.press("ArrowDown")          # from the grid onto the second row
    page.keyboard.press("ArrowDown")          # the third
    page.keyboard.press("Shift+Space")
    card = page.locator(".st-key-object_card h3")
    card.wait_for(timeout=60_000)
    title = card.inner_text()
    found = re.fullmatch(r"Object #(\d+): (.+) (\d\.\d{3})", title)
    assert found and found.group(1) == "3", title
    # The same object as the third cut-out, by its alt text.
    third = page.locator('.st-key-gallery img[alt*=" #3, score "]')
    third.wait_for(timeout=60_000)
    assert third.count() == 1
    assert third.get_attribute("alt").startswith(f"cut-out of {found.group(2)} #3, score ")
    assert page.locator('[data-testid="stException"]').count() == 0
    page.context.close()
