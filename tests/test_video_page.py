"""The Video page, driven by ``streamlit.testing.v1.AppTest``, on the small network with
generated weights (``small_model``): its limits, a bad upload, Cancel, and the confidence
slider re-tracking without running the network again."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from studio.session_keys import KEY_VIDEO_JOB

PAGE = Path(__file__).resolve().parent.parent / "pages" / "2_Video.py"
TIMEOUT = 300


@pytest.fixture
def page_env(small_model, monkeypatch):
    monkeypatch.setenv("MRCNN_WEIGHTS", str(small_model.weights_path))
    monkeypatch.setenv("MRCNN_CONFIG", "mrcnn.testing.configs:SmallConfig")
    for name in ("MRCNN_SERVE_URL", "MRCNN_PUBLIC", "MRCNN_MAX_VIDEO_SECONDS",
                 "MRCNN_MAX_VIDEO_FRAMES"):
        monkeypatch.delenv(name, raising=False)


def open_page() -> AppTest:
    at = AppTest.from_file(str(PAGE), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def pick_sample(at: AppTest, fps: float = 2.0, span=(0.0, 3.0)) -> AppTest:
    at.radio(key="video_source").set_value("Sample clip").run()
    at.number_input(key="video_fps").set_value(fps).run()
    at.slider(key="video_span").set_value(span).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def wait_until_done(at: AppTest, seconds: float = 240) -> AppTest:
    job = at.session_state[KEY_VIDEO_JOB]
    deadline = time.monotonic() + seconds
    while job.running and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not job.running, "the clip took too long"
    return at.run()


def test_the_limits_refuse_a_span_or_frame_count_over_them(page_env, monkeypatch):
    monkeypatch.setenv("MRCNN_MAX_VIDEO_SECONDS", "3")
    monkeypatch.setenv("MRCNN_MAX_VIDEO_FRAMES", "4")
    at = open_page()
    pick_sample(at, fps=2.0, span=(0.0, 3.0))                 # 6 frames
    assert any("at most 4 frames" in e for e in errors(at)), errors(at)
    assert at.button(key="video_start").disabled
    pick_sample(at, fps=1.0, span=(0.0, 5.0))                 # 5 s
    assert any("at most 3 s" in e for e in errors(at)), errors(at)
    assert at.button(key="video_start").disabled
    pick_sample(at, fps=1.0, span=(1.0, 4.0))                 # 3 frames in 3 s: fine
    assert not errors(at)
    assert not at.button(key="video_start").disabled
    assert at.button(key="video_start").label == "Analyse 3 frames"


def test_the_public_defaults_are_ten_seconds_and_forty_frames(page_env, monkeypatch):
    from studio.settings import Limits
    monkeypatch.setenv("MRCNN_PUBLIC", "1")
    limits = Limits.read()
    assert (limits.video_seconds, limits.video_frames) == (10, 40)
    monkeypatch.delenv("MRCNN_PUBLIC")
    assert Limits.read().video_seconds > 10


def test_a_bad_upload_gets_one_sentence_and_the_page_goes_on(page_env):
    at = open_page()
    at.file_uploader(key="video_upload").upload("holiday.mp4", b"\x00not a clip" * 50,
                                                "video/mp4").run()
    assert not at.exception
    assert len(errors(at)) == 1 and "not a video" in errors(at)[0]
    assert "/tmp" not in errors(at)[0] and "Traceback" not in errors(at)[0]
    pick_sample(at)                                           # the page still works
    assert not errors(at)


def test_cancel_stops_the_run_and_keeps_the_frames_done(page_env):
    at = pick_sample(open_page(), fps=2.0, span=(0.0, 3.0))
    at.button(key="video_start").click().run()
    job = at.session_state[KEY_VIDEO_JOB]
    assert job.total == 6
    assert at.button(key="video_cancel")                     # shown while it runs
    at.button(key="video_cancel").click().run()
    wait_until_done(at, 120)
    assert job.state == "cancelled" and len(job.frames) < 6
    assert any(f"of {job.total} frames" in w.value for w in at.warning)
    assert not at.exception
    # nothing of this visitor is left waiting in the queue
    assert job.queue.waiting(job.session) == 0


@pytest.mark.slow
def test_the_confidence_slider_retracks_without_running_the_network(page_env):
    at = pick_sample(open_page(), fps=2.0, span=(0.0, 3.0))
    at.slider(key="min_score").set_value(0.1).run()
    at.button(key="video_start").click().run()
    job = at.session_state[KEY_VIDEO_JOB]
    wait_until_done(at)
    assert job.state == "done" and len(job.frames) == 6
    ran = job.queue.completed
    low = at.dataframe[0].value
    assert len(at.get("video")) == 1
    assert [b.key for b in at.download_button] == ["video_dl_mp4", "video_dl_mot",
                                                    "video_dl_coco", "video_dl_zip"]
    at.slider(key="min_score").set_value(0.95).run()
    assert not at.exception
    assert job.queue.completed == ran                           # no frame ran again
    assert job.outputs(0.95).min_score == 0.95
    high = at.dataframe[0].value
    assert len(high) <= len(low)
    expected = {t.id for t in job.outputs(0.95).tracks}
    assert {int(v.lstrip("#")) for v in high["Track"]} == expected
