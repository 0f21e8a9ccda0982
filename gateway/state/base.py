"""The one small interface every piece of shared state goes through.

Metering, budgets, rate limits, circuit breakers, latency statistics and the eval-score store all
talk to a :class:`StateBackend`. Three implementations exist: ``memory`` (default, one process),
``sqlite`` (several processes on one machine, survives restarts) and ``redis`` (many machines).
Every multi-step operation is atomic in all three: a lock, a ``BEGIN IMMEDIATE`` transaction or a
Lua script.

Time is never read inside a backend: callers pass ``now`` (Unix seconds, from an injected clock), so
tests drive time explicitly and several hosts agree on windows as long as their clocks do.

Amounts for budgets are integers (micro-USD or tokens) so that sums are exact everywhere, Lua
included (exact up to 2**53).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, ParamSpec, Protocol, TypeVar, runtime_checkable

JSONValue = Any
"""A value that ``json.dumps`` accepts."""

BreakerStatus = Literal["closed", "open", "half_open"]
USAGE_DIMENSIONS = ("team", "key", "route", "provider", "model")

_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer of a rate limiter.

    Attributes:
        allowed: Whether the request was admitted (and its cost consumed).
        retry_after_s: When refused, seconds until the same cost would be admitted; 0 when allowed;
            ``math.inf`` when the cost exceeds the burst and can never be admitted.
        remaining: Whole units that could still be admitted right now.
    """

    allowed: bool
    retry_after_s: float
    remaining: int


@dataclass(frozen=True, slots=True)
class ReserveResult:
    """The answer of a budget reservation.

    Attributes:
        granted: Whether ``amount`` was reserved.
        used: Settled spend in the window, after the operation.
        reserved: Spend held by live reservations, after the operation.
        reclaimed: How many expired reservations this call reclaimed.
    """

    granted: bool
    used: int
    reserved: int
    reclaimed: int = 0


@dataclass(frozen=True, slots=True)
class BreakerState:
    """A circuit breaker's shared state, as returned by the breaker operations.

    Attributes:
        status: ``closed`` (calls flow), ``open`` (calls refused) or ``half_open`` (one probe).
        allowed: For :meth:`StateBackend.breaker_allow`, whether this caller may send a call.
        calls: Calls recorded in the current window.
        failures: Failures recorded in the current window.
        retry_at: When open, the time at which a probe will be allowed; otherwise 0.
    """

    status: BreakerStatus
    allowed: bool
    calls: int
    failures: int
    retry_at: float


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """One metered attempt. ``record_id`` makes appends idempotent.

    The fields after ``cost_usd`` describe the attempt for ``switchyard replay`` (its index in the
    request, duration, time to first token, outcome, the request's metadata tags); records written
    before they existed read back with their defaults.
    """

    record_id: str
    ts: float
    team: str
    key: str
    route: str
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal
    attempt: int = 0
    latency_s: float = 0.0
    ttft_s: float | None = None
    outcome: str = "ok"
    tags: tuple[tuple[str, str], ...] = ()
    policy_revision: str | None = None


@dataclass(frozen=True, slots=True)
class UsageTotal:
    """Usage summed over one group of :meth:`StateBackend.query_usage`."""

    group: tuple[tuple[str, str], ...]
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: Decimal


@runtime_checkable
class StateBackend(Protocol):
    """Atomic operations on shared state. All methods are synchronous and thread-safe.

    Keys are plain strings chosen by the caller (``"budget:team-a:2026-11"``); a backend may add its
    own prefix. ``ttl_s=None`` means the key never expires.
    """

    def incr(self, key: str, amount: float, ttl_s: float | None = None) -> float:
        """Add ``amount`` to a counter and return the new value; ``ttl_s`` is set on creation only."""
        ...

    def get_json(self, key: str) -> JSONValue | None:
        """Return the JSON value stored at ``key``, or ``None``."""
        ...

    def set_json(self, key: str, value: JSONValue, ttl_s: float | None = None) -> None:
        """Store a JSON value, replacing any previous one."""
        ...

    def ewma_observe(self, key: str, value: float, alpha: float) -> float:
        """Fold ``value`` into an exponentially weighted mean and return the new mean."""
        ...

    def rate_limit(
        self, key: str, rate_per_s: float, burst: float, cost: float, now: float, *, force: bool = False
    ) -> Decision:
        """GCRA: admit ``cost`` units if within ``rate_per_s`` with ``burst``; ``force`` always applies it."""
        ...

    def reserve(
        self,
        key: str,
        limit: int,
        amount: int,
        reservation_id: str,
        lease_s: float,
        window_end: float,
        now: float,
    ) -> ReserveResult:
        """Hold ``amount`` if ``used + reserved + amount <= limit`` after reclaiming expired leases."""
        ...

    def settle(self, key: str, reservation_id: str, actual: int, window_end: float, now: float) -> bool:
        """Replace a reservation by its actual spend; ``False`` (and no change) if already settled."""
        ...

    def release(self, key: str, reservation_id: str, now: float) -> bool:
        """Drop a live reservation without spending; ``False`` if there was none."""
        ...

    def renew(self, key: str, reservation_id: str, lease_s: float, now: float) -> bool:
        """Extend a live reservation's lease to ``now + lease_s`` (a heartbeat); ``False`` if it
        was settled, released or had already expired (it is never revived)."""
        ...

    def budget_usage(self, key: str, now: float) -> tuple[int, int]:
        """Return ``(used, reserved)`` of a budget window, counting only unexpired reservations."""
        ...

    def breaker_allow(self, key: str, now: float) -> BreakerState:
        """May a call go through? Grants exactly one probe once an open breaker's cooldown ends."""
        ...

    def breaker_record(
        self,
        key: str,
        ok: bool,
        now: float,
        window_s: float,
        min_calls: int,
        error_rate: float,
        cooldown_s: float,
        probes: int = 1,
    ) -> BreakerState:
        """Record a call's outcome; opens the breaker at ``error_rate`` once ``min_calls`` are seen.
        Half-open, ``probes`` successful probes in a row close it (one probe in flight at a time)."""
        ...

    def append_usage(self, records: Sequence[UsageRecord]) -> None:
        """Append usage records; a record whose ``record_id`` is already stored is ignored."""
        ...

    def query_usage(
        self, since: float, group_by: Sequence[str] = (), until: float | None = None
    ) -> list[UsageTotal]:
        """Sum usage with ``since <= ts < until`` grouped by dimensions of ``USAGE_DIMENSIONS``."""
        ...

    def usage_records(self, since: float, until: float | None = None) -> list[UsageRecord]:
        """The stored usage records with ``since <= ts < until``, in no particular order."""
        ...

    def prune_usage(self, before: float) -> int:
        """Delete usage records with ``ts < before`` (retention); return how many were deleted."""
        ...

    def put_eval(self, eval_set: str, model: str, record: Mapping[str, JSONValue]) -> None:
        """Store the latest eval result of ``model`` on ``eval_set``."""
        ...

    def latest_eval(self, eval_set: str, model: str) -> dict[str, JSONValue] | None:
        """Return the latest eval result of ``model`` on ``eval_set``, or ``None``."""
        ...

    def close(self) -> None:
        """Release connections; the backend is unusable afterwards."""
        ...


class AsyncStateBackend:
    """Async view of a :class:`StateBackend`: each call runs in a worker thread, off the event loop.

    Example:
        >>> import asyncio
        >>> from gateway.state.memory import MemoryBackend
        >>> asyncio.run(AsyncStateBackend(MemoryBackend()).incr("hits", 2))
        2.0
    """

    def __init__(self, backend: StateBackend) -> None:
        self.sync = backend

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.sync, name)
        if not callable(method):
            raise AttributeError(name)
        return _off_loop(method)


def _off_loop(method: Callable[_P, _T]) -> Callable[_P, Any]:
    @functools.wraps(method)
    async def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await asyncio.to_thread(method, *args, **kwargs)

    return call


def eval_key(eval_set: str, model: str) -> str:
    """The key under which the latest eval of ``model`` on ``eval_set`` is stored."""
    return f"eval:{eval_set}:{model}"


def sum_usage(records: Sequence[UsageRecord], group_by: Sequence[str]) -> list[UsageTotal]:
    """Group and sum usage records (shared by every backend, so totals are identical)."""
    unknown = [d for d in group_by if d not in USAGE_DIMENSIONS]
    if unknown:
        raise ValueError(f"cannot group usage by {unknown}; choose from {list(USAGE_DIMENSIONS)}")
    sums: dict[tuple[tuple[str, str], ...], list[Any]] = {}
    for record in records:
        group = tuple((d, str(getattr(record, d))) for d in group_by)
        acc = sums.setdefault(group, [0, 0, 0, Decimal(0)])
        acc[0] += 1
        acc[1] += record.prompt_tokens
        acc[2] += record.completion_tokens
        acc[3] += record.cost_usd
    return [UsageTotal(g, a[0], a[1], a[2], a[3]) for g, a in sorted(sums.items())]
