"""The app's one fair queue (studio.fair_queue) and its results store (studio.run_store),
with a fake network whose every call is recorded; no Streamlit, no TensorFlow."""
from __future__ import annotations

import threading
import time
from concurrent.futures import CancelledError

import pytest

from studio.fair_queue import FairQueue, QueueBusy, QueueFull
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



# ------------------------------------------------------------- addresses and caps

def run_all_and_check_standing(queue, network, jobs):
    """Release the held worker after noting each job's ``ahead``; the places must be
    the order the jobs then actually run in (the running one counted first)."""
    ahead = {job.key: queue.standing(job).ahead for job in jobs}
    network.gate.set()
    for job in jobs:
        job.future.result(timeout=10)
    order = network.order[1:]
    assert ahead == {key: order.index(key) + 1 for key in order}, (ahead, order)
    return order


def test_two_addresses_take_turns_one_for_one_however_many_tabs_each_has():
    """Ten tabs on one address do not get ten turns to another address's one."""
    network = Network()
    queue = FairQueue(network)
    hold_first_run(queue, network)
    many = [queue.submit(f"A-tab{i}", f"A{i}", "detect", None, address="10.0.0.1")
            for i in range(10)]
    one = [queue.submit("B-tab", f"B{i}", "detect", None, slot=f"s{i}", address="10.0.0.2")
           for i in range(5)]
    assert many[0].address == "10.0.0.1" and many[0].owner == "A-tab0"
    assert queue.waiting(address="10.0.0.1") == 10 and queue.waiting(address="10.0.0.2") == 5
    order = run_all_and_check_standing(queue, network, many + one)
    assert [key[0] for key in order[:10]] == ["A", "B"] * 5, order
    assert order == ["A0", "B0", "A1", "B1", "A2", "B2", "A3", "B3", "A4", "B4",
                     "A5", "A6", "A7", "A8", "A9"]


def test_a_newcomer_waits_only_for_the_run_in_progress_not_a_second_turn():
    """While one address's photo runs and eight more of its tabs wait, a visitor from
    another address is next: the address in the network has just had its turn."""
    network = Network()
    queue = FairQueue(network)
    network.gate.clear()
    network.started.clear()
    tabs = [queue.submit(f"A-tab{i}", f"A{i}", "detect", None, address="203.0.113.7")
            for i in range(9)]
    assert network.started.wait(timeout=10)          # A0 is in the network
    honest = queue.submit("H", "H0", "detect", None, address="198.51.100.20")
    assert queue.standing(honest).ahead == 1, "only the running photo is ahead"
    late_tab = queue.submit("A-late", "A-late0", "detect", None, address="203.0.113.7")
    network.gate.set()
    for job in tabs + [honest, late_tab]:
        job.future.result(timeout=10)
    # The late tab goes after the address's other tabs that have not had a turn yet.
    assert network.order == ["A0", "H0"] + [f"A{i}" for i in range(1, 9)] + ["A-late0"]


def test_an_address_whose_only_photo_runs_has_had_its_turn_when_more_arrive():
    """The first tab's photo starts at once (nothing else waits); the address's other
    tabs queue during that run; a visitor from elsewhere who comes next still goes
    before them: that address has just had its turn."""
    network = Network()
    queue = FairQueue(network)
    network.gate.clear()
    network.started.clear()
    first = queue.submit("A-tab0", "A0", "detect", None, address="203.0.113.7")
    assert network.started.wait(timeout=10)
    tabs = [queue.submit(f"A-tab{i}", f"A{i}", "detect", None, address="203.0.113.7")
            for i in range(1, 9)]
    honest = queue.submit("H", "H0", "detect", None, address="198.51.100.20")
    assert queue.standing(honest).ahead == 1
    network.gate.set()
    for job in [first, *tabs, honest]:
        job.future.result(timeout=10)
    assert network.order[:3] == ["A0", "H0", "A1"], network.order


def test_within_an_address_its_sessions_take_turns():
    network = Network()
    queue = FairQueue(network)
    hold_first_run(queue, network)
    jobs = [queue.submit(tab, f"{tab}-{i}", "detect", None, slot=str(i), address="A")
            for tab, n in (("s1", 3), ("s2", 3), ("s3", 1)) for i in range(n)]
    jobs += [queue.submit("b", f"b-{i}", "detect", None, slot=str(i), address="B")
             for i in range(6)]
    assert queue.waiting(session="s1") == 3 and queue.waiting(address="A") == 7
    assert queue.waiting(session="s1", address="B") == 0
    order = run_all_and_check_standing(queue, network, jobs)
    assert order == ["s1-0", "b-0", "s2-0", "b-1", "s3-0", "b-2", "s1-1", "b-3",
                     "s2-1", "b-4", "s1-2", "b-5", "s2-2"]


def test_the_place_shown_is_the_place_taken_with_mixed_addresses_and_replaced_photos():
    """Sessions with and without an address, a tab joining later, and a photo replaced
    while it waits (it is never run, so nobody waits behind it)."""
    network = Network()
    queue = FairQueue(network)
    hold_first_run(queue, network)
    jobs = [queue.submit("x1", f"x1-{i}", "detect", None, slot=str(i), address="X")
            for i in range(3)]
    jobs += [queue.submit("solo", f"solo-{i}", "detect", None, slot=str(i)) for i in range(2)]
    replaced = queue.submit("y", "y-old", "detect", None, address="Y")
    jobs.append(queue.submit("y", "y-new", "detect", None, address="Y"))
    jobs += [queue.submit("x2", f"x2-{i}", "detect", None, slot=str(i), address="X")
             for i in range(2)]
    order = run_all_and_check_standing(queue, network, jobs)
    assert order == ["x1-0", "solo-0", "y-new", "x2-0", "solo-1", "x1-1", "x2-1", "x1-2"]
    with pytest.raises(CancelledError):
        replaced.future.result(timeout=10)


def test_without_an_address_each_session_is_an_address_of_its_own():
    network = Network()
    queue = FairQueue(network, max_per_address=2)
    hold_first_run(queue, network)
    a_jobs = [queue.submit("A", f"A{i}", "detect", None, slot=str(i)) for i in range(2)]
    b_job = queue.submit("B", "B0", "detect", None)
    c_job = queue.submit("C", "C0", "detect", None)
    assert a_jobs[0].address == "A" and queue.waiting(address="A") == 2
    with pytest.raises(QueueFull, match="Your address already has 2 photos"):
        queue.submit("A", "A2", "detect", None, slot="2")
    d_job = queue.submit("D", "D0", "detect", None)            # others are not affected
    order = run_all_and_check_standing(queue, network, a_jobs + [b_job, c_job, d_job])
    assert order == ["A0", "B0", "C0", "D0", "A1"]


def test_the_address_cap_counts_every_tab_of_the_address_but_not_joining_a_queued_run():
    network = Network()
    queue = FairQueue(network, max_per_address=3)
    hold_first_run(queue, network)
    tabs = [queue.submit(f"tab{i}", f"photo{i}", "detect", None, address="1.2.3.4")
            for i in range(3)]
    with pytest.raises(QueueFull, match="3 photos waiting across its tabs; the limit is 3"):
        queue.submit("tab3", "photo3", "detect", None, address="1.2.3.4")
    assert queue.waiting(address="1.2.3.4") == 3 and "photo3" not in queue._by_key
    joined = queue.submit("tab3", "photo0", "detect", None, address="1.2.3.4")
    assert joined is tabs[0] and "tab3" in joined.claims
    again = queue.submit("tab0", "photo0", "detect", None, address="1.2.3.4")
    assert again is tabs[0]
    # a tab that swaps its waiting photo for another one adds nothing: allowed
    swapped = queue.submit("tab2", "photo2b", "detect", None, address="1.2.3.4")
    assert "tab2" not in tabs[2].claims
    queue.submit("other", "elsewhere", "detect", None, address="5.6.7.8")
    queue.max_per_address = None                               # may be changed any time
    extra = queue.submit("tab3", "photo3", "detect", None, address="1.2.3.4")
    network.gate.set()
    for job in (tabs[0], tabs[1], swapped, extra):
        job.future.result(timeout=10)
    assert "photo2" not in network.order


def test_running_jobs_do_not_count_against_the_address_cap():
    network = Network()
    network.gate.clear()
    queue = FairQueue(network, max_per_address=1)
    running = queue.submit("tab0", "first", "detect", None, address="A")
    assert network.started.wait(timeout=10)
    waiting = queue.submit("tab1", "second", "detect", None, address="A")
    with pytest.raises(QueueFull, match="limit is 1"):
        queue.submit("tab2", "third", "detect", None, address="A")
    network.gate.set()
    running.future.result(timeout=10)
    waiting.future.result(timeout=10)


def test_the_session_cap_still_applies_and_is_checked_before_the_address_cap():
    network = Network()
    queue = FairQueue(network, max_per_session=2, max_per_address=2)
    hold_first_run(queue, network)
    for i in range(2):
        queue.submit("tab", f"t{i}", "detect", None, slot=str(i), address="A")
    with pytest.raises(QueueFull, match="You already have 2 photos waiting; the limit is 2"):
        queue.submit("tab", "t2", "detect", None, slot="2", address="A")
    queue.max_per_address = 5
    queue.submit("tab2", "u0", "detect", None, address="A")    # another tab: its own count
    with pytest.raises(QueueFull, match="You already have 2"):
        queue.submit("tab", "t2", "detect", None, slot="2", address="A")
    network.gate.set()


def test_a_full_queue_refuses_new_photos_with_an_estimate_and_changes_nothing():
    clock = Clock()
    network = Network(seconds=1.0, clock=clock)
    queue = FairQueue(network, seconds_per_image=4.0, clock=clock)
    hold_first_run(queue, network)
    others = [queue.submit(s, f"{s}0", "detect", None, address=s) for s in ("A", "B", "C")]
    old = queue.submit("D", "D-old", "detect", None, address="D")
    queue.max_total = 3                                          # changed while jobs wait
    with pytest.raises(QueueBusy) as refused:
        queue.submit("D", "D-new", "detect", None, address="D")
    assert isinstance(refused.value, QueueFull)
    # 4 s left of the running image, then the 3 others at 4 s each (D-old would have
    # been replaced by D-new, so it is not counted)
    assert refused.value.eta_s == pytest.approx(16.0)
    assert str(refused.value) == ("The demo is busy: 3 photos are waiting. Try again in a "
                                  "minute (the queue needs about 16 s to clear).")
    assert old.claims == {"D": ("main", None)}                  # its previous photo kept
    assert queue.waiting() == 4 and "D-new" not in queue._by_key
    assert queue.submit("E", "A0", "detect", None, address="E") is others[0]   # joining
    network.gate.set()
    assert old.future.result(timeout=10) == "result of D-old"
    for job in others:
        job.future.result(timeout=10)
    assert "D-new" not in network.order and queue.dropped == 0
    assert queue.submit("D", "D-new", "detect", None).future.result(timeout=10)


def test_queued_bytes_count_waiting_and_running_payloads():
    network = Network()
    network.gate.clear()
    queue = FairQueue(network, payload_bytes=lambda payload: len(payload or b""))
    assert queue.queued_bytes() == 0
    running = queue.submit("A", "big", "detect", b"r" * 1_000)
    assert network.started.wait(timeout=10)
    assert queue.queued_bytes() == 1_000                         # running: still held
    waiting = [queue.submit("A", "a", "detect", b"x" * 100, slot="a"),
               queue.submit("B", "b", "detect", b"y" * 50)]
    queue.submit("C", "a", "detect", b"x" * 100)                 # joined: counted once
    assert queue.queued_bytes() == 1_150
    network.gate.set()
    for job in [running] + waiting:
        job.future.result(timeout=10)
    assert queue.queued_bytes() == 0

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


def test_a_job_cancelled_from_outside_is_skipped_and_the_worker_goes_on():
    gate = threading.Event()
    ran = []

    def run_batch(jobs):
        gate.wait(10)
        ran.extend(job.key for job in jobs)
        return [job.key for job in jobs]

    queue = FairQueue(run_batch)
    first = queue.submit("s1", "a", "detect", None)
    doomed = queue.submit("s2", "b", "detect", None)
    assert doomed.future.cancel()            # someone outside cancels a waiting job
    after = queue.submit("s3", "c", "detect", None)
    gate.set()
    assert first.future.result(10) == "a" and after.future.result(10) == "c"
    assert "b" not in ran
