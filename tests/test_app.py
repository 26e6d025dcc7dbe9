"""The Streamlit page, driven by ``streamlit.testing.v1.AppTest``.

The app loads the full COCO model (ResNet-101) with a generated weights file in
the published layout (``coco_weights``). The model is built once per test
process (``st.cache_resource``), and the tests run the network at 512 px (the
smallest IMAGE_MAX_DIM the page offers) to keep each detect to a few seconds
on a CPU. Pixels are checked in the rendering modules' own tests; here we
check what the page shows and keeps.
"""
from __future__ import annotations

import functools
import io
import json
import re
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from mrcnn.classes import COCO_CLASS_NAMES
from mrcnn.results import filter_detections, mask_areas, num_detections

APP = Path(__file__).resolve().parent.parent / "app.py"
TIMEOUT = 300
FAST_SIZE = 512          # IMAGE_MAX_DIM the tests pick in the Advanced section
GALLERY_LIMIT = 40       # app.GALLERY_LIMIT


def jpeg(array: np.ndarray, quality: int = 92, orientation: int | None = None) -> bytes:
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(array).save(buffer, format="JPEG", quality=quality, exif=exif.tobytes())
    return buffer.getvalue()


@pytest.fixture
def app_env(coco_weights, monkeypatch):
    monkeypatch.setenv("MRCNN_WEIGHTS", str(coco_weights))
    monkeypatch.delenv("MRCNN_SERVE_URL", raising=False)


def open_app(size: int = FAST_SIZE) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert_healthy(at)
    at.selectbox(key="image_max_dim").set_value(size)
    return at


def assert_healthy(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def object_count(at: AppTest) -> int:
    """N from the "Objects (N)" heading (0 when nothing is shown)."""
    for header in at.subheader:
        if header.value.startswith("Objects ("):
            return int(header.value[len("Objects ("):-1])
    return 0


def gallery_keys(at: AppTest) -> list[str]:
    return [b.key for b in at.download_button if b.key and b.key.startswith("cutout-")]


def error_texts(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def assert_table_is(table, expected: dict) -> None:
    """The objects table shows ``expected`` (a filtered result), row for row."""
    assert list(table["Class"]) == [COCO_CLASS_NAMES[c] for c in expected["class_ids"]]
    np.testing.assert_allclose(table["Score"], expected["scores"], rtol=1e-6)
    assert list(table["Box (x1, y1, x2, y2)"]) == [
        f"{x1}, {y1}, {x2}, {y2}" for y1, x1, y2, x2 in expected["rois"]]
    np.testing.assert_array_equal(table["Mask area (px)"], mask_areas(expected))


# ------------------------------------------------------------------ the flow

def test_upload_shows_table_gallery_downloads_and_slider_only_filters(
        app_env, photos, monkeypatch):
    from mrcnn.serve.backends import InProcessBackend
    calls, runs = [], []
    real_detect = InProcessBackend.detect

    def counting_detect(self, images, **settings):
        calls.append(settings)
        runs.extend(real_detect(self, images, **settings))
        return runs[-len(images):]

    monkeypatch.setattr(InProcessBackend, "detect", counting_detect)

    mirrored = np.ascontiguousarray(photos["chelsea"][:, ::-1])   # no other test uses it
    at = open_app()
    assert not at.dataframe and not gallery_keys(at)
    at.file_uploader(key="uploads").set_value(("mirrored.jpg", jpeg(mirrored), "image/jpeg"))
    at.run()
    assert_healthy(at)
    assert not error_texts(at)
    assert at.session_state["selected_image_name"] == "mirrored.jpg"
    assert at.session_state["selected_image"].shape == mirrored.shape
    assert at.session_state["selected_image"].dtype == np.uint8

    # One network run, at the low internal threshold and the chosen size.
    assert len(calls) == 1
    assert calls[0]["DETECTION_MIN_CONFIDENCE"] == pytest.approx(0.1)
    assert calls[0]["IMAGE_MAX_DIM"] == FAST_SIZE

    at_default = object_count(at)
    assert at_default > 0
    table = at.dataframe[0].value
    assert len(table) == at_default
    # The page shows exactly filter_detections(run, slider value).
    assert_table_is(table, filter_detections(runs[0].result, 0.7))
    assert list(table.columns) == ["#", "Colour", "Class", "Score", "Box (x1, y1, x2, y2)",
                                   "Mask area (px)", "Mask area (%)"]
    assert (table["Score"] >= 0.7 - 1e-6).all()
    assert table["Score"].is_monotonic_decreasing
    assert (table["Mask area (%)"] <= 100).all() and (table["Mask area (px)"] >= 0).all()
    assert len(gallery_keys(at)) == min(at_default, GALLERY_LIMIT)
    captions = [c for img in at.image for c in img.captions]
    cut_captions = [c for c in captions if re.fullmatch(r"#\d+ [a-z][a-z ]* \d\.\d\d", c)]
    assert len(cut_captions) == len(gallery_keys(at)), \
        "each cut-out is captioned number + class + score"
    assert cut_captions[0] == f"#1 {table['Class'].iloc[0]} {table['Score'].iloc[0]:.2f}"
    keys = {b.key for b in at.download_button}
    assert {"download_annotated", "download_zip", "download_json"} <= keys
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Network input (px)"] == f"{FAST_SIZE} × {FAST_SIZE}"
    assert {"Preparation", "Network", "Masks", "Total"} <= set(metrics)
    assert any("Device:" in c.value and "in-process" in c.value for c in at.caption)

    # Slider up: fewer objects; down: more. Never a new network run.
    at.slider(key="min_score").set_value(0.97)
    at.run()
    assert_healthy(at)
    high = object_count(at)
    assert high < at_default
    assert len(gallery_keys(at)) == min(high, GALLERY_LIMIT)
    if high:
        assert (at.dataframe[0].value["Score"] >= 0.97 - 1e-6).all()

    at.slider(key="min_score").set_value(0.3)
    at.run()
    low = object_count(at)
    assert low > high and low >= at_default
    assert_table_is(at.dataframe[0].value, filter_detections(runs[0].result, 0.3))

    # Class filter: only the chosen class remains.
    first_class = table["Class"].iloc[0]
    at.multiselect(key="classes").set_value([first_class])
    at.run()
    assert_healthy(at)
    assert set(at.dataframe[0].value["Class"]) == {first_class}
    assert_table_is(at.dataframe[0].value, filter_detections(
        runs[0].result, 0.3, [COCO_CLASS_NAMES.index(first_class)]))

    # Display toggles and opacity rerender without the network.
    at.toggle(key="show_boxes").set_value(False)
    at.slider(key="mask_alpha").set_value(0.8)
    at.run()
    assert_healthy(at)
    assert len(calls) == 1


def test_advanced_setting_reruns_network_once(app_env, photos, monkeypatch):
    from mrcnn.serve.backends import InProcessBackend
    calls = []
    real_detect = InProcessBackend.detect
    monkeypatch.setattr(InProcessBackend, "detect",
                        lambda self, images, **s: calls.append(s) or real_detect(self, images, **s))
    at = open_app()
    at.file_uploader(key="uploads").set_value(
        ("chelsea.jpg", jpeg(photos["chelsea"]), "image/jpeg"))
    at.run()
    before = len(calls)
    at.slider(key="max_instances").set_value(5)
    at.run()
    assert_healthy(at)
    assert len(calls) == before + 1
    assert calls[-1]["DETECTION_MAX_INSTANCES"] == 5
    assert object_count(at) <= 5


def test_device_line_names_the_precision_and_advanced_runs_float32(app_env, photos,
                                                                   monkeypatch):
    from mrcnn.serve.backends import InProcessBackend
    monkeypatch.setenv("MRCNN_PRECISION", "bf16")
    calls = []
    real_detect = InProcessBackend.detect
    monkeypatch.setattr(InProcessBackend, "detect",
                        lambda self, images, **s: calls.append(s) or real_detect(self, images, **s))

    def device_line() -> str:
        (line,) = [c.value for c in at.caption if c.value.startswith("Device:")]
        return line

    # a picture no other test runs: equal work is shared through the process's store, so
    # a float32 run another test made of the same photo would be reused, not rerun
    mirrored = np.ascontiguousarray(photos["chelsea"][::-1])
    at = open_app()
    at.file_uploader(key="uploads").set_value(("mirrored.jpg", jpeg(mirrored), "image/jpeg"))
    at.run()
    assert_healthy(at)
    assert calls[-1]["precision"] == "bf16"
    assert "· bfloat16**" in device_line()
    before = len(calls)
    at.toggle(key="full_precision").set_value(True)
    at.run()
    assert_healthy(at)
    assert len(calls) == before + 1 and calls[-1]["precision"] == "fp32"
    assert "· float32**" in device_line() and "bfloat16" not in device_line()


def test_bad_uploads_get_specific_messages_and_app_keeps_working(app_env, photos):
    good = jpeg(photos["chelsea"])
    huge = io.BytesIO()
    Image.new("1", (10_000, 5_000)).save(huge, format="PNG")    # 50 MP, a few kB
    bad = [
        ("broken.jpg", good[: len(good) // 2], "image/jpeg"),
        ("report.png", b"%PDF-1.4\n% not an image\n", "image/png"),
        ("empty.jpg", b"", "image/jpeg"),
        ("huge.png", huge.getvalue(), "image/png"),
    ]
    at = open_app()
    at.file_uploader(key="uploads").set_value(bad)
    at.run()
    assert_healthy(at)
    errors = error_texts(at)
    assert len(errors) == 4
    by_name = {name: next(e for e in errors if name in e)
               for name in ("broken.jpg", "report.png", "empty.jpg", "huge.png")}
    assert "damaged or incomplete" in by_name["broken.jpg"]
    assert "not an image" in by_name["report.png"]
    assert "empty" in by_name["empty.jpg"]
    assert "pixels" in by_name["huge.png"] and "limit" in by_name["huge.png"]
    assert object_count(at) == 0
    assert "selected_image" not in at.session_state

    # A good upload next to the bad ones works; alone, no error is left. This one
    # is stored sideways with an EXIF orientation: the page shows it upright.
    sideways = jpeg(photos["chelsea"], orientation=6)
    at.file_uploader(key="uploads").set_value(bad + [("sideways.jpg", sideways, "image/jpeg")])
    at.run()
    assert_healthy(at)
    assert object_count(at) > 0 and len(error_texts(at)) == 4
    height, width = photos["chelsea"].shape[:2]
    assert at.session_state["selected_image"].shape == (width, height, 3)
    at.file_uploader(key="uploads").set_value(("sideways.jpg", sideways, "image/jpeg"))
    at.run()
    assert not error_texts(at) and object_count(at) > 0


def test_file_over_the_upload_limit_is_refused_with_a_message(app_env, photos):
    from streamlit import config
    before = config.get_option("server.maxUploadSize")
    config.set_option("server.maxUploadSize", 1)
    try:
        at = open_app()
        big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (800, 800, 3), np.uint8))
        buffer = io.BytesIO()
        big.save(buffer, format="PNG")
        assert len(buffer.getvalue()) > 1e6
        at.file_uploader(key="uploads").set_value(("big.png", buffer.getvalue(), "image/png"))
        at.run()
    finally:
        config.set_option("server.maxUploadSize", before)
    assert_healthy(at)
    assert any("big.png" in e and "1 MB limit" in e for e in error_texts(at))


def test_camera_photo(app_env, photos):
    at = open_app()
    at.toggle(key="use_camera").set_value(True)
    at.run()
    assert_healthy(at)
    at.camera_input(key="camera").set_value(("shot.jpg", jpeg(photos["chelsea"]), "image/jpeg"))
    at.run()
    assert_healthy(at)
    assert at.session_state["selected_image_name"] == "Camera photo"
    assert object_count(at) > 0


def test_weights_missing_explains_and_offers_download(tmp_path, monkeypatch):
    import mrcnn.weights as weights
    missing = tmp_path / "nowhere" / "mask_rcnn_coco.h5"
    monkeypatch.setenv("MRCNN_WEIGHTS", str(missing))
    monkeypatch.delenv("MRCNN_SERVE_URL", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert_healthy(at)
    warning = at.warning[0].value
    assert "weights" in warning and str(missing) in warning
    assert at.button(key="download_weights").label.startswith("Download the weights")
    page_text = " ".join(m.value for m in at.markdown)
    assert weights.WEIGHTS_URL in page_text and "MRCNN_WEIGHTS" in page_text
    assert not at.file_uploader, "no uploader without a model"

    # Offline: the downloader's own sentence, shown as an error; the page lives on.
    # (A closed local port stands in for GitHub so no test ever downloads 258 MB.)
    from mrcnn.retry import RetryPolicy
    monkeypatch.setattr(weights, "download_weights", functools.partial(
        weights.download_weights, url="http://127.0.0.1:9/mask_rcnn_coco.h5", timeout=2,
        retry=RetryPolicy(attempts=4, backoff_s=0.0, deadline_s=None)))
    at.button(key="download_weights").click()
    at.run()
    assert_healthy(at)
    message = error_texts(at)[0]
    assert message.startswith("Could not reach 127.0.0.1")
    assert str(missing) in message and "MRCNN_WEIGHTS" in message
    assert not missing.exists()


def test_samples_several_images_picker_and_run_all(app_env, photos):
    at = open_app()
    at.button(key="sample-coffee").click()
    at.run()
    assert_healthy(at)
    assert at.session_state["selected_image_name"] == "Sample: Coffee"
    assert at.session_state["selected_image"].shape == photos["coffee"].shape
    assert object_count(at) > 0

    at.file_uploader(key="uploads").set_value(
        ("chelsea.jpg", jpeg(photos["chelsea"]), "image/jpeg"))
    at.run()
    assert_healthy(at)
    assert at.session_state["selected_image_name"] == "chelsea.jpg", "newest upload is shown"
    picker = at.selectbox(key="picker")
    assert picker.options == ["chelsea.jpg", "Sample: Coffee"]
    picker.set_value("Sample: Coffee")
    at.run()
    assert at.session_state["selected_image_name"] == "Sample: Coffee"

    at.button(key="run_all").click()
    at.run()
    assert_healthy(at)
    assert "download_all" in {b.key for b in at.download_button}
    bundle = at.session_state["bundle"]
    assert "zip" not in bundle, "the ZIP is built when clicked, not kept in the session"
    with zipfile.ZipFile(io.BytesIO(bundle["build"]())) as archive:
        names = set(archive.namelist())
        results = json.loads(archive.read("coco_results.json"))
        images = json.loads(archive.read("images.json"))
    assert {"01_chelsea/annotated.png", "02_sample_coffee/annotated.png",
            "01_chelsea/detections.json"} <= names
    assert any(n.startswith("02_sample_coffee/cutouts/") for n in names)
    assert [i["file_name"] for i in images] == ["chelsea.jpg", "Sample: Coffee"]
    assert {r["image_id"] for r in results} <= {1, 2}
    assert all(r["score"] >= 0.7 - 1e-6 and 1 <= r["category_id"] <= 90 for r in results)
    summary = next(d.value for d in at.dataframe if "Note" in d.value.columns)
    assert list(summary["Objects"]) == [sum(r["image_id"] == k for r in results) for k in (1, 2)]


def test_concurrent_sessions_each_see_their_own_image(app_env, photos, monkeypatch):
    """Three visitors at once: one shared model, calls queued, no cross-talk."""
    from mrcnn.model import MaskRCNN
    from studio.fair_queue import FairQueue
    asked, ran = [], []
    everyone_asked = threading.Event()
    queue_submit, model_detect = FairQueue.submit, MaskRCNN.detect_compact

    def timed_submit(self, *args, **kwargs):
        asked.append(time.perf_counter())
        if len(asked) == 3:
            everyone_asked.set()
        return queue_submit(self, *args, **kwargs)

    def timed_model_detect(self, images, **settings):
        # The first image waits in the network until all three visitors have asked, so
        # that they queue behind it however slow their page runs are (not a race).
        everyone_asked.wait(timeout=120)
        start = time.perf_counter()
        try:
            return model_detect(self, images, **settings)
        finally:
            ran.append((start, time.perf_counter()))

    monkeypatch.setattr(FairQueue, "submit", timed_submit)
    monkeypatch.setattr(MaskRCNN, "detect_compact", timed_model_detect)
    cases = {"chelsea.jpg": photos["chelsea"], "coffee.jpg": photos["coffee"],
             "astronaut.jpg": photos["astronaut"]}
    apps = {name: open_app(size=640) for name in cases}     # 640: not cached by other tests
    for name, app in apps.items():
        app.file_uploader(key="uploads").set_value((name, jpeg(cases[name]), "image/jpeg"))
    failures = []

    def visit(app):
        try:
            app.run()
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    # AppTest swaps one process-wide mock Runtime (which holds the uploaded files) in and
    # out around each run, so runs that start in the same instant can read each other's
    # (missing) uploads. Each visitor therefore starts once the one before has read its
    # photo and queued it; all three still wait in the queue together.
    threads = [threading.Thread(target=visit, args=(app,)) for app in apps.values()]
    for number, thread in enumerate(threads, start=1):
        thread.start()
        deadline = time.monotonic() + 120
        while len(asked) < number and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
    for thread in threads:
        thread.join()
    assert not failures
    # Queued, not failing: visitors asked while another image was in the network,
    # and the network ran one image at a time.
    assert len(asked) == len(ran) == 3, {   # what each page showed, should this ever fail
        name: ([e.value for e in app.exception], error_texts(app),
               [h.value for h in app.subheader][:2], [i.value for i in app.info])
        for name, app in apps.items()}
    ran.sort()
    assert sum(t < ran[0][1] for t in asked) >= 2
    assert all(earlier[1] <= later[0] for earlier, later in zip(ran, ran[1:]))
    tables = {}
    for name, app in apps.items():
        assert_healthy(app)
        assert not error_texts(app)
        assert app.session_state["selected_image_name"] == name
        own = app.session_state["selected_image"]
        assert own.shape == cases[name].shape
        height, width = own.shape[:2]
        assert any(f"Image: {width} × {height} px" in c.value for c in app.caption)
        table = app.dataframe[0].value
        boxes = np.array([[int(v) for v in b.split(", ")] for b in table["Box (x1, y1, x2, y2)"]])
        assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
        assert (table["Mask area (px)"] <= height * width).all()
        tables[name] = table
    assert not tables["chelsea.jpg"].equals(tables["coffee.jpg"])
    assert not tables["coffee.jpg"].equals(tables["astronaut.jpg"])


# ------------------------------------------------- the slider is exact

def test_filtering_a_low_threshold_run_equals_running_at_the_threshold(coco_model, photos):
    """filter_detections(detect(min 0.1), t) == detect(min t): the slider shows what
    the network would have found at t, so it never needs to run again."""
    image = photos["chelsea"]
    low = coco_model.detect([image], DETECTION_MIN_CONFIDENCE=0.1, IMAGE_MAX_DIM=FAST_SIZE)[0]
    total = num_detections(low)
    strict_subsets = 0
    for threshold in (0.7, 0.9, 0.97, 0.99):     # with these weights: many, some, few, none
        direct = coco_model.detect([image], DETECTION_MIN_CONFIDENCE=threshold,
                                   IMAGE_MAX_DIM=FAST_SIZE)[0]
        filtered = filter_detections(low, threshold)
        for key in ("rois", "class_ids", "scores", "masks"):
            assert filtered[key].dtype == direct[key].dtype, key
            np.testing.assert_array_equal(filtered[key], direct[key],
                                          err_msg=f"{key} at {threshold}")
        strict_subsets += 0 < num_detections(direct) < total
    assert strict_subsets >= 1, "at least one threshold must drop some detections"


# ------------------------------------------------------------ the inspector

def card_title(at: AppTest) -> str | None:
    return next((h.value for h in at.subheader if h.value.startswith("Object #")), None)


def test_selecting_a_table_row_or_a_cutout_opens_that_objects_card(app_env, photos):
    at = open_app()
    at.file_uploader(key="uploads").set_value(
        ("chelsea.jpg", jpeg(photos["chelsea"]), "image/jpeg"))
    at.run()
    assert_healthy(at)
    assert card_title(at) is None                       # nothing inspected yet
    table = at.dataframe[0].value
    assert len(table) >= 3

    at.session_state["objects_table"] = {"selection": {"rows": [2], "columns": []}}
    at.run()
    assert_healthy(at)
    row = table.iloc[2]
    assert card_title(at) == f"Object #3: {row['Class']} {row['Score']:.3f}"
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Mask area"] == f"{int(row['Mask area (px)']):,} px"
    box = ", ".join(row["Box (x1, y1, x2, y2)"].split(", "))
    assert any(f"**Box** (x1, y1, x2, y2): {box}" in m.value for m in at.markdown)
    assert {"card_cutout", "card_mask", "card_json"} <= {b.key for b in at.download_button}
    followed = at.session_state["selected_object"]
    assert followed["class_id"] == COCO_CLASS_NAMES.index(row["Class"])
    assert followed["digest"] == at.session_state["selected_image_digest"]
    assert [followed["box"][i] for i in (1, 0, 3, 2)] == [int(v) for v in box.split(", ")]
    assert any("Next most likely classes" in m.value for m in at.markdown), \
        "the card names the classes the object was almost given"

    # The first cut-out's "Inspect" button: the card follows, the row stays filtered right.
    inspect = [b for b in at.button if b.key and b.key.startswith("inspect-")]
    inspect[0].click()
    at.run()
    assert_healthy(at)
    first = at.dataframe[0].value.iloc[0]
    assert card_title(at) == f"Object #1: {first['Class']} {first['Score']:.3f}"

    # A filter that hides the inspected object hides its card and says so.
    at.slider(key="min_score").set_value(1.0)
    at.run()
    assert card_title(at) is None


# ------------------------------------------------------- limits for a public host

def test_public_host_limits_each_answer_with_one_sentence(app_env, photos, monkeypatch):
    """MRCNN_MAX_PIXELS refuses a larger upload, MRCNN_MAX_RUN_ALL caps Run all (the
    rest of the page goes on), set here in the environment as a host would."""
    monkeypatch.setenv("MRCNN_MAX_PIXELS", "100000")
    monkeypatch.setenv("MRCNN_MAX_RUN_ALL", "1")
    at = open_app()
    small = np.ascontiguousarray(photos["coffee"][:200, :300])       # 60,000 pixels
    at.file_uploader(key="uploads").set_value([
        ("cat.jpg", jpeg(photos["chelsea"]), "image/jpeg"),            # 135,300 pixels
        ("cup.jpg", jpeg(small), "image/jpeg")])
    at.run()
    assert_healthy(at)
    (refused,) = error_texts(at)
    assert refused.startswith("**cat.jpg**") and "100,000 pixels" in refused
    assert object_count(at) > 0                                        # cup.jpg is shown

    at.button(key="sample-chelsea").click()                            # a second picture
    at.run()
    assert at.button(key="run_all").label == "Run all 1 images"
    at.button(key="run_all").click()
    at.run()
    assert_healthy(at)
    assert any("at most 1 images per Run all" in w.value for w in at.warning)
    with zipfile.ZipFile(io.BytesIO(at.session_state["bundle"]["build"]())) as archive:
        listing = json.loads(archive.read("images.json"))
    assert [entry["file_name"] for entry in listing] == ["cup.jpg"]
