"""One retry policy for everything that talks to a network: the weights
download and the Ray Serve client.

What to retry is the caller's decision (a dropped connection, a 503); how
often, how long to wait and when to give up is decided here: at most
``attempts`` tries, waits doubling from ``backoff_s`` up to ``max_backoff_s``
(or the server's ``Retry-After`` when it names one), and, when
``deadline_s`` is set, never past that many seconds in all. The deadline also
bounds the attempt in flight: :meth:`Retrying.timeout` is the time the next
attempt may take.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["RetryPolicy", "Retrying", "parse_retry_after"]


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 10
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    deadline_s: float | None = 180.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        A server's ``Retry-After`` is honoured as given (it knows when it will
        have room); otherwise the exponential backoff applies.
        """
        if retry_after is not None:
            return max(0.0, float(retry_after))
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)

    def begin(self) -> Retrying:
        """Start counting attempts and time for one logical request."""
        return Retrying(self)


class Retrying:
    """The state of one request under a :class:`RetryPolicy`."""

    def __init__(self, policy: RetryPolicy, clock=time.monotonic, sleep=time.sleep):
        self.policy = policy
        self.attempt = 1                       # the attempt about to be (or being) made
        self._clock, self._sleep = clock, sleep
        self._deadline = (None if policy.deadline_s is None
                          else clock() + float(policy.deadline_s))

    def remaining(self) -> float | None:
        """Seconds left before the deadline (None: no deadline)."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - self._clock())

    def timeout(self, default: float) -> float:
        """How long the attempt in flight may take: ``default``, cut to the deadline."""
        left = self.remaining()
        return default if left is None else max(0.001, min(default, left))

    def next_pause(self, retry_after: float | None = None) -> float | None:
        """After a failed attempt: the seconds to wait before the next one, counting
        it as made; None when the attempts are used up or the wait would pass the
        deadline. (For callers that sleep their own way, e.g. ``asyncio.sleep``.)"""
        if self.attempt >= self.policy.attempts:
            return None
        pause = self.policy.delay(self.attempt, retry_after)
        left = self.remaining()
        if left is not None and pause >= left:
            return None
        self.attempt += 1
        return pause

    def wait(self, retry_after: float | None = None) -> bool:
        """After a failed attempt: sleep and return True if another one is allowed."""
        pause = self.next_pause(retry_after)
        if pause is None:
            return False
        self._sleep(pause)
        return True


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from an HTTP ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
