"""Timeouts of one request: connect, read, first token, stream idle, and a total deadline.

The total deadline covers every retry, every backoff sleep and every fallback of one request: each
attempt's httpx timeout is capped by what is left, a sleep that would outlast it is not taken, and
the asyncio loop also wraps each attempt in ``asyncio.timeout`` so the request ends within a few
milliseconds of the deadline however the upstream trickles.

How each timeout is applied:

| timeout         | asyncio client                              | blocking client                        |
| --------------- | ------------------------------------------- | -------------------------------------- |
| ``connect_s``   | httpx connect timeout                       | httpx connect timeout                  |
| ``read_s``      | httpx read timeout (each socket read)       | httpx read timeout (each socket read)  |
| ``first_token_s`` | from the attempt's start to the first content chunk | each socket read until content, via httpx |
| ``stream_idle_s`` | between two chunks after the first        | each socket read, via httpx            |
| ``total_s``     | ``asyncio.timeout`` around every attempt    | every httpx timeout capped by what is left, and checked between chunks |

The blocking client cannot change a socket's timeout in the middle of an httpx read, so for a stream
it applies the smallest of ``read_s``, ``first_token_s``, ``stream_idle_s`` and the time left to every
read; the asyncio client applies each one exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """A route's (or call's) timeouts in seconds; ``None`` leaves the client's httpx timeout in place.

    Raises:
        ValueError: A timeout is not a positive finite number, or the total deadline is shorter
            than the connect timeout (no attempt could ever connect in time).
    """

    connect_s: float | None = None
    read_s: float | None = None
    first_token_s: float | None = None
    stream_idle_s: float | None = None
    total_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("connect_s", "read_s", "first_token_s", "stream_idle_s", "total_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"Timeouts.{name} must be a positive number of seconds, got {value!r}")
        if self.total_s is not None and self.connect_s is not None and self.total_s < self.connect_s:
            raise ValueError(
                f"Timeouts.total_s ({self.total_s}) is shorter than connect_s ({self.connect_s}): "
                "raise total_s or lower connect_s"
            )


_NO_TIMEOUTS = Timeouts()


class Deadline:
    """The moment one request must be over by (monotonic clock), or none."""

    __slots__ = ("clock", "expires_at")

    def __init__(self, total_s: float | None, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.expires_at = None if total_s is None else clock() + total_s

    def remaining(self) -> float | None:
        """Seconds left (never negative), or ``None`` without a deadline."""
        if self.expires_at is None:
            return None
        return max(0.0, self.expires_at - self.clock())

    def expired(self) -> bool:
        return self.expires_at is not None and self.clock() >= self.expires_at

    def allows_sleep(self, seconds: float) -> bool:
        """Whether sleeping ``seconds`` still leaves time for another attempt."""
        left = self.remaining()
        return left is None or seconds < left


def _smallest(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return min(present) if present else None


def attempt_timeout(
    base: Any, timeouts: Timeouts | None, deadline: Deadline, *, stream: bool, sync: bool
) -> Any:
    """The httpx timeout for one attempt: the client's or call's, overridden by the route's, capped by the deadline.

    Without route timeouts and without a deadline, ``base`` is returned unchanged (the openai SDK's
    behaviour: ``None`` means no timeout).
    """
    left = deadline.remaining()
    if timeouts is None and left is None:
        return base
    if isinstance(base, Mapping):
        connect, read, write, pool = (base.get(k) for k in ("connect", "read", "write", "pool"))
    elif hasattr(base, "as_dict"):  # an httpx or httpx2 Timeout
        connect, read, write, pool = base.connect, base.read, base.write, base.pool
    else:
        connect = read = write = pool = base
    t = timeouts or _NO_TIMEOUTS
    if t.connect_s is not None:
        connect = t.connect_s
    if t.read_s is not None:
        read = t.read_s
    if stream and sync:
        read = _smallest(read, t.first_token_s, t.stream_idle_s)
    return {
        "connect": _cap(connect, left),
        "read": _cap(read, left),
        "write": _cap(write, left),
        "pool": _cap(pool, left),
    }


def _cap(value: float | None, left: float | None) -> float | None:
    if left is None:
        return value
    return left if value is None or value > left else value


def chunk_wait(
    timeouts: Timeouts | None, deadline: Deadline, *, has_content: bool, started: float, now: float
) -> float | None:
    """How long the asyncio loop waits for the next piece of a stream (``None``: no limit).

    Before the first content chunk the first-token timeout counts from the attempt's start; after
    it, the idle timeout counts from now. Either way the total deadline caps it.
    """
    left = deadline.remaining()
    if timeouts is None:
        return left
    if not has_content and timeouts.first_token_s is not None:
        limit: float | None = max(0.0, started + timeouts.first_token_s - now)
    else:
        limit = timeouts.stream_idle_s
    return _smallest(limit, left)
