"""The results page and the public-host switch in a real browser: ``streamlit run``, Chromium.

1. The labelling-tools export panel stays open while its format boxes are ticked (each
   tick reruns the page), and the annotated picture lines up with the original beside it.
2. With ``MRCNN_PUBLIC=1`` and a local stand-in for the Ray Serve deployment whose
   detection answer is malformed, the visitor sees one sentence with an error id (the
   server's log has the same id) and nothing of the server's insides; the page keeps
   working, and in public mode no caption names the service's address.

Times are printed (run with ``-s``), not asserted.
"""
from __future__ import annotations

import io
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mrcnn.testing.browser import CHROMIUM, launch_chromium, streamlit_app, wait_idle
from mrcnn.testing.browser import RESULTS_SETTLED as SETTLED

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="Debian's chromium is not installed at /usr/bin/chromium")]

EXPORT_PANEL_TITLE = "Export for labelling tools"
EXPORT_PANEL = '[data-testid="stExpander"]'
TRACEBACK = '[data-testid="stException"]'
SAMPLE_BUTTON = ".st-key-sample-{} button:visible"

# The original picture (left) and the annotated one (right, the Plotly figure's
# background image) in the first row of results, in CSS pixels.
PICTURE_BOXES = """() => {
  const img = document.querySelector('.st-key-original img');
  const annotated = document.querySelector('.st-key-overlay_click .js-plotly-plot svg image');
  const box = e => { const r = e.getBoundingClientRect();
                     return {top: r.top, height: r.height, left: r.left, width: r.width}; };
  const plot = document.querySelector('.st-key-overlay_click .js-plotly-plot');
  // The original is drawn with object-fit: contain: its picture, centred in its box.
  const r = img.getBoundingClientRect();
  const scale = Math.min(r.width / img.naturalWidth, r.height / img.naturalHeight);
  const w = img.naturalWidth * scale, h = img.naturalHeight * scale;
  const original = {top: r.top + (r.height - h) / 2, height: h,
                    left: r.left + (r.width - w) / 2, width: w};
  return {original: original, annotated: box(annotated), figure: box(plot)};
}"""
#: How far apart (CSS px) the two pictures' top edges and heights may be.
ALIGNMENT_SLACK_PX = 3


def choose_option(page, widget_key: str, option: str) -> None:
    """Pick ``option`` in the selectbox with key ``widget_key``. While the page is still
    busy its list does not always open on the first click, and a rerun can redraw the
    open list under the pointer: open and pick again, after the page went idle."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    options = page.locator('[role="option"]', has_text=option)
    for attempt in range(6):
        wait_idle(page)
        page.locator(f".st-key-{widget_key} [role=combobox]").click()
        try:
            options.first.wait_for(timeout=5_000)
            options.first.click(timeout=5_000)
            break
        except PlaywrightTimeout:          # opened and picked again below
            if attempt == 5:
                raise
            page.keyboard.press("Escape")
    page.wait_for_function(
        "([key, option]) => document.querySelector(`.st-key-${key} [role=combobox]`)"
        ".value.startsWith(option)", arg=[widget_key, option], timeout=30_000)


# ------------------------------------------------------------ 1. export panel

@pytest.fixture
def server(coco_weights, tmp_path):
    with streamlit_app({"MRCNN_WEIGHTS": str(coco_weights), "MRCNN_SERVE_URL": None,
                        "MRCNN_PUBLIC": None}, tmp_path / "streamlit.log") as (url, _):
        yield url


@pytest.mark.slow                 # about 38 s alone on two cores
def test_export_panel_stays_open_while_formats_are_ticked(server, tmp_path):
    from playwright.sync_api import sync_playwright

    started = time.perf_counter()
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = coffee_at_512(browser, server, width=1440, timeout_ms=240_000)
            page.get_by_text("Original: Sample: Coffee").wait_for(timeout=30_000)
            assert "Image: 600 × 400 px" in page.locator("body").inner_text()
            results_after = time.perf_counter() - started

            panel = page.locator(EXPORT_PANEL, has_text=EXPORT_PANEL_TITLE)
            details = panel.locator("details")
            yolo = page.locator(".st-key-one_fmt_yolo")
            labelme = page.locator(".st-key-one_fmt_labelme")
            panel.wait_for(timeout=60_000)    # it renders after the picture
            assert panel.count() == 1 and details.get_attribute("open") is None
            panel.get_by_text(EXPORT_PANEL_TITLE).click()
            yolo.wait_for(state="visible", timeout=30_000)
            assert details.get_attribute("open") is not None

            ticked = []
            for box, name in ((yolo, "YOLO segmentation"), (labelme, "LabelMe JSON")):
                assert not box.locator("input").is_checked(), name
                box.locator("label").click()         # each tick reruns the page
                ticked.append(name)
                wait_idle(page)
                page.wait_for_function(SETTLED, arg="0.70", timeout=60_000, polling=100)
                assert details.get_attribute("open") is not None, \
                    f"the export panel closed after ticking {', '.join(ticked)}"
                assert yolo.is_visible() and labelme.is_visible(), ticked
                assert box.locator("input").is_checked(), name
            # The boxes ticked so far are all still ticked, COCO's default too.
            for key in ("coco", "yolo", "labelme"):
                assert page.locator(f".st-key-one_fmt_{key} input").is_checked(), key
            assert not page.locator(".st-key-one_fmt_voc input").is_checked()
            assert page.locator(TRACEBACK).count() == 0

            boxes = {1440: picture_boxes(page)}
            page.screenshot(path=str(tmp_path / "export_panel.png"), full_page=True)
            # A window whose half-page column is wider than the figure's 640 px.
            boxes[1920] = picture_boxes(coffee_at_512(browser, server, width=1920,
                                                      timeout_ms=120_000))
        finally:
            browser.close()
    print(f"\nscreenshot: {tmp_path / 'export_panel.png'}\nresults after {results_after:.1f} s;"
          f" pictures by window width: {boxes}")
    # The annotated picture beside the original: same top, same height, in a column
    # narrower than the figure's 640 px (1440) and in a wider one (1920).
    for _window, measured in boxes.items():
        original, annotated = measured["original"], measured["annotated"]
        assert abs(original["top"] - annotated["top"]) <= ALIGNMENT_SLACK_PX, measured
        assert abs(original["height"] - annotated["height"]) <= ALIGNMENT_SLACK_PX, measured
        assert abs(original["width"] - annotated["width"]) <= ALIGNMENT_SLACK_PX, measured


def coffee_at_512(browser, server: str, width: int, timeout_ms: int):
    """A new visitor's page at ``width`` px showing the Coffee sample's results at the
    smallest network input (one quick run)."""
    page = browser.new_context(viewport={"width": width, "height": 2000}).new_page()
    page.goto(server)
    page.locator(SAMPLE_BUTTON.format("coffee")).first.wait_for(timeout=180_000)
    page.locator('[data-testid="stSidebar"]').get_by_text(
        "Advanced: each change runs the network again").click()
    choose_option(page, "image_max_dim", "512 px")
    wait_idle(page)
    page.locator(SAMPLE_BUTTON.format("coffee")).first.click()
    page.wait_for_function(SETTLED, arg="0.70", timeout=timeout_ms, polling=100)
    return page


def picture_boxes(page) -> dict:
    page.wait_for_function(
        "() => document.querySelector('.st-key-overlay_click .js-plotly-plot svg image')",
        timeout=60_000)
    page.wait_for_timeout(1000)         # Plotly lays out after it draws
    return page.evaluate(PICTURE_BOXES)


# ------------------------------------------------- 2. public mode, internal error

FAKE_TOKEN = "fake-serve-token-5c1d"
FAKE_HEALTH = {"status": "ok", "replicas": 1, "target_replicas": 1, "device": "GPU:0",
               "replica": "fake-replica", "max_batch_size": 4, "batch_wait_timeout_s": 0.02}
#: What the stand-in answers for the coffee photo (600 px wide): HTTP 200 with JSON the
#: client reads, but whose ``detections`` are not a list of detections.
MALFORMED = {"detections": "garbage", "image_size": [1, 1]}
COFFEE_WIDTH = 600


class FakeServe(BaseHTTPRequestHandler):
    """``GET /healthz`` and ``POST /detect`` as the Ray Serve deployment answers them;
    the coffee photo gets :data:`MALFORMED`, any other photo no detections."""

    def _answer(self, status: int, payload) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.split("?")[0] == "/healthz":
            self._answer(200, FAKE_HEALTH)
        else:
            self._answer(404, {"error": "not found"})

    def do_POST(self):
        from PIL import Image
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = {"path": self.path, "authorization": self.headers.get("Authorization"),
                   "content_type": self.headers.get("Content-Type")}
        self.server.requests.append(request)
        if self.path.split("?")[0] != "/detect":
            return self._answer(404, {"error": "not found"})
        if request["authorization"] != f"Bearer {FAKE_TOKEN}":
            return self._answer(401, {"error": "Missing or wrong bearer token."})
        width, height = Image.open(io.BytesIO(body)).size
        request["size"] = (width, height)
        if width == COFFEE_WIDTH:
            return self._answer(200, MALFORMED)
        self._answer(200, {"detections": [], "image_size": [height, width], "device": "GPU:0",
                           "replica": "fake-replica", "batch_size": 1, "input_shape": [512, 512, 3],
                           "timings_ms": {"mold": 1.0, "network": 2.0, "masks": 1.0,
                                          "unmold": 1.0, "total": 5.0}})

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def fake_serve():
    """The stand-in deployment on 127.0.0.1 in a thread; yields (url, server)."""
    service = ThreadingHTTPServer(("127.0.0.1", 0), FakeServe)
    service.requests = []
    thread = threading.Thread(target=service.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{service.server_address[1]}", service
    finally:
        service.shutdown()
        service.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def public_server(fake_serve, tmp_path_factory):
    """The app with MRCNN_PUBLIC=1 through the stand-in; yields (url, log path)."""
    log = tmp_path_factory.mktemp("public") / "streamlit.log"
    env = {"MRCNN_PUBLIC": "1", "MRCNN_SERVE_URL": fake_serve[0],
           "MRCNN_SERVE_TOKEN": FAKE_TOKEN, "MRCNN_WEIGHTS": None, "MRCNN_ADMIN_PASSWORD": None}
    with streamlit_app(env, log) as (url, _):
        yield url, log


def shown_error_id(text: str, doing: str) -> str:
    """The id in the visitor's one sentence about what went wrong while ``doing``."""
    found = re.search(r"Something went wrong on the server while (.+?) \(error id "
                      r"([0-9a-f]{8})\)", text)
    assert found, f"no error sentence with an id on the page:\n{text}"
    assert found.group(1) == doing, found.group(0)
    return found.group(2)


def insides(text: str, service_url: str) -> list[str]:
    """What of the server's insides ``text`` shows."""
    port = service_url.rsplit(":", 1)[1]
    leaks = ["Traceback", 'File "', "/work", "/tmp", "site-packages", service_url,
             f"127.0.0.1:{port}", f":{port}", FAKE_TOKEN, "garbage", "TypeError"]
    return [leak for leak in leaks if leak in text]


def wait_for_log(log, needle: str, timeout_s: float = 15) -> str:
    deadline = time.monotonic() + timeout_s
    while needle not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.25)
    return log.read_text()


def test_public_mode_internal_error_shows_an_id_and_no_insides(public_server, fake_serve,
                                                                tmp_path):
    from playwright.sync_api import sync_playwright
    url, log = public_server
    service_url, service = fake_serve
    started = time.perf_counter()
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 2000}).new_page()
            page.goto(url)
            page.locator(SAMPLE_BUTTON.format("coffee")).first.wait_for(timeout=180_000)
            page.locator(SAMPLE_BUTTON.format("coffee")).first.click()
            page.get_by_text("error id").wait_for(timeout=120_000)
            wait_idle(page)
            error_after = time.perf_counter() - started
            text = page.locator("body").inner_text()
            error_id = shown_error_id(text, "running the model on Sample: Coffee")
            assert insides(text, service_url) == [], text
            assert page.locator(TRACEBACK).count() == 0
            first_page = tmp_path / "public_error.png"
            page.screenshot(path=str(first_page), full_page=True)

            # The request reached the service, with its token, and the answer came back
            # 200: what failed was reading it, inside the app.
            detects = [r for r in service.requests if r["path"].startswith("/detect")]
            assert detects and detects[-1]["authorization"] == f"Bearer {FAKE_TOKEN}"
            assert detects[-1]["content_type"] == "image/png"
            assert detects[-1]["size"] == (600, 400)
            logged = wait_for_log(log, f"Error {error_id}")
            assert f"Error {error_id} while running the model on Sample: Coffee" in logged, \
                logged[-3000:]
            assert "Traceback" in logged          # the details are the operator's, in the log

            # The visitor carries on: the sidebar answers, another sample gets results.
            page.locator('[data-testid="stSidebar"]').get_by_text(
                "Advanced: each change runs the network again").click()
            page.locator(".st-key-image_max_dim [role=combobox]").wait_for(
                state="visible", timeout=30_000)
            page.locator(SAMPLE_BUTTON.format("chelsea")).first.click()
            page.get_by_text("Original: Sample: Cat").wait_for(timeout=120_000)
            page.get_by_text("No objects at confidence ≥ 0.70").wait_for(timeout=60_000)
            wait_idle(page)
            text = page.locator("body").inner_text()
            assert "error id" not in text, text
            assert "Backend: Ray Serve deployment" in text, text
            assert insides(text, service_url) == [], text
            # ... and back to the coffee photo: the same sentence, a new id.
            page.locator(SAMPLE_BUTTON.format("coffee")).first.click()
            page.get_by_text("error id").wait_for(timeout=120_000)
            wait_idle(page)
            text = page.locator("body").inner_text()
            second_id = shown_error_id(text, "running the model on Sample: Coffee")
            assert second_id != error_id
            assert insides(text, service_url) == [], text
            assert page.locator(TRACEBACK).count() == 0
        finally:
            browser.close()
    assert f"Error {second_id} while" in wait_for_log(log, f"Error {second_id}")
    print(f"\nscreenshot: {first_page}\nerror shown after {error_after:.1f} s "
          f"(id {error_id}, then {second_id})")


def test_public_mode_main_page_does_not_name_the_service(public_server, fake_serve):
    from playwright.sync_api import sync_playwright
    url, _ = public_server
    service_url, _ = fake_serve
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_context(viewport={"width": 1440, "height": 1600}).new_page()
            page.goto(url)
            caption = page.get_by_text(re.compile(r"^Served by "))
            caption.wait_for(timeout=180_000)
            wait_idle(page)
            served_by = caption.inner_text()
            text = page.locator("body").inner_text()
        finally:
            browser.close()
    assert served_by.startswith(
        "Served by a Ray Serve deployment · replicas: 1 · device: GPU:0"), served_by
    assert insides(text, service_url) == [], text
