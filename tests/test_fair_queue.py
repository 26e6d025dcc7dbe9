"""The app's one fair queue (studio.fair_queue) and its results store (studio.run_store),
with a fake network whose every call is recorded; no Streamlit, no TensorFlow."""
from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import pytest

from studio.fair_queue import FairQueue, QueueFull
from studio.run_store import RunStore


class Clock:
    """A queue's clock that moves only when a fake network call says it took time."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Network:
    """run_batch for the queue: records each call's keys; ``gate`` holds a call open.
    With a ``clock``, each call takes ``seconds`` on it (not in real time)."""

    def __init__(self, seconds=0.0, clock=None):
        self.calls = []
        self.seconds = seconds
        self.clock = clock
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()

    def __call__(self, jobs):
        self.started.set()
        self.gate.wait(timeout=30)
        if self.clock is not None:
            self.clock.now += self.seconds
        self.calls.append([job.key for job in jobs])
        return [f"result of {job.key}" for job in jobs]

    @property
    def order(self):
        return [key for call in self.calls for key in call]


def hold_first_run(queue, network, session="warm-up"):
    """Occupy the worker with one job so that what follows is queued, not started."""
    network.gate.clear()
    network.started.clear()
    job = queue.submit(session, "first", "detect", None)
    assert network.started.wait(timeout=10)
    return job


def test_run_all_is_interleaved_with_other_visitors_photos():
    """A submits five photos (Run all), then B one: B is answered after at most one more
    of A's images; C, who came after B, waits only for one of A's too."""
    network = Network()
    queue = FairQueue(network)
    hold_first_run(queue, network)
    a_jobs = [queue.submit("A", f"A{i}", "detect", None, slot=f"run-all-{i}") for i in range(5)]
    b_job = queue.submit("B", "B0", "detect", None)
    c_job = queue.submit("C", "C0", "detect", None)
    assert queue.standing(b_job).ahead == 2          # the running one and A0
    network.gate.set()
    for job in a_jobs + [b_job, c_job]:
        job.future.result(timeout=10)
    order = network.order[1:]
    assert order[:3] == ["A0", "B0", "C0"], order
    assert order.index("B0") - order.index("A0") == 1
    assert order == ["A0", "B0", "C0", "A1", "A2", "A3", "A4"]


def test_the_same_run_asked_by_two_visitors_runs_once():
    network = Network()
    queue = FairQueue(network)
    hold_first_run(queue, network)
    first = queue.submit("A", "sample-coffee", "detect", None)
    second = queue.submit("B", "sample-coffee", "detect", None)
    assert first is second
    network.gate.set()
    assert second.future.result(timeout=10) == "result of sample-coffee"
    assert network.order.count("sample-coffee") == 1


def test_work_of_a_visitor_who_left_or_replaced_it_is_dropped_not_run():
    alive = {"A": True, "B": True}
    network = Network()
    queue = FairQueue(network, is_alive=lambda s: alive.get(s, True), grace_s=0.2)
    hold_first_run(queue, network)
    gone = queue.submit("A", "A-photo", "detect", None)
    replaced = queue.submit("B", "B-old", "detect", None)
    newer = queue.submit("B", "B-new", "detect", None)          # same slot: replaces B-old
    left = queue.submit("C", "C-photo", "detect", None)
    shared = queue.submit("D", "shared", "detect", None)
    queue.submit("E", "shared", "detect", None)
    alive["A"] = False                                           # closed the tab
    queue.leave("C")                                             # session ended
    queue.detach("D", shared)                                    # D's page went away...
    time.sleep(0.3)                                              # ...past the grace period
    network.gate.set()
    assert newer.future.result(timeout=10) == "result of B-new"
    assert shared.future.result(timeout=10) == "result of shared"   # E still waits for it
    for job in (gone, replaced, left):
        with pytest.raises(CancelledError):
            job.future.result(timeout=10)
    assert sorted(network.order[1:]) == ["B-new", "shared"]
    assert queue.dropped == 3


def test_a_rerun_within_the_grace_period_keeps_its_place():
    network = Network()
    queue = FairQueue(network, grace_s=5.0)
    hold_first_run(queue, network)
    job = queue.submit("A", "A-photo", "detect", None)
    other = queue.submit("B", "B-photo", "detect", None)
    queue.detach("A", job)                          # a rerun interrupted A's page...
    again = queue.submit("A", "A-photo", "detect", None)     # ...and it asks again
    assert again is job and queue.standing(again).ahead == 1
    network.gate.set()
    assert again.future.result(timeout=10) == "result of A-photo"
    other.future.result(timeout=10)
    assert network.order[1:] == ["A-photo", "B-photo"]


def test_compatible_waiting_jobs_run_as_one_batch_up_to_the_limit():
    network = Network()
    queue = FairQueue(network, max_batch=3)
    hold_first_run(queue, network)
    jobs = [queue.submit(s, f"{s}-photo", "detect", None, batch_group="512px")
            for s in ("A", "B", "C", "D")]
    other = queue.submit("E", "E-photo", "detect", None, batch_group="1024px")
    lesson = queue.submit("F", "F-lesson", "intermediates", None, batch_group="512px")
    network.gate.set()
    for job in jobs + [other, lesson]:
        job.future.result(timeout=10)
    assert network.calls[1:] == [["A-photo", "B-photo", "C-photo"], ["D-photo"],
                                 ["E-photo"], ["F-lesson"]]


def test_place_and_estimate_follow_the_recent_run_times():
    clock = Clock()                        # measured times on it, whatever the machine's load
    network = Network(seconds=0.05, clock=clock)
    queue = FairQueue(network, seconds_per_image=9.0, clock=clock)
    assert queue.seconds_per_image() == 9.0                # nothing ran yet: the default
    queue.submit("A", "A0", "detect", None).future.result(timeout=10)
    assert queue.seconds_per_image() == pytest.approx(0.05)
    hold_first_run(queue, network)
    jobs = [queue.submit(s, f"{s}0", "detect", None) for s in ("B", "C", "D")]
    standings = [queue.standing(job) for job in jobs]
    assert [s.ahead for s in standings] == [1, 2, 3]
    assert standings[0].eta_s < standings[1].eta_s < standings[2].eta_s
    network.gate.set()
    jobs[-1].future.result(timeout=10)
    assert queue.standing(jobs[-1]).done


def test_a_visitor_may_have_only_so_many_photos_waiting():
    network = Network()
    queue = FairQueue(network, max_per_session=3)
    hold_first_run(queue, network)
    for i in range(3):
        queue.submit("A", f"A{i}", "detect", None, slot=f"s{i}")
    with pytest.raises(QueueFull, match="limit is 3"):
        queue.submit("A", "A3", "detect", None, slot="s3")
    queue.submit("B", "B0", "detect", None)                  # others are not affected
    network.gate.set()


def test_a_failing_run_fails_its_jobs_and_the_queue_goes_on():
    def run(jobs):
        if any(job.key == "bad" for job in jobs):
            raise ValueError("the model failed on this image")
        return [job.key for job in jobs]
    queue = FairQueue(run)
    with pytest.raises(ValueError, match="failed on this image"):
        queue.submit("A", "bad", "detect", None).future.result(timeout=10)
    assert queue.submit("A", "good", "detect", None).future.result(timeout=10) == "good"


# ------------------------------------------------------------------ the store

def test_ten_other_visitors_never_evict_the_run_a_live_visitor_looks_at():
    """Room for every live visitor's current run: ten others, each looking at one photo
    after another, push out only runs nobody looks at any more."""
    store = RunStore(budget_bytes=12_000, nbytes=len)
    store.put("me", "my-photo", b"x" * 1_000)
    for i in range(10):
        for k in range(3):
            store.put(f"other{i}", f"photo{i}-{k}", b"y" * 1_000)
            assert store.total_bytes <= 12_000
    assert store.get("me", "my-photo") == b"x" * 1_000
    assert all(store.get(f"other{i}", f"photo{i}-2") for i in range(10))
    assert store.get("other0", "photo0-0") is None
    assert "needed the memory" in store.why_missing("other0", "photo0-0")


def test_the_budget_is_kept_and_closed_sessions_go_first():
    alive = {"closed": True}
    store = RunStore(budget_bytes=2_000, nbytes=len,
                     is_alive=lambda s: alive.get(s, True))
    store.put("closed", "old", b"a" * 1_000)
    store.put("idle", "idle-run", b"b" * 500)
    store.put("idle", "idle-current", b"c" * 500)            # idle-run is no longer pinned
    alive["closed"] = False
    store.put("new", "new-run", b"d" * 1_500)                # 3,500 > 2,000: two must go
    assert store.total_bytes <= 2_000
    assert store.get("closed", "old") is None                # the closed session's first
    assert store.get("idle", "idle-run") is None             # then the unpinned one
    assert store.get("idle", "idle-current") is not None
    assert store.get("new", "new-run") is not None


def test_pinned_runs_go_only_when_they_alone_pass_the_budget_and_the_page_can_say_why():
    store = RunStore(budget_bytes=1_500, nbytes=len)
    store.put("first", "one", b"a" * 1_000)
    time.sleep(0.01)
    store.put("second", "two", b"b" * 1_000)                 # both pinned: over budget
    assert store.total_bytes <= 1_500
    assert store.get("second", "two") is not None            # the most recent one stays
    assert "idle longest" in store.why_missing("first", "one")
