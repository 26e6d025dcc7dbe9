"""The Train page with Streamlit's AppTest: controls, a real run started and stopped from
the page, and what a second visitor sees while it trains."""
from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from studio.training_run import TrainingRun

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "3_Train.py")


def markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def test_the_page_starts_a_shared_run_and_stops_it(monkeypatch, tmp_path):
    monkeypatch.delenv("MRCNN_CONFIG", raising=False)
    monkeypatch.setenv("MRCNN_TRAIN_DIR", str(tmp_path))
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    assert not at.exception
    assert "its own process at the lowest priority" in at.info[0].value
    assert [r.label for r in at.radio] == ["Layers to train", "Start"]
    assert at.radio[1].options == ["from scratch: random weights"]
    assert not [b for b in at.button if b.label == "Stop"]

    at.radio[0].set_value("heads")
    at.slider[0].set_value(2)
    next(b for b in at.button if b.label == "Start training").click()
    at.run()
    assert not at.exception
    active = TrainingRun.active()          # the page's run, in this process
    assert active is not None and active.spec.layers == "heads" and active.spec.epochs == 2
    assert "layers `heads`" in markdown(at) and "of 2 ·" in markdown(at)

    visitor = AppTest.from_file(PAGE, default_timeout=120)   # another browser, same server
    visitor.run()
    assert "layers `heads`" in markdown(visitor)
    assert not [b for b in visitor.button if b.label == "Start training"]

    deadline = time.monotonic() + 240
    while not active.snapshot()["losses"]:                    # the first step is done
        assert active.alive and time.monotonic() < deadline, active.snapshot()
        time.sleep(0.5)
    next(b for b in visitor.button if b.label == "Stop").click()
    visitor.run()                       # Stop returns once the child is gone
    assert not active.alive
    state = active.snapshot()
    assert state["status"] == "stopped"
    assert active.folder.parent == tmp_path and not list(active.folder.rglob("*.tmp"))

    at.run()
    assert not at.exception
    assert "**Stopped**" in markdown(at)
    assert [b for b in at.button if b.label == "Start training"]
