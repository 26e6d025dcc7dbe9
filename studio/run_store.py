"""The network runs visitors look at, kept under one memory budget in MB (no Streamlit here).

Entries are keyed like the queue's jobs (image digest + settings + model), so
visitors who look at the same picture share one entry. Each session *pins*
the run it is looking at: while that session lives, other visitors' runs
never push it out. When the total passes the budget, entries go in this
order: those only closed sessions looked at, then those no live session
pins (least recently used first), and only then, if the pinned runs alone
exceed the budget, the pinned run of the session idle longest; the store
remembers why, so that page can say so when it has to run the network again.

The budget counts everything the visitors' sessions keep, not only the runs:
an entry's size is measured again each time the store checks its budget (a run
grows as its cut-outs are made), each live session may declare what else it
holds (:meth:`RunStore.set_session_bytes`: its decoded uploads), and
``extra_bytes()`` adds what is held outside (the images of queued jobs).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["RunStore"]


@dataclass
class _Entry:
    value: object
    nbytes: int
    used: float                                  # last time anyone looked at it
    viewers: set = field(default_factory=set)    # sessions that looked at it


class RunStore:
    """``put``/``get`` runs by key under ``budget_bytes``; ``nbytes(value)`` sizes a value."""

    def __init__(self, budget_bytes: int, nbytes: Callable[[object], int], *,
                 is_alive: Callable[[str], bool] = lambda session: True, clock=time.monotonic,
                 extra_bytes: Callable[[], int] = lambda: 0):
        self.budget_bytes = int(budget_bytes)
        self._extra_bytes = extra_bytes
        self._session_bytes: dict[str, int] = {}          # session -> what else it holds
        self._nbytes = nbytes
        self._is_alive = is_alive
        self._clock = clock
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._pins: dict[str, tuple[str, float]] = {}     # session -> (key, when)
        self._evicted: dict[tuple[str, str], str] = {}    # (session, key) -> why

    @property
    def total_bytes(self) -> int:
        """Runs (measured now), live sessions' other holdings, and ``extra_bytes()``."""
        with self._lock:
            return self._measure() + self._held_by_sessions() + int(self._extra_bytes())

    def set_session_bytes(self, session: str, nbytes: int) -> None:
        """What ``session`` holds besides its runs (counted while it lives)."""
        with self._lock:
            self._session_bytes[session] = int(nbytes)
            self._shrink()

    def shrink(self) -> None:
        """Keep to the budget now (after a stored run grew, e.g. by its cut-outs)."""
        with self._lock:
            self._shrink()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, session: str, key: str, pin: bool = True):
        """The run stored under ``key`` (None when absent); ``pin`` makes it the one
        ``session`` is looking at."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            now = self._clock()
            entry.used = now
            entry.viewers.add(session)
            if pin:
                self._pins[session] = (key, now)
            return entry.value

    def put(self, session: str, key: str, value, pin: bool = True) -> None:
        """Store a run (pinned by ``session`` when ``pin``), then keep to the budget."""
        with self._lock:
            now = self._clock()
            self._entries[key] = _Entry(value, int(self._nbytes(value)), now, {session})
            self._evicted.pop((session, key), None)
            if pin:
                self._pins[session] = (key, now)
            self._shrink()

    def why_missing(self, session: str, key: str) -> str | None:
        """Why ``session``'s run ``key`` is no longer stored, if it was evicted."""
        with self._lock:
            return self._evicted.get((session, key))

    # ------------------------------------------------------------ eviction
    def _pinned_keys(self) -> dict[str, float]:
        """Key -> the latest time a live session pinned it."""
        pinned = {}
        for session, (key, when) in list(self._pins.items()):
            if not self._is_alive(session):
                del self._pins[session]
                continue
            pinned[key] = max(when, pinned.get(key, when))
        return pinned

    def _measure(self) -> int:
        for entry in self._entries.values():
            entry.nbytes = int(self._nbytes(entry.value))
        return sum(e.nbytes for e in self._entries.values())

    def _held_by_sessions(self) -> int:
        for session in [s for s in self._session_bytes if not self._is_alive(s)]:
            del self._session_bytes[session]
        return sum(self._session_bytes.values())

    def _shrink(self) -> None:
        total = self._measure() + self._held_by_sessions() + int(self._extra_bytes())
        if total <= self.budget_bytes:
            return
        pinned = self._pinned_keys()

        def order(item):
            key, entry = item
            live_viewer = any(self._is_alive(s) for s in entry.viewers)
            if key in pinned:
                return (2, pinned[key])
            return (1 if live_viewer else 0, entry.used)

        for key, entry in sorted(self._entries.items(), key=order):
            if total <= self.budget_bytes:
                break
            if key in pinned:
                why = ("the server's memory for results was full with other visitors' "
                       "results, and yours had been idle longest")
            else:
                why = "you had not looked at it for a while and the server needed the memory"
            for session in entry.viewers:
                self._evicted[(session, key)] = why
            total -= entry.nbytes
            del self._entries[key]
        if len(self._evicted) > 10_000:                   # bounded bookkeeping
            for stale in list(self._evicted)[:5_000]:
                del self._evicted[stale]
