"""One fair queue per process for every network run the app makes (no Streamlit here).

Every page and both backends submit work here; one worker thread runs it.

- **Fair by address, then by session.** Client addresses take turns (round
  robin), in the order their oldest waiting job arrived; within one address its
  sessions (browser tabs) take turns in the same way. A newcomer joins the turn
  order ahead of those that have already had a turn, so it waits for the run in
  progress, not for a second turn of the address in the network. Ten tabs on one address
  and one tab on another therefore alternate one for one, and a visitor's
  20-photo "Run all" is interleaved with other visitors' single photos, so
  nobody waits behind someone else's batch or someone else's many tabs. A
  session submitted without an address is an address of its own.
- **Shared.** A job is identified by its ``key`` (image digest + settings +
  model): a second request for the same key, from any session, waits for the
  same run instead of adding one (a class all pressing the same sample).
- **Capped.** A new job (not one joined by key) is refused with
  :class:`QueueFull` when its session already has ``max_per_session`` jobs
  waiting, or its address ``max_per_address`` across all its tabs; and with
  :class:`QueueBusy` (a ``QueueFull``) when ``max_total`` jobs wait in all. A
  refused submit changes nothing. Jobs that nobody claims any more do not count.
- **Dropped when nobody waits.** A session that leaves, or replaces its queued
  photo with another (same ``slot``), takes its claim off the job; a job nobody
  claims any more is never run. A claim whose page was merely interrupted (a
  Streamlit rerun) is kept for ``grace_s`` so the rerun re-attaches to it
  without losing its place.
- **Batched.** When several compatible jobs wait, up to ``max_batch`` run as
  one call (``run_batch`` gets them all).
- **Told where they stand.** :meth:`FairQueue.standing` gives a job's place and
  an estimate from the recent seconds per image; :meth:`FairQueue.queued_bytes`
  the memory that waiting and running jobs' payloads hold.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

__all__ = ["FairQueue", "Job", "QueueBusy", "QueueFull", "Standing"]

logger = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """A session or address already has as many jobs waiting as it may; ``str()`` is
    for the visitor."""


class QueueBusy(QueueFull):
    """The whole queue has as many jobs waiting as it may; ``str()`` is for the visitor,
    ``eta_s`` the estimated seconds until the queue is clear."""

    def __init__(self, message: str, eta_s: float):
        super().__init__(message)
        self.eta_s = float(eta_s)

    def __reduce__(self):
        return type(self), (str(self), self.eta_s)


@dataclass(eq=False)
class Job:
    key: str                        # what is computed: equal keys give equal results
    kind: str                       # what to run ("detect", "intermediates", ...)
    payload: object                 # what run_batch needs (image, settings, ...)
    batch_group: object             # jobs with equal (kind, batch_group) may share a call
    owner: str                      # the session whose turn it uses
    address: str                    # the owner's client address (the session's id if none)
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


def _photos(n: int) -> str:
    return f"{n} photo" if n == 1 else f"{n} photos"


def _join_turns(turns: OrderedDict, name: str, value, level: str, served: set) -> OrderedDict:
    """``turns`` with ``name`` added: after the others that have not had a turn yet and
    before those that have (a newcomer waits for the run in progress and for the other
    newcomers, not for a second turn of an address or tab that has just had one), or
    last if ``name`` itself has just had its turn (its job is still running)."""
    items = list(turns.items())
    if (level, name) in served:
        place = len(items)
    else:
        place = next((i for i, (other, _) in enumerate(items) if (level, other) in served),
                     len(items))
    items.insert(place, (name, value))
    return OrderedDict(items)


class FairQueue:
    """A single worker serving addresses, and each address's sessions, in turn.
    ``run_batch(jobs) -> results``.

    ``run_batch`` gets a list of jobs of one kind and batch group and returns
    one result per job (or raises: every job of the call gets the exception).
    ``is_alive(session)`` tells whether a session still exists (closed browser
    tab: False). ``payload_bytes(payload)`` is the memory a job's payload holds
    (for :meth:`queued_bytes`). ``max_batch``, ``max_per_session``,
    ``max_per_address`` and ``max_total`` may be changed at any time (None: no cap).
    """

    def __init__(self, run_batch: Callable[[list[Job]], list], *, max_batch: int = 1,
                 is_alive: Callable[[str], bool] = lambda session: True,
                 max_per_session: int = 50, max_per_address: int | None = None,
                 max_total: int | None = None,
                 payload_bytes: Callable[[object], int] = lambda payload: 0,
                 grace_s: float = 5.0, seconds_per_image: float = 3.0, clock=time.monotonic):
        self._run_batch = run_batch
        self.max_batch = max(1, int(max_batch))
        self._is_alive = is_alive
        self.max_per_session = int(max_per_session)
        self.max_per_address = max_per_address
        self.max_total = max_total
        self._payload_bytes = payload_bytes
        self.grace_s = float(grace_s)
        self._clock = clock
        self._lock = threading.Condition()
        # turn order: address -> (turn order: session -> its waiting jobs)
        self._addresses: OrderedDict[str, OrderedDict[str, deque]] = OrderedDict()
        # addresses and sessions that had a turn since they joined the turn order
        self._served: set[str] = set()
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
               batch_group=None, address: str | None = None) -> Job:
        """Claim the run ``key`` for ``session`` (queued once for all sessions).

        ``slot`` names what the job is for in that session (the photo shown,
        one of Run all's images...): a new key in the same slot drops the
        session's claim on its previous job there. ``address`` is the client's
        address (None: the session is an address of its own); a new job takes
        its turns among that address's sessions. Raises :class:`QueueFull` when
        a new job would pass ``max_per_session`` or ``max_per_address`` waiting
        jobs, and :class:`QueueBusy` when ``max_total`` jobs wait already; a
        refused submit leaves every claim as it was. Joining a queued job by
        its key is never refused.
        """
        address = session if address is None else str(address)
        with self._lock:
            job = self._by_key.get(key)
            if job is None or job.future.cancelled():
                self._check_caps(session, address, slot, key)
                job = Job(key, kind, payload, batch_group, owner=session, address=address,
                          enqueued=self._clock())
                self._by_key[key] = job
                if address not in self._addresses:
                    self._addresses = _join_turns(self._addresses, address, OrderedDict(),
                                                  "address", self._served)
                sessions = self._addresses[address]
                if session not in sessions:
                    self._addresses[address] = sessions = _join_turns(
                        sessions, session, deque(), "session", self._served)
                sessions[session].append(job)
                self._lock.notify_all()
            self._drop_claims(session, slot, keep=key)
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
            ahead_total = ahead + len(self._running)
            return Standing(ahead_total, False,
                            self._running_left(per_image) + per_image * (ahead + 1), False)

    def seconds_per_image(self) -> float:
        """Recent network seconds per image (a default until something ran)."""
        with self._lock:
            if not self._recent:
                return self._default_per_image
            seconds = sum(s for s, _ in self._recent)
            images = sum(n for _, n in self._recent)
            return seconds / max(images, 1)

    def waiting(self, session: str | None = None, address: str | None = None) -> int:
        """Jobs waiting (not running): all, those whose turn is ``session``'s, or those
        of ``address``'s sessions (both given: that session's on that address)."""
        with self._lock:
            return sum(len(queue) for a, s, queue in self._queues()
                       if (session is None or s == session)
                       and (address is None or a == address))

    def queued_bytes(self) -> int:
        """The bytes ``payload_bytes`` counts in the payloads of waiting and running jobs."""
        with self._lock:
            return sum(int(self._payload_bytes(job.payload)) for job in self._by_key.values())

    # -------------------------------------------------------------- worker
    def _queues(self):
        """(address, session, its waiting jobs) for every session with jobs waiting."""
        for address, sessions in self._addresses.items():
            for session, queue in sessions.items():
                yield address, session, queue

    def _running_left(self, per_image: float) -> float:
        if not self._running:
            return 0.0
        elapsed = self._clock() - (self._running[0].started or self._clock())
        return max(0.0, per_image * len(self._running) - elapsed)

    def _check_caps(self, session: str, address: str, slot: str, key: str) -> None:
        """Raise QueueFull/QueueBusy if a new job for ``session`` would pass a cap.

        Counted: waiting jobs someone still claims once ``session``'s claim in
        ``slot`` has moved to ``key`` (a photo replaced in its slot is not kept)."""
        def wanted(job: Job) -> bool:
            return any(s != session or claim[0] != slot or job.key == key
                       for s, claim in job.claims.items())
        mine = here = total = 0
        for a, s, queue in self._queues():
            n = sum(1 for job in queue if wanted(job))
            total += n
            here += n if a == address else 0
            mine += n if s == session else 0
        if mine >= self.max_per_session:
            raise QueueFull(
                f"You already have {_photos(mine)} waiting; the limit is "
                f"{self.max_per_session}. Wait for them, or run fewer at once.")
        if self.max_per_address is not None and here >= self.max_per_address:
            raise QueueFull(
                f"Your address already has {_photos(here)} waiting across its tabs; the "
                f"limit is {self.max_per_address}. Wait for them to finish, then try again.")
        if self.max_total is not None and total >= self.max_total:
            per_image = self.seconds_per_image()
            eta = self._running_left(per_image) + per_image * total
            raise QueueBusy(
                f"The demo is busy: {_photos(total)} {'is' if total == 1 else 'are'} "
                f"waiting. Try again in a minute (the queue needs about {eta:.0f} s to "
                f"clear).", eta)

    def _claimed(self, job: Job) -> bool:
        """Whether anyone still waits for ``job`` (drops dead and stale claims)."""
        now = self._clock()
        for session, (_slot, detached) in list(job.claims.items()):
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
        """Waiting jobs in the order they will run (those nobody claims left out):
        addresses in turn, each address's sessions in turn, each session in its own
        order. It is the order :meth:`_next_batch` takes them one at a time."""
        turns = deque()
        for sessions in self._addresses.values():
            rotation = deque()
            for queue in sessions.values():
                jobs = deque(job for job in queue if job.claims)
                if jobs:
                    rotation.append(jobs)
            if rotation:
                turns.append(rotation)
        order = []
        while turns:                       # as _take does: the taker goes to the back
            rotation = turns.popleft()
            jobs = rotation.popleft()
            order.append(jobs.popleft())
            if jobs:
                rotation.append(jobs)
            if rotation:
                turns.append(rotation)
        return order

    def _take(self, job: Job) -> None:
        """Take ``job`` out of its session's queue; the session goes to the back of its
        address's turn, and the address to the back of the addresses' turn."""
        sessions = self._addresses[job.address]
        queue = sessions[job.owner]
        queue.remove(job)
        # Both have had a turn, until they have nothing waiting or running.
        self._served.update({("session", job.owner), ("address", job.address)})
        if queue:
            sessions.move_to_end(job.owner)
        else:
            del sessions[job.owner]
        if sessions:
            self._addresses.move_to_end(job.address)
        else:
            del self._addresses[job.address]

    def _next_batch(self) -> list[Job]:
        """Take the next job in turn and up to max_batch - 1 compatible ones after it."""
        for address in list(self._addresses):
            sessions = self._addresses[address]
            for session in list(sessions):
                queue = sessions[session]
                for job in queue:
                    self._claimed(job)             # drops dead and stale claims
                while queue and not queue[0].claims:
                    self._forget(queue.popleft(), dropped=True)
                if not queue:
                    del sessions[session]
            if not sessions:
                del self._addresses[address]
        self._forget_turns()
        order = self._schedule()
        if not order:
            return []
        first = order[0]
        batch = [first] + [job for job in order[1:]
                           if (job.kind, job.batch_group) == (first.kind, first.batch_group)
                           ][:self.max_batch - 1]
        for job in batch:
            self._take(job)
        return batch

    def _forget_turns(self) -> None:
        """Addresses and sessions with nothing waiting or running are newcomers again."""
        active = {("session", job.owner) for job in self._running}
        active |= {("address", job.address) for job in self._running}
        for address, sessions in self._addresses.items():
            active.add(("address", address))
            active.update(("session", session) for session in sessions)
        self._served &= active

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
                for job in list(batch):
                    job.started = started
                    if not job.future.set_running_or_notify_cancel():   # cancelled outside
                        self._forget(job)
                        batch.remove(job)
                self._running = batch
            if not batch:
                continue
            try:
                results = self._run_batch(batch)
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch gave {len(results)} results for "
                                       f"{len(batch)} jobs")
            except BaseException as exc:  # handed to every waiter
                logger.exception("A queued run of %d image(s) failed", len(batch))
                results = [exc] * len(batch)
            with self._lock:
                self._recent.append((self._clock() - started, len(batch)))
                self._running = []
                self._forget_turns()
                for job, result in zip(batch, results):
                    self._forget(job)
                    self.completed += 1
                    if isinstance(result, BaseException):
                        job.future.set_exception(result)
                    else:
                        job.future.set_result(result)
                self._lock.notify_all()
