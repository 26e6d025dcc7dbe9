"""The "How it works" page: every section renders with the COCO model, its numbers are the
engine's, its controls work; and a real browser shows it without an error."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "pages" / "1_How_it_works.py"
HEADINGS = ["1. Input", "2. Backbone and FPN", "3. Anchors", "4. Region Proposal Network",
            "5. RoI Align", "6. Classifier and box heads", "7. Mask head",
            "8. Follow one object through the network", "9. What if…"]
TIMEOUT = 600


@pytest.fixture
def page_env(coco_weights, coco_model, monkeypatch):
    """MRCNN_WEIGHTS names the generated COCO file; the page's loader gets the session's
    COCO model for it (built from that same file) instead of building a second one.
    The browser test below runs the page's real loading in its own server process."""
    import mrcnn.model
    from mrcnn import CocoConfig

    def load_model(weights_path=None, config=None, exclude=()):
        assert Path(weights_path) == coco_weights
        assert type(config) is CocoConfig
        return coco_model

    monkeypatch.setenv("MRCNN_WEIGHTS", str(coco_weights))
    monkeypatch.setattr(mrcnn.model, "load_model", load_model)


def metrics(at: AppTest) -> dict:
    return {m.label: m.value for m in at.metric}


def assert_healthy(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert [h.value for h in at.header] == HEADINGS


def number(text: str) -> int:
    return int(text.replace(",", ""))


def test_every_section_renders_the_engines_numbers_and_controls_work(page_env, coco_model, photos):
    from mrcnn.explain import iou

    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    at.run()
    assert_healthy(at)
    shown = metrics(at)
    assert shown["Network input"] == "1024×1024"
    assert shown["Anchors in total"] == "261,888"
    assert shown["Anchors scored"] == "261,888"

    # The engine on the same image (the page's default sample) with the same weights file.
    image = photos["astronaut"]
    engine = coco_model.detect([image])[0]
    proposals = coco_model.forward([image]).stages["proposals"][0].numpy()
    assert number(shown["Proposals after NMS"]) == int(np.any(proposals != 0, axis=1).sum())
    assert number(shown["Detections"]) == len(engine["class_ids"])
    assert number(shown["Detections after per-class NMS"]) == len(engine["class_ids"])

    # Controls: each changes what it should and nothing breaks.
    candidates_before = number(shown["Candidates at this score"])
    at.slider(key="hiw_heads_threshold").set_value(0.95).run()
    assert_healthy(at)
    assert number(metrics(at)["Candidates at this score"]) <= candidates_before
    at.slider(key="hiw_iou_bx").set_value(60)
    at.slider(key="hiw_iou_by").set_value(60).run()
    assert metrics(at)["IoU(A, B)"] == "1.000"
    at.slider(key="hiw_iou_bx").set_value(140).run()
    expected = iou([60, 60, 240, 220], [[60, 140, 240, 300]])[0]
    assert metrics(at)["IoU(A, B)"] == f"{expected:.3f}"
    at.slider(key="hiw_rpn_k").set_value(100)
    at.radio(key="hiw_anchor_level").set_value(6)
    at.toggle(key="hiw_all_levels").set_value(True)
    at.toggle(key="hiw_overlay").set_value(False)
    at.selectbox(key="hiw_roi_pick").set_value(1)
    at.selectbox(key="hiw_heads_roi").set_value(3)
    at.selectbox(key="hiw_mask_pick").set_value(1)
    at.slider(key="hiw_mask_threshold").set_value(0.8).run()
    assert_healthy(at)
    assert metrics(at)["Anchors in total"] == "261,888"


def test_follow_and_what_if_controls_show_the_engines_answers(page_env, coco_model, photos):
    from mrcnn.intermediates import compute_intermediates
    from mrcnn.what_if import masks_what_if, match_objects, nms_what_if, rerun_heads

    record = compute_intermediates(coco_model, photos["astronaut"])   # the page's default
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    at.run()
    assert_healthy(at)
    follow = at.selectbox(key="hiw_follow_pick")
    assert len(follow.options) == len(record.class_ids) > 1
    follow.set_value(1).run()
    assert_healthy(at)
    text = " ".join(m.value for m in at.markdown)
    assert f"proposal #{int(record.roi_indices[1]) + 1}" in text
    assert f"**Anchor** #{int(record.proposal_anchors[record.roi_indices[1]]):,}" in text

    at.slider(key="hiw_whatif_nms").set_value(0.1)
    at.radio(key="hiw_whatif_nms_mode").set_value("all classes together")
    at.slider(key="hiw_whatif_mask").set_value(0.8).run()
    assert_healthy(at)
    shown = metrics(at)
    assert number(shown["Detections with this NMS"]) == len(
        nms_what_if(record, 0.1, class_agnostic=True).kept)
    assert number(shown["Pixels lost"]) == int(masks_what_if(record, 0.8).lost_pixels.sum())
    assert number(shown["Pixels gained"]) == 0

    at.slider(key="hiw_whatif_rpn_nms").set_value(0.5)
    at.select_slider(key="hiw_whatif_proposals").set_value(300)
    at.button(key="hiw_whatif_run").click().run()
    assert_healthy(at)
    expected = rerun_heads(coco_model, record, 0.5, 300)
    _, gained, lost = match_objects(record.rois, record.class_ids, expected.rois,
                                    expected.class_ids)
    shown = metrics(at)
    assert number(shown["Proposals after the rerun"]) == expected.proposal_count
    assert number(shown["Detections after the rerun"]) == len(expected.class_ids)
    assert number(shown["Objects gained"]) == len(gained)
    assert number(shown["Objects lost"]) == len(lost)


def test_follows_the_object_selected_on_the_main_page(page_env, coco_model, photos):
    image = photos["astronaut"]
    result = coco_model.detect([image])[0]
    pick = len(result["class_ids"]) // 2
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    at.session_state["selected_image"] = image
    at.session_state["selected_image_name"] = "astronaut.png"
    at.session_state["selected_image_digest"] = "digest-of-astronaut"
    at.session_state["selected_object"] = {
        "digest": "digest-of-astronaut", "class_id": int(result["class_ids"][pick]),
        "box": [int(v) for v in result["rois"][pick]], "score": float(result["scores"][pick])}
    at.run()
    assert_healthy(at)
    assert at.selectbox(key="hiw_follow_pick").value == pick
    assert not at.warning

    # An object the lesson's run does not have: said plainly, another can be picked.
    missing = next(c for c in range(1, 81) if c not in result["class_ids"])
    at.session_state["selected_object"] = {
        "digest": "digest-of-astronaut", "class_id": missing, "box": [10, 10, 60, 60],
        "score": 0.2}
    at.run()
    assert_healthy(at)
    assert any("is not among this run's detections" in w.value
               and "below this lesson's confidence threshold" in w.value for w in at.warning)
    at.selectbox(key="hiw_follow_pick").set_value(0).run()
    assert_healthy(at)

    # An object of another picture.
    at.session_state["selected_object"] = {**at.session_state["selected_object"],
                                           "digest": "another"}
    at.run()
    assert any("is in another picture" in i.value for i in at.info)


def test_uses_the_image_chosen_on_the_main_page(page_env, photos):
    """The main page's choice (session state) is offered first and inspected."""
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    at.session_state["selected_image"] = photos["chelsea"][:150, :200]
    at.session_state["selected_image_name"] = "cat.jpg"
    at.run()
    assert_healthy(at)
    assert at.selectbox(key="hiw_image").value == "cat.jpg (chosen on the main page)"
    shown = metrics(at)
    assert shown["Original size"] == "200×150"
    assert shown["Window (y1, x1, y2, x2)"] == "128, 0, 896, 1024"
    assert shown["Anchors in total"] == "261,888"


def test_missing_weights_file_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("MRCNN_WEIGHTS", str(tmp_path / "nowhere.h5"))
    at = AppTest.from_file(str(PAGE), default_timeout=60)
    at.run()
    assert not at.exception
    assert at.error and "No weights file" in at.error[0].value


@pytest.mark.browser
@pytest.mark.slow                 # about 30 s alone on two cores
def test_browser_shows_every_section_without_an_error(coco_weights, tmp_path):
    from playwright.sync_api import sync_playwright

    from mrcnn.testing.browser import grow_to_content, launch_chromium, streamlit_app

    with streamlit_app({"MRCNN_WEIGHTS": str(coco_weights), "MRCNN_SERVE_URL": None},
                       tmp_path / "streamlit.log") as (url, _):
        with sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(f"{url}/How_it_works")
                for heading in HEADINGS:
                    page.get_by_role("heading", name=heading).wait_for(timeout=TIMEOUT * 1000)
                page.get_by_text("Anchors in total").wait_for()
                page.wait_for_function(
                    "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                    timeout=60_000)
                assert page.locator('[data-testid="stException"]').count() == 0
                assert any("Anchors in total" in text and "261,888" in text
                           for text in page.locator('[data-testid="stMetric"]').all_inner_texts())
                grow_to_content(page, 1400, rounds=6, pause_ms=1000)
                page.screenshot(path=str(tmp_path / "how_it_works.png"), full_page=True)
            finally:
                browser.close()


def test_the_page_runs_through_the_main_pages_backend_and_queue(page_env, photos, monkeypatch):
    """Both pages submit to one FairQueue per process (one line for every network run),
    which runs the same backend's model."""
    import io

    from PIL import Image

    from studio.fair_queue import FairQueue
    submitted = []
    real_submit = FairQueue.submit

    def recording_submit(self, session, key, kind, payload, **options):
        submitted.append((id(self), kind))
        return real_submit(self, session, key, kind, payload, **options)

    monkeypatch.setattr(FairQueue, "submit", recording_submit)
    main = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    main.run()
    main.selectbox(key="image_max_dim").set_value(512)
    upload = io.BytesIO()
    Image.fromarray(photos["coffee"][:200, :300]).save(upload, format="PNG")
    main.file_uploader(key="uploads").set_value(("cup.png", upload.getvalue(), "image/png"))
    main.run()
    assert not main.exception, [e.value for e in main.exception]
    page = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    page.session_state["selected_image"] = main.session_state["selected_image"]
    page.session_state["selected_image_name"] = "cup.png"
    page.run()
    assert_healthy(page)
    kinds = [kind for _, kind in submitted]
    assert kinds == ["detect", "intermediates"], kinds
    assert len({queue for queue, _ in submitted}) == 1, "both pages share one queue"


def test_with_a_service_and_no_local_weights_the_page_says_what_it_needs(tmp_path, monkeypatch):
    monkeypatch.setenv("MRCNN_SERVE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("MRCNN_WEIGHTS", str(tmp_path / "nowhere.h5"))
    at = AppTest.from_file(str(PAGE), default_timeout=60)
    at.run()
    assert not at.exception
    text = " ".join(w.value for w in at.warning)
    assert "intermediate stages" in text and "MRCNN_WEIGHTS" in text and "service" in text
