"""One fair queue per process for every network run the app makes (no Streamlit here).

Every page and both backends submit work here; one worker thread runs it.

- **Fair.** Sessions take turns (round robin), in the order their oldest waiting
  job arrived: a visitor's 20-photo "Run all" is interleaved with other
  visitors' single photos, so nobody waits behind someone else's batch.
- **Shared.** A job is identified by its ``key`` (image digest + settings +
  model): a second request for the same key, from any session, waits for the
  same run instead of adding one (a class all pressing the same sample).
- **Dropped when nobody waits.** A session that leaves, or replaces its queued
  photo with another (same ``slot``), takes its claim off the job; a job nobody
  claims any more is never run. A claim whose page was merely interrupted (a
  Streamlit rerun) is kept for ``grace_s`` so the rerun re-attaches to it
  without losing its place.
- **Batched.** When several compatible jobs wait, up to ``max_batch`` run as
  one call (``run_batch`` gets them all).
- **Told where they stand.** :meth:`FairQueue.standing` gives a job's place and
  an estimate from the recent seconds per image.
"""
from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

__all__ = ["FairQueue", "Job", "QueueFull", "Standing"]

logger = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """A session already has as many jobs waiting as it may; ``str()`` is for the visitor."""


@dataclass(eq=False)
class Job:
    key: str                        # what is computed: equal keys give equal results
    kind: str                       # what to run ("detect", "intermediates", ...)
    payload: object                 # what run_batch needs (image, settings, ...)
    batch_group: object             # jobs with equal (kind, batch_group) may share a call
    owner: str                      # the session whose turn it uses
    enqueued: float
    future: Future = field(default_factory=Future)
    # session -> (slot, detached since or None); the job runs while any claim is live
    claims: dict = field(default_factory=dict)
    started: float | None = None


@dataclass(frozen=True)
class Standing:
    """Where a job stands: ``ahead`` images run before it (the running ones included)."""
    ahead: int
    running: bool                   # this job is in the network now
    eta_s: float                    # seconds until its answer, from recent run times
    done: bool


class FairQueue:
    """A single worker serving sessions in turn. ``run_batch(jobs) -> results``.

    ``run_batch`` gets a list of jobs of one kind and batch group and returns
    one result per job (or raises: every job of the call gets the exception).
    ``is_alive(session)`` tells whether a session still exists (closed browser
    tab: False). ``max_batch`` may be changed at any time.
    """

    def __init__(self, run_batch: Callable[[list[Job]], list], *, max_batch: int = 1,
                 is_alive: Callable[[str], bool] = lambda session: True,
                 max_per_session: int = 50, grace_s: float = 5.0,
                 seconds_per_image: float = 3.0, clock=time.monotonic):
        self._run_batch = run_batch
        self.max_batch = max(1, int(max_batch))
        self._is_alive = is_alive
        self.max_per_session = int(max_per_session)
        self.grace_s = float(grace_s)
        self._clock = clock
        self._lock = threading.Condition()
        self._sessions: OrderedDict[str, deque] = OrderedDict()   # turn order, waiting jobs
        self._by_key: dict[str, Job] = {}                          # waiting or running
        self._running: list[Job] = []
        self._recent = deque(maxlen=20)       # (seconds, images) of recent calls
        self._default_per_image = float(seconds_per_image)
        self.completed = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._work, name="fair-queue", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------- callers
    def submit(self, session: str, key: str, kind: str, payload, *, slot: str = "main",
               batch_group=None) -> Job:
        """Claim the run ``key`` for ``session`` (queued once for all sessions).

        ``slot`` names what the job is for in that session (the photo shown,
        one of Run all's images...): a new key in the same slot drops the
        session's claim on its previous job there. Raises :class:`QueueFull`
        when the session already has ``max_per_session`` jobs waiting.
        """
        with self._lock:
            self._drop_claims(session, slot, keep=key)
            job = self._by_key.get(key)
            if job is None or job.future.cancelled():
                waiting = self._sessions.get(session, ())
                if len(waiting) >= self.max_per_session:
                    raise QueueFull(
                        f"You already have {len(waiting)} photos waiting; the limit is "
                        f"{self.max_per_session}. Wait for them, or run fewer at once.")
                job = Job(key, kind, payload, batch_group, session, self._clock())
                self._by_key[key] = job
                self._sessions.setdefault(session, deque()).append(job)
                self._lock.notify_all()
            job.claims[session] = (slot, None)
            return job

    def detach(self, session: str, job: Job) -> None:
        """The session's page stopped waiting (rerun or closed): keep the claim ``grace_s``."""
        with self._lock:
            if session in job.claims:
                slot, _ = job.claims[session]
                job.claims[session] = (slot, self._clock())

    def leave(self, session: str) -> None:
        """The session is gone: drop all its claims now."""
        with self._lock:
            for job in list(self._by_key.values()):
                job.claims.pop(session, None)
            self._lock.notify_all()

    def standing(self, job: Job) -> Standing:
        """The job's place in line and the estimated seconds until its answer."""
        with self._lock:
            per_image = self.seconds_per_image()
            if job.future.done():
                return Standing(0, False, 0.0, True)
            if job in self._running:
                left = max(0.0, per_image * len(self._running)
                           - (self._clock() - (job.started or self._clock())))
                return Standing(0, True, left, False)
            order = self._schedule()
            ahead = order.index(job) if job in order else len(order)
            running_left = 0.0
            if self._running:
                elapsed = self._clock() - (self._running[0].started or self._clock())
                running_left = max(0.0, per_image * len(self._running) - elapsed)
            ahead_total = ahead + len(self._running)
            return Standing(ahead_total, False, running_left + per_image * (ahead + 1), False)

    def seconds_per_image(self) -> float:
        """Recent network seconds per image (a default until something ran)."""
        with self._lock:
            if not self._recent:
                return self._default_per_image
            seconds = sum(s for s, _ in self._recent)
            images = sum(n for _, n in self._recent)
            return seconds / max(images, 1)

    def waiting(self, session: str | None = None) -> int:
        """Jobs waiting (not running): all, or those whose turn is ``session``'s."""
        with self._lock:
            if session is None:
                return sum(len(q) for q in self._sessions.values())
            return len(self._sessions.get(session, ()))

    # -------------------------------------------------------------- worker
    def _claimed(self, job: Job) -> bool:
        """Whether anyone still waits for ``job`` (drops dead and stale claims)."""
        now = self._clock()
        for session, (slot, detached) in list(job.claims.items()):
            stale = detached is not None and now - detached > self.grace_s
            if stale or not self._is_alive(session):
                del job.claims[session]
        return bool(job.claims)

    def _drop_claims(self, session: str, slot: str, keep: str) -> None:
        for job in list(self._by_key.values()):
            claim = job.claims.get(session)
            if claim is not None and claim[0] == slot and job.key != keep:
                del job.claims[session]

    def _schedule(self) -> list[Job]:
        """Waiting jobs in the order they will run: sessions in turn, each in its own order."""
        queues = [list(q) for q in self._sessions.values()]
        order = []
        for round_ in itertools.zip_longest(*queues):
            order.extend(job for job in round_ if job is not None)
        return order

    def _next_batch(self) -> list[Job]:
        """Take the next job in turn and up to max_batch - 1 compatible ones after it."""
        for session in list(self._sessions):
            queue = self._sessions[session]
            while queue and not self._claimed(queue[0]):
                self._forget(queue.popleft(), dropped=True)
            if not queue:
                del self._sessions[session]
        order = [job for job in self._schedule() if self._claimed(job)]
        if not order:
            return []
        first = order[0]
        batch = [first] + [job for job in order[1:]
                           if (job.kind, job.batch_group) == (first.kind, first.batch_group)
                           ][:self.max_batch - 1]
        for job in batch:
            queue = self._sessions[job.owner]
            queue.remove(job)
            if not queue:
                del self._sessions[job.owner]
            else:                                  # its next job goes to the back of the turn
                self._sessions.move_to_end(job.owner)
        return batch

    def _forget(self, job: Job, dropped: bool = False) -> None:
        if self._by_key.get(job.key) is job:
            del self._by_key[job.key]
        if dropped:
            self.dropped += 1
            job.future.cancel()

    def _work(self) -> None:
        while True:
            with self._lock:
                batch = self._next_batch()
                while not batch:
                    self._lock.wait(timeout=1.0)
                    batch = self._next_batch()
                started = self._clock()
                for job in batch:
                    job.started = started
                    job.future.set_running_or_notify_cancel()
                self._running = batch
            try:
                results = self._run_batch(batch)
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch gave {len(results)} results for "
                                       f"{len(batch)} jobs")
            except BaseException as exc:  # noqa: BLE001 - handed to every waiter
                logger.exception("A queued run of %d image(s) failed", len(batch))
                results = [exc] * len(batch)
            with self._lock:
                self._recent.append((self._clock() - started, len(batch)))
                self._running = []
                for job, result in zip(batch, results):
                    self._forget(job)
                    self.completed += 1
                    if isinstance(result, BaseException):
                        job.future.set_exception(result)
                    else:
                        job.future.set_result(result)
                self._lock.notify_all()
