"""The public-host switch (``MRCNN_PUBLIC``) and the limits every mode keeps, with AppTest.

The app runs the full COCO model on generated weights. Tests that must see jobs
*waiting* hold the queue's worker on a gate (``studio.services._run_jobs`` waits for
it, then runs the real network), so what is queued when is not left to timing.
A test that needs a fresh queue and store sets a limit no other test uses: the
services are cached per set of limits.
"""
from __future__ import annotations

import io
import re
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
TRAIN = str(ROOT / "pages" / "3_Train.py")
TIMEOUT = 300


def jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def small_photos(photos, count: int) -> list[tuple[str, bytes, str]]:
    """``count`` different small JPEGs (different crops of one photo)."""
    base = photos["chelsea"]
    return [(f"crop{i}.jpg", jpeg(np.ascontiguousarray(base[i * 7:i * 7 + 200, :260])),
             "image/jpeg") for i in range(count)]


def texts(elements) -> list[str]:
    return [e.value for e in elements]


@pytest.fixture
def app_env(coco_weights, monkeypatch):
    monkeypatch.setenv("MRCNN_WEIGHTS", str(coco_weights))
    for name in ("MRCNN_SERVE_URL", "MRCNN_PUBLIC", "MRCNN_ADMIN_PASSWORD", "MRCNN_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def open_app(size: int = 512, address: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    if address is not None:
        at.session_state["test_address"] = address
    at.run()
    assert not at.exception, texts(at.exception)
    at.selectbox(key="image_max_dim").set_value(size)
    return at


@pytest.fixture
def addresses(monkeypatch):
    """Each AppTest session says its client address in ``session_state["test_address"]``
    (AppTest has no browser connection, so ``st.context.ip_address`` is None)."""
    import studio.queue_ui
    import studio.run_all_ui

    def address():
        return st.session_state.get("test_address")
    monkeypatch.setattr(studio.queue_ui, "client_address", address)
    monkeypatch.setattr(studio.run_all_ui, "client_address", address)


@pytest.fixture
def gate(monkeypatch):
    """The queue's worker waits for ``gate.open`` before each network call; ``gate.ran``
    lists the keys it ran, ``gate.queues`` the queues jobs were submitted to."""
    import studio.services
    from studio.fair_queue import FairQueue

    class Gate:
        open = threading.Event()
        entered = threading.Event()
        ran: list = []
        queues: list = []
        submitted: list = []

    real_run, real_submit = studio.services._run_jobs, FairQueue.submit

    def gated(holder, jobs):
        Gate.entered.set()
        assert Gate.open.wait(timeout=TIMEOUT)
        Gate.ran.extend(job.key for job in jobs)
        return real_run(holder, jobs)

    def recording_submit(self, *args, **kwargs):
        job = real_submit(self, *args, **kwargs)
        if self not in Gate.queues:
            Gate.queues.append(self)
        Gate.submitted.append(job)
        return job

    monkeypatch.setattr(studio.services, "_run_jobs", gated)
    monkeypatch.setattr(FairQueue, "submit", recording_submit)
    yield Gate
    Gate.open.set()


# ------------------------------------------------------------------ operator

def test_public_train_page_without_a_password_offers_no_controls(monkeypatch):
    monkeypatch.setenv("MRCNN_PUBLIC", "1")
    monkeypatch.delenv("MRCNN_ADMIN_PASSWORD", raising=False)
    at = AppTest.from_file(TRAIN, default_timeout=120)
    at.run()
    assert not at.exception
    assert not [b for b in at.button if b.label in ("Start training", "Stop")]
    assert not at.text_input, "no password field when no password is set"
    (said,) = [i for i in texts(at.info) if "public demo" in i]
    assert "switched off" in said and "MRCNN_ADMIN_PASSWORD" in said


def test_public_train_page_is_unlocked_by_the_operator_password_only(monkeypatch, tmp_path):
    from studio.training_run import TrainingRun
    monkeypatch.setenv("MRCNN_PUBLIC", "true")
    monkeypatch.setenv("MRCNN_ADMIN_PASSWORD", "correct horse")
    monkeypatch.setenv("MRCNN_TRAIN_DIR", str(tmp_path))
    monkeypatch.delenv("MRCNN_CONFIG", raising=False)
    at = AppTest.from_file(TRAIN, default_timeout=120)
    at.run()
    assert not [b for b in at.button if b.label == "Start training"]
    assert any("reserved for its operator" in i for i in texts(at.info))

    at.text_input(key="operator_password").input("correct horse ")     # one space too many
    next(b for b in at.button if b.label == "Unlock").click()
    at.run()
    assert "That password is not right." in texts(at.error)
    assert not [b for b in at.button if b.label == "Start training"]

    at.text_input(key="operator_password").input("correct horse")
    next(b for b in at.button if b.label == "Unlock").click()
    at.run()
    assert not at.exception
    assert not at.error
    at.slider[0].set_value(2)
    next(b for b in at.button if b.label == "Start training").click()
    at.run()
    run = TrainingRun.active()
    assert run is not None and run.spec.epochs == 2 and run.folder.parent == tmp_path

    visitor = AppTest.from_file(TRAIN, default_timeout=120)     # a stranger watches
    visitor.run()
    assert not visitor.exception
    assert "of 2 ·" in "\n".join(texts(visitor.markdown))
    assert not [b for b in visitor.button if b.label in ("Stop", "Start training")]

    at.run()                                      # the operator stops it (while it builds)
    next(b for b in at.button if b.label == "Stop").click()
    at.run()
    assert not run.alive and run.snapshot()["status"] == "stopped"


def test_wrong_passwords_from_one_address_are_refused_after_five(monkeypatch):
    monkeypatch.setenv("MRCNN_PUBLIC", "1")
    monkeypatch.setenv("MRCNN_ADMIN_PASSWORD", "s3cret")
    import studio.public
    monkeypatch.setattr(studio.public, "client_address", lambda: "192.0.2.99")
    at = AppTest.from_file(TRAIN, default_timeout=120)
    at.run()
    for attempt in range(studio.public.MAX_FAILED_UNLOCKS + 1):
        # The last try is the right password, refused all the same: the address waits.
        at.text_input(key="operator_password").input(
            "s3cret" if attempt == studio.public.MAX_FAILED_UNLOCKS else f"guess{attempt}")
        next(b for b in at.button if b.label == "Unlock").click()
        at.run()
    assert any("Too many wrong passwords" in e for e in texts(at.error))
    assert not [b for b in at.button if b.label == "Start training"]


def test_password_comparison():
    from studio.public import password_matches
    assert password_matches("pw", "pw")
    assert not password_matches("pw", "pW")
    assert not password_matches("", "")
    assert not password_matches("anything", None)


def test_public_weights_panel_shows_no_path_and_no_download_for_visitors(monkeypatch,
                                                                          tmp_path):
    missing = tmp_path / "nowhere" / "mask_rcnn_coco.h5"
    monkeypatch.setenv("MRCNN_WEIGHTS", str(missing))
    monkeypatch.setenv("MRCNN_PUBLIC", "1")
    monkeypatch.delenv("MRCNN_SERVE_URL", raising=False)
    monkeypatch.delenv("MRCNN_ADMIN_PASSWORD", raising=False)
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception
    shown = "\n".join(texts(at.markdown) + texts(at.warning) + texts(at.info)
                      + [c.value for c in at.code])
    assert "mask_rcnn_coco.h5" in shown
    assert str(tmp_path) not in shown and "nowhere" not in shown
    assert not [b for b in at.button if b.key == "download_weights"]
    assert any("downloading the weights" in i for i in texts(at.info))


# ------------------------------------------------------------------ uploads

def test_uploads_past_the_cap_get_one_sentence_and_the_first_ones_work(app_env, photos,
                                                                       monkeypatch):
    monkeypatch.setenv("MRCNN_MAX_UPLOADS", "2")
    at = open_app()
    at.file_uploader(key="uploads").set_value(small_photos(photos, 3))
    at.run()
    assert not at.exception
    (said,) = [w for w in texts(at.warning) if "per visitor" in w]
    assert "opens 2 photos per visitor" in said and "the other 1 were not opened" in said
    assert at.selectbox(key="picker").options == ["crop0.jpg", "crop1.jpg"]


def test_public_mode_caps_uploads_at_ten_by_default(app_env, photos, monkeypatch):
    monkeypatch.setenv("MRCNN_PUBLIC", "1")
    at = open_app()
    at.file_uploader(key="uploads").set_value(small_photos(photos, 12))
    at.run()
    assert not at.exception
    assert any("opens 10 photos per visitor" in w for w in texts(at.warning))
    assert len(at.selectbox(key="picker").options) == 10


def test_a_rerun_never_decodes_an_upload_again(app_env, photos, monkeypatch):
    import studio.inputs_ui
    calls = []
    real = studio.inputs_ui.decode_fitted

    def counting(data, **kwargs):
        calls.append(len(data))
        return real(data, **kwargs)

    monkeypatch.setattr(studio.inputs_ui, "decode_fitted", counting)
    at = open_app()
    at.file_uploader(key="uploads").set_value(small_photos(photos, 2))
    at.run()
    assert not at.exception and len(calls) == 2
    at.slider(key="min_score").set_value(0.5)
    at.run()
    at.selectbox(key="picker").set_value("crop0.jpg")
    at.run()
    at.button(key="run_all").click()
    at.run()
    assert not at.exception
    assert len(calls) == 2, "every rerun, the picker and Run all reuse the session's decode"


# ------------------------------------------------------------------ the queue

class Visits:
    """AppTest runs in threads, each started once the one before has queued its photo
    (AppTest swaps one process-wide mock Runtime around each run, so runs must not
    start in the same instant)."""

    def __init__(self, gate):
        self.gate, self.threads, self.failures = gate, [], []

    def start(self, tab, submits: int = 1) -> None:
        expected = len(self.gate.submitted) + submits

        def visit():
            try:
                tab.run()
            except Exception as exc:  # noqa: BLE001 - reported by join()
                self.failures.append(exc)
        thread = threading.Thread(target=visit)
        thread.start()
        self.threads.append(thread)
        deadline = time.monotonic() + TIMEOUT
        while len(self.gate.submitted) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(self.gate.submitted) >= expected, "the visit did not queue its photo"

    def join(self) -> None:
        for thread in self.threads:
            thread.join(TIMEOUT)
        assert not self.failures


def test_the_per_address_cap_counts_every_tab_of_an_address(app_env, addresses, gate,
                                                            monkeypatch):
    monkeypatch.setenv("MRCNN_MAX_QUEUED_PER_ADDRESS", "1")
    monkeypatch.setenv("MRCNN_RESULTS_MB", "509")              # fresh services for this test
    tabs = [open_app(size=640, address=a) for a in
            ("203.0.113.7", "203.0.113.7", "203.0.113.7", "198.51.100.20")]
    samples = ["sample-coffee", "sample-chelsea", "sample-astronaut", "sample-camera"]
    for tab, sample in zip(tabs, samples):
        tab.button(key=sample).click()
    visits = Visits(gate)
    visits.start(tabs[0])                           # its photo goes into the network...
    assert gate.entered.wait(TIMEOUT)
    visits.start(tabs[1])                           # ...and the second tab's waits
    (queue,) = gate.queues
    assert queue.waiting(address="203.0.113.7") == 1

    tabs[2].run()                                   # a third tab of the same address
    assert not tabs[2].exception
    (refused,) = texts(tabs[2].warning)
    assert refused.startswith("Your address already has 1 photo waiting")
    visits.start(tabs[3])                           # another address is not refused
    assert queue.waiting(address="198.51.100.20") == 1

    gate.open.set()
    visits.join()
    for tab in (tabs[0], tabs[1], tabs[3]):
        assert not tab.exception and not tab.warning
        assert any(h.value.startswith("Objects (") for h in tab.subheader)


def test_two_addresses_take_turns_one_for_one_however_many_tabs(app_env, photos, addresses,
                                                                gate, monkeypatch):
    monkeypatch.setenv("MRCNN_RESULTS_MB", "501")              # fresh services for this test
    gate.open.set()
    b = open_app(size=640, address="198.51.100.20")
    b.file_uploader(key="uploads").set_value(small_photos(photos, 3))
    b.run()                                          # crop2.jpg (the newest) is shown
    assert not b.exception
    gate.open.clear()
    tabs = [open_app(size=640, address="203.0.113.7") for _ in range(4)]
    for tab, sample in zip(tabs, ["sample-coffee", "sample-chelsea", "sample-astronaut",
                                  "sample-camera"]):
        tab.button(key=sample).click()
    visits = Visits(gate)
    visits.start(tabs[0])                            # in the network, held by the gate
    assert gate.entered.wait(TIMEOUT)
    first = len(gate.submitted)
    for tab in tabs[1:]:                             # three tabs of one address wait...
        visits.start(tab)
    b.button(key="run_all").click()
    visits.start(b, submits=2)                       # ...then one tab of another: 2 photos
    owners = {job.key: job.address for job in gate.submitted[first:]}
    gate.open.set()
    visits.join()
    order = [owners[key] for key in gate.ran if key in owners]
    # The photo in the network when they queued was 203.0.113.7's turn: the other
    # address goes first, then they alternate.
    assert order == ["198.51.100.20", "203.0.113.7", "198.51.100.20", "203.0.113.7",
                     "203.0.113.7"], order
    for tab in tabs + [b]:
        assert not tab.exception and not tab.warning


def test_over_the_total_cap_a_visitor_is_told_the_demo_is_busy(app_env, addresses, gate,
                                                              monkeypatch):
    monkeypatch.setenv("MRCNN_MAX_QUEUE_TOTAL", "1")
    monkeypatch.setenv("MRCNN_RESULTS_MB", "499")              # fresh services for this test
    tabs = [open_app(size=640, address=f"192.0.2.{n}") for n in (1, 2, 3)]
    for tab, sample in zip(tabs, ["sample-coffee", "sample-chelsea", "sample-astronaut"]):
        tab.button(key=sample).click()
    visits = Visits(gate)
    visits.start(tabs[0])                            # running
    assert gate.entered.wait(TIMEOUT)
    visits.start(tabs[1])                            # waiting: the queue is full
    tabs[2].run()
    assert not tabs[2].exception
    (busy,) = texts(tabs[2].warning)
    assert re.match(r"The demo is busy: 1 photo is waiting\. Try again in a minute "
                    r"\(the queue needs about \d+ s to clear\)\.", busy), busy
    gate.open.set()
    visits.join()
    tabs[2].run()                                    # a minute later: it works
    for tab in tabs:
        assert not tab.exception and not tab.warning
        assert any(h.value.startswith("Objects (") for h in tab.subheader)


def test_run_all_releases_every_claim_it_abandons(app_env, photos, gate, monkeypatch):
    import studio.run_all_ui
    from studio.sessions import session_id
    monkeypatch.setenv("MRCNN_RESULTS_MB", "507")              # fresh services for this test
    gate.open.set()
    at = open_app(size=640)
    at.file_uploader(key="uploads").set_value(small_photos(photos, 3))
    at.run()                                        # crop2.jpg (the newest) is shown
    assert not at.exception
    (queue,) = gate.queues
    queue.grace_s = 0.2

    def interrupted(services, job, what):
        """What a rerun does to the page while it waits: wait_in_line lets its job go."""
        services.queue.detach(session_id(), job)
        st.rerun()

    monkeypatch.setattr(studio.run_all_ui, "wait_in_line", interrupted)
    gate.open.clear()
    gate.entered.clear()
    before = len(gate.submitted)
    at.button(key="run_all").click()
    at.run()                                        # Run all starts, then the page reruns
    assert not at.exception
    run_all_jobs = gate.submitted[before:]
    assert len(run_all_jobs) == 2                   # crop0 and crop1 were not stored yet
    assert gate.entered.wait(TIMEOUT)               # the first is in the network already
    time.sleep(1.0)                                 # longer than the queue's grace
    dropped = queue.dropped
    gate.open.set()
    deadline = time.monotonic() + TIMEOUT
    while (queue.waiting() or run_all_jobs[0].future.running()) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run_all_jobs[1].key not in gate.ran, "an abandoned claim kept its job alive"
    assert run_all_jobs[1].future.cancelled() and queue.dropped == dropped + 1


def test_run_all_queue_full_is_one_sentence(app_env, photos, gate, monkeypatch):
    monkeypatch.setenv("MRCNN_MAX_QUEUED", "1")
    monkeypatch.setenv("MRCNN_RESULTS_MB", "505")              # fresh services for this test
    gate.open.set()
    at = open_app(size=640)
    at.file_uploader(key="uploads").set_value(small_photos(photos, 3))
    at.run()
    gate.open.clear()
    at.button(key="run_all").click()
    threading.Timer(3.0, gate.open.set).start()     # the first image waits, then runs
    at.run()
    assert not at.exception
    (said,) = [w for w in texts(at.warning) if "waiting" in w]
    assert said.startswith("You already have 1 photo waiting")
    assert said.endswith("The rest of your images were not run.")
    summary = next(d.value for d in at.dataframe if "Note" in d.value.columns)
    assert "not run: the queue was full" in list(summary["Note"])


# ------------------------------------------------------------------ memory

def test_the_store_counts_cutouts_decoded_uploads_and_keeps_no_zip(app_env, photos,
                                                                  monkeypatch):
    from studio.run_store import RunStore
    stores = []
    real_put = RunStore.put

    def recording_put(self, *args, **kwargs):
        if self not in stores:
            stores.append(self)
        return real_put(self, *args, **kwargs)

    monkeypatch.setattr(RunStore, "put", recording_put)
    monkeypatch.setenv("MRCNN_RESULTS_MB", "503")              # fresh services for this test
    at = open_app(size=640)
    at.file_uploader(key="uploads").set_value(small_photos(photos, 2))
    at.run()
    at.slider(key="min_score").set_value(0.1)       # every object in the gallery
    at.run()
    at.button(key="run_all").click()
    at.run()
    assert not at.exception
    (store,) = stores
    runs = [entry.value for entry in store._entries.values()]
    cutouts = sum(len(png) for run in runs for png in run.cutouts.values())
    decoded = sum(v[0].nbytes for v in at.session_state["_decoded_uploads"].values())
    masks = sum(run.result["masks"].nbytes for run in runs)
    assert cutouts > 0 and decoded == 2 * 200 * 260 * 3
    # Every byte counted as it is now: the runs with the cut-outs made after they were
    # stored, and the session's decoded uploads (nothing is queued any more).
    assert store.total_bytes == sum(run.nbytes for run in runs) + decoded
    assert sum(run.nbytes for run in runs) >= cutouts + masks

    def big_bytes(value):
        if isinstance(value, (bytes, bytearray)):
            return len(value) > 50_000
        if isinstance(value, dict):
            return any(big_bytes(v) for v in value.values())
        return False
    assert not any(big_bytes(at.session_state[k]) for k in at.session_state), \
        "no ZIP (or other file) is kept in the session"
    with zipfile.ZipFile(io.BytesIO(at.session_state["bundle"]["build"]())) as archive:
        assert any(n.endswith("annotated.png") for n in archive.namelist())


def test_a_teaching_record_is_counted_with_its_feature_maps(small_model, photos):
    from mrcnn.intermediates import compute_intermediates
    from studio.sizing import payload_bytes, result_bytes
    record = compute_intermediates(small_model, photos["astronaut"])
    pyramid = sum(array.nbytes for array in record.pyramid.values())
    assert pyramid > 0 and result_bytes(record) >= pyramid + record.image.nbytes
    assert payload_bytes({"record": record, "rpn_nms_threshold": 0.7}) == record.nbytes
    assert payload_bytes({"image": photos["coffee"], "overrides": {}}) == \
        photos["coffee"].nbytes


def test_error_sentence_has_an_id_and_the_log_has_the_same(caplog):
    from streamlit.testing.v1 import AppTest

    def page():
        from studio.public import guarded

        def broken():
            raise RuntimeError("/srv/secret/path exploded")
        guarded(broken)

    at = AppTest.from_function(page)
    with caplog.at_level("ERROR", logger="mrcnn.studio"):
        at.run()
    assert not at.exception, "the error is handled, not shown as an exception"
    (said,) = texts(at.error)
    match = re.search(r"error id `([0-9a-f]{8})`", said)
    assert match and "/srv" not in said and "exploded" not in said
    assert any(match.group(1) in record.getMessage() and record.exc_info
               for record in caplog.records)


def test_the_estimate_moves_in_steps_of_five_seconds_past_ten():
    from studio.fair_queue import Standing
    from studio.queue_ui import standing_text
    texts_for = [standing_text(Standing(3, False, eta, False), "your photo")
                 for eta in (4.4, 9.6, 31.0, 33.4, 36.0)]
    assert [re.search(r"about (\d+) s", t).group(1) for t in texts_for] == \
        ["4", "10", "30", "35", "35"]


def test_public_mode_hides_uncaught_error_details_and_private_mode_leaves_them(monkeypatch):
    from streamlit.testing.v1 import AppTest

    def page():
        from studio.public import guarded
        guarded(lambda: None)

    before = st.get_option("client.showErrorDetails")
    try:
        monkeypatch.delenv("MRCNN_PUBLIC", raising=False)
        AppTest.from_function(page).run()
        assert st.get_option("client.showErrorDetails") == before
        monkeypatch.setenv("MRCNN_PUBLIC", "1")
        AppTest.from_function(page).run()
        assert st.get_option("client.showErrorDetails") == "none"
    finally:
        st.set_option("client.showErrorDetails", before)
