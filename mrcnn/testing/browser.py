"""A real app in a real browser: ``streamlit run`` in a subprocess, Debian's Chromium.

Used by the browser tests and the crowd benchmark. Chromium is Debian's
(``apt-get install chromium``), driven by Playwright with ``executable_path``;
never ``playwright install``.
"""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "IDLE", "RESULTS_SETTLED", "ROOT", "UPLOADER",
           "free_port", "grow_to_content", "launch_chromium", "open_app", "streamlit_app",
           "wait_idle"]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# As root and on a closed network: no sandbox, no GPU, no background connections.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
UPLOADER = '[data-testid="stFileUploaderDropzoneInput"]'
# True once the main page has settled (``page.wait_for_function(RESULTS_SETTLED,
# arg="0.70")``): no stale (re-running) elements, the annotated image's caption names
# the expected threshold, and the gallery shows min(N, 40) cut-outs for the
# "Cut-outs (N)" heading.
RESULTS_SETTLED = """(threshold) => {
  if (document.querySelectorAll('[data-stale="true"]').length) return false;
  if (!document.body.innerText.includes('at confidence ≥ ' + threshold)) return false;
  const heading = Array.from(document.querySelectorAll('h3')).map(h => h.innerText)
      .find(t => t.startsWith('Cut-outs ('));
  const shown = document.querySelectorAll('.st-key-gallery [data-testid="stImage"]').length;
  const total = heading ? parseInt(heading.slice('Cut-outs ('.length)) : 0;
  return shown === Math.min(total, 40);
}"""

# No stale element and no "Running..." man in the corner: the script run has ended.
IDLE = """() => !document.querySelectorAll('[data-stale="true"]').length
  && !document.querySelector('[data-testid="stStatusWidgetRunningIcon"]')"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def streamlit_app(env: dict, log_path, script: str = "app.py", start_timeout_s: float = 120):
    """``streamlit run <script>`` on 127.0.0.1 with ``env`` added; yields (url, process).

    Waits for ``/_stcore/health``; stops the server afterwards. Its output goes to
    ``log_path`` (quoted in the error when it does not start).
    """
    port = free_port()
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **env}
    for key in [k for k, v in environment.items() if v is None]:
        del environment[key]
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / script),
         "--server.headless", "true", "--server.address", "127.0.0.1",
         "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError("streamlit did not start:\n" + Path(log_path).read_text())
            time.sleep(0.5)
        yield url, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def launch_chromium(playwright):
    """Debian's Chromium, headless, through a Playwright instance (sync or async API)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def open_app(page, url: str, timeout_ms: int = 180_000):
    """Open the app at ``url`` in ``page`` (sync API) and return its file uploader's
    input once the page has drawn it."""
    page.goto(url)
    uploader = page.locator(UPLOADER)
    uploader.wait_for(state="attached", timeout=timeout_ms)
    return uploader


def grow_to_content(page, width: int, rounds: int = 8, pause_ms: int = 1500) -> None:
    """Streamlit scrolls inside its main container: make the window (sync API) as tall as
    the page, until its height stops changing (pictures take their height once loaded)."""
    height = 0
    for _ in range(rounds):
        page.wait_for_timeout(pause_ms)
        now = page.evaluate(
            "() => document.querySelector('[data-testid=\"stMain\"]').scrollHeight")
        if now == height:
            return
        height = now
        page.set_viewport_size({"width": width, "height": int(height) + 40})


def wait_idle(page, timeout_s: float = 120, steady_s: float = 1.5) -> None:
    """Wait until the script run a widget started has ended: :data:`IDLE` holds for
    ``steady_s`` in a row (the running icon shows a moment after the click)."""
    deadline = time.monotonic() + timeout_s
    since = None
    while True:
        if page.evaluate(IDLE):
            since = since or time.monotonic()
            if time.monotonic() - since >= steady_s:
                return
        else:
            since = None
        assert time.monotonic() < deadline, "the page did not finish its run"
        page.wait_for_timeout(100)
