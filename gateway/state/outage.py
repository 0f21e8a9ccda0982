"""Riding out a state outage: process-local state per concern, then reconciliation.

``DegradingBackend`` wraps a shared backend (Redis, SQLite). While the shared backend answers, it
is a pass-through. When it raises :class:`~gateway.state.errors.StateBackendUnavailableError`, each
call goes by its **concern** (``budgets``, ``rate_limits``, ``breakers``, ``live_stats``):

- an *admission* call (``reserve``, ``rate_limit``, ``breaker_allow``, ``budget_usage``, reads)
  of a concern that fails open is answered by a process-local :class:`MemoryBackend`, with a
  warning (once per outage and concern, then at most every ``WARN_EVERY_S``) and a count in the
  ``switchyard.state.fallbacks`` metric; a concern that fails closed raises the typed error;
- an *accounting* call (``settle``, ``release``, a forced ``rate_limit`` correction,
  ``breaker_record``, ``ewma_observe``, ``incr``, ``set_json``) never raises for an outage, whatever
  the concern's setting: it records what already happened. A reply the upstream served is never
  thrown away because the state backend died while it was in flight.

Reconciliation: settlements and rate-limit charges taken locally are journalled and replayed on
the shared backend by the first call that finds it back, before that call's own work: settlements
under their own reservation ids (idempotent, so one the shared backend already applied before it
went silent changes nothing), rate-limit charges with their own timestamps (GCRA then counts them
as of when they happened). Local breaker state and live statistics are dropped (the shared state
takes over again). The journal is bounded (``MAX_JOURNAL``); beyond it the oldest entries are
dropped, counted and logged.

How far a budget that fails open can overspend during an outage: each process admits against a
local copy of each window seeded with what it last saw there (spend plus holds), so it may spend
at most the room it last saw; a process that had not seen a window since it started may spend the
whole limit. With ``N`` processes the overspend is bounded by ``N`` times that room. Budgets fail
closed by default for this reason.

Start-up: with ``primary`` given as a factory, an unreachable backend does not stop the client;
the factory is retried like any other call, every ``retry_interval_s``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, cast

from gateway.state.base import StateBackend
from gateway.state.errors import StateBackendUnavailableError
from gateway.state.memory import MemoryBackend

__all__ = ["CONCERNS", "Concern", "DegradingBackend", "FailOpen", "OutageStats"]

logger = logging.getLogger("gateway.state")

Concern = Literal["budgets", "rate_limits", "breakers", "live_stats"]
CONCERNS: tuple[Concern, ...] = ("budgets", "rate_limits", "breakers", "live_stats")
WARN_EVERY_S = 10.0
DEFAULT_RETRY_INTERVAL_S = 0.5
MAX_JOURNAL = 100_000

# method -> (concern, accounting); accounting calls never raise for an outage
_ROUTES: dict[str, tuple[Concern, bool]] = {
    "reserve": ("budgets", False),
    "budget_usage": ("budgets", False),
    "settle": ("budgets", True),
    "release": ("budgets", True),
    "renew": ("budgets", True),
    "rate_limit": ("rate_limits", False),
    "breaker_allow": ("breakers", False),
    "breaker_record": ("breakers", True),
    "get_json": ("live_stats", False),
    "set_json": ("live_stats", True),
    "incr": ("live_stats", True),
    "ewma_observe": ("live_stats", True),
}


@dataclass(frozen=True, slots=True)
class FailOpen:
    """Which concerns carry on with process-local state while the shared backend is unreachable.

    Budgets guard money and fail closed unless named; the others fail open by default.

    Example:
        >>> FailOpen.of(False)
        FailOpen(budgets=False, rate_limits=False, breakers=False, live_stats=False)
        >>> FailOpen.of({"budgets": True}).budgets
        True
    """

    budgets: bool = False
    rate_limits: bool = True
    breakers: bool = True
    live_stats: bool = True

    @classmethod
    def of(cls, setting: bool | Mapping[str, bool] | Any) -> FailOpen:
        """From a policy's ``state.fail_open``: a bool sets every concern but budgets; a mapping
        (or an object with the concerns as attributes) sets the concerns it names."""
        if isinstance(setting, FailOpen):
            return setting
        if isinstance(setting, bool):
            return cls(False, setting, setting, setting)
        if not isinstance(setting, Mapping):
            setting = {name: getattr(setting, name) for name in CONCERNS if hasattr(setting, name)}
        unknown = sorted(set(setting) - set(CONCERNS))
        if unknown:
            raise ValueError(f"fail_open: unknown concern(s) {unknown}; choose from {list(CONCERNS)}")
        return cls(**{name: bool(value) for name, value in setting.items() if value is not None})

    def allows(self, concern: Concern) -> bool:
        return bool(getattr(self, concern))

    def __iter__(self) -> Any:
        return iter((f.name, getattr(self, f.name)) for f in fields(self))


@dataclass(frozen=True, slots=True)
class OutageStats:
    """What a ``DegradingBackend`` did.

    Attributes:
        degraded: Whether the shared backend is considered down now.
        fallbacks: Calls answered locally, per concern.
        refused: Calls that raised because their concern fails closed, per concern.
        replayed: Journalled settlements and charges written to the shared backend.
        pending: Journalled entries not yet replayed.
        dropped: Journal entries dropped because the journal was full.
        outages: How many times the shared backend was found down after being up.
    """

    degraded: bool
    fallbacks: dict[str, int]
    refused: dict[str, int]
    replayed: int
    pending: int
    dropped: int
    outages: int


@dataclass(slots=True)
class _Seen:
    """The last figures the shared backend gave for one budget window."""

    taken: int  # used + reserved
    window_end: float


@dataclass(slots=True)
class _Counters:
    fallbacks: collections.Counter[str] = field(default_factory=collections.Counter)
    refused: collections.Counter[str] = field(default_factory=collections.Counter)
    replayed: int = 0
    dropped: int = 0
    outages: int = 0


class DegradingBackend:
    """A :class:`StateBackend` that falls back to process-local state per concern (module docstring).

    Args:
        primary: The shared backend, or a factory that opens it (retried while it fails).
        fail_open: Which concerns carry on locally (``FailOpen``, a bool or a mapping).
        retry_interval_s: After a failure, calls go straight to local state for this long.
        clock: Unix time, for the local backend's TTLs and the replays.
        monotonic: The clock of ``retry_interval_s`` and of the warnings.
        description: How the shared backend is named in warnings and errors (no password).
        meter_provider: Where the ``switchyard.state.fallbacks`` counter goes; the global
            OpenTelemetry provider when ``None``.
        async_primary: The shared backend's async twin (``aio.AsyncRedisBackend``), used by
            :meth:`acall`; without one, ``acall`` runs the blocking call in a worker thread.
    """

    def __init__(
        self,
        primary: StateBackend | Callable[[], StateBackend],
        fail_open: FailOpen | bool | Mapping[str, bool] = True,
        *,
        retry_interval_s: float = DEFAULT_RETRY_INTERVAL_S,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        description: str | None = None,
        meter_provider: Any = None,
        async_primary: Any = None,
    ) -> None:
        self.fail_open = FailOpen.of(fail_open)
        self._factory: Callable[[], StateBackend] | None = None
        self._primary: StateBackend | None = None
        if callable(primary) and not hasattr(primary, "reserve"):
            self._factory = primary
        else:
            self._primary = cast(StateBackend, primary)
        self._description = description or (
            repr(primary) if self._primary is not None else "the state backend"
        )
        self._meter_provider = meter_provider
        self._async_primary = async_primary
        self._retry_interval_s = retry_interval_s
        self._clock, self._monotonic = clock, monotonic
        self._lock = threading.RLock()
        self._local = MemoryBackend(clock=clock)
        self._journal: collections.deque[tuple[str, tuple[Any, ...]]] = collections.deque()
        self._seen: dict[str, _Seen] = {}
        self._seeded: set[str] = set()
        self._down_until = -math.inf
        self._degraded = False
        self._warned: dict[str, float] = {}
        self._counters = _Counters()
        self._metric: Any = None
        if self._factory is not None:
            self._open()

    def __repr__(self) -> str:
        return f"DegradingBackend({self._description!r})"

    @property
    def primary(self) -> StateBackend | None:
        """The shared backend, once it could be opened."""
        return self._primary

    # --- routing ---------------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        """Methods without a concern (usage, evals, ``close``) go to the shared backend as they are."""
        if name.startswith("_"):
            raise AttributeError(name)
        primary = self._primary if self._primary is not None else self._open()
        if primary is None:
            raise StateBackendUnavailableError(
                f"{self._description} could not be opened; {name} needs it", url=self._description
            )
        return getattr(primary, name)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        primary = self._reachable()
        if primary is not None:
            try:
                result = getattr(primary, method)(*args, **kwargs)
            except StateBackendUnavailableError as exc:
                self._went_down(exc)
            else:
                self._answered(primary, method, args, result)
                return result
        return self._fallback(method, args, kwargs)

    async def acall(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """The operation ``method`` awaited: ``redis.asyncio`` when an async twin of the shared
        backend was given, else the blocking call in a worker thread; never blocks the loop."""
        twin = self._async_primary
        if twin is None or not hasattr(twin, method):
            return await asyncio.to_thread(getattr(self, method), *args, **kwargs)
        if self._monotonic() >= self._down_until:
            try:
                result = await getattr(twin, method)(*args, **kwargs)
            except StateBackendUnavailableError as exc:
                self._went_down(exc)
            else:
                if self._degraded or self._journal:  # reconcile with the blocking twin, off the loop
                    await asyncio.to_thread(self._back, method, args, result)
                elif method == "reserve" and len(args) == 7:
                    self._remember(args, result)
                return result
        return self._fallback(method, args, kwargs)  # process-local: no I/O

    def _back(self, method: str, args: tuple[Any, ...], result: Any) -> None:
        primary = self._primary if self._primary is not None else self._open()
        if primary is not None:
            self._answered(primary, method, args, result)

    def _answered(self, primary: StateBackend, method: str, args: tuple[Any, ...], result: Any) -> None:
        if method == "reserve" and len(args) == 7:
            self._remember(args, result)
        if self._degraded or self._journal:  # it answered: it is back
            try:
                self._reconcile(primary)
            except StateBackendUnavailableError as exc:
                self._went_down(exc)

    def _fallback(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        concern, accounting = _ROUTES[method]
        if method == "rate_limit" and kwargs.get("force"):
            accounting = True
        if not (accounting or self.fail_open.allows(concern)):
            with self._lock:
                self._counters.refused[concern] += 1
            raise StateBackendUnavailableError(
                f"{self._description} is unreachable and {concern} fail closed (state.fail_open."
                f"{concern}: false); set it to true to carry on with process-local {concern}",
                url=self._description,
            )
        return self._local_call(concern, method, args, kwargs)

    def _reachable(self) -> StateBackend | None:
        """The shared backend, unless it failed less than ``retry_interval_s`` ago."""
        if self._monotonic() < self._down_until:
            return None
        return self._primary if self._primary is not None else self._open()

    def _open(self) -> StateBackend | None:
        if self._factory is None:
            return self._primary
        with self._lock:
            if self._primary is not None:
                return self._primary
            if self._monotonic() < self._down_until:
                return None
            try:
                self._primary = self._factory()
            except StateBackendUnavailableError as exc:
                self._went_down(exc)
                return None
            return self._primary

    def _went_down(self, exc: StateBackendUnavailableError) -> None:
        with self._lock:
            self._down_until = self._monotonic() + self._retry_interval_s
            if not self._degraded:
                self._degraded = True
                self._counters.outages += 1
                logger.warning("state backend unavailable, using process-local state where allowed: %s", exc)

    def _local_call(
        self, concern: Concern, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        with self._lock:
            self._count_fallback(concern)
            if method in ("reserve", "budget_usage"):
                self._seed(args[0], args[-1])
            result = getattr(self._local, method)(*args, **kwargs)
            if method == "settle" or (method == "rate_limit" and result.allowed):
                self._journal_append(method, args, kwargs)
            return result

    # --- local state and its journal --------------------------------------------------------------

    def _remember(self, args: tuple[Any, ...], result: Any) -> None:
        key, window_end = args[0], args[5]
        with self._lock:
            self._seen[key] = _Seen(int(result.used) + int(result.reserved), float(window_end))

    def _seed(self, key: str, now: float) -> None:
        """Start a local window from what the shared one held when last seen (never seeded twice)."""
        seen = self._seen.get(key)
        if key in self._seeded or seen is None or seen.window_end <= now:
            return
        self._seeded.add(key)
        self._local.settle(key, f"seed:{key}", seen.taken, seen.window_end, now)

    def _journal_append(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if method == "rate_limit":
            key, rate, burst, cost, now = args
            entry: tuple[Any, ...] = (key, rate, burst, cost, now)
        else:
            entry = args
        self._journal.append((method, entry))
        if len(self._journal) > MAX_JOURNAL:
            self._journal.popleft()
            self._counters.dropped += 1
            if self._counters.dropped == 1 or self._counters.dropped % 1000 == 0:
                logger.error(
                    "state outage journal full (%d entries): %d oldest settlements/charges dropped; "
                    "they will be missing from the shared budgets and rate limits",
                    MAX_JOURNAL,
                    self._counters.dropped,
                )

    def _reconcile(self, primary: StateBackend) -> None:
        """Replay the journal on the shared backend, oldest first; stop (keeping the rest) on failure."""
        with self._lock:
            while self._journal:
                method, entry = self._journal[0]
                if method == "settle":
                    primary.settle(*entry)
                else:
                    key, rate, burst, cost, then = entry
                    primary.rate_limit(key, rate, burst, cost, then, force=True)
                self._journal.popleft()
                self._counters.replayed += 1
            if self._degraded:
                self._degraded = False
                self._local = MemoryBackend(clock=self._clock)  # shared state takes over again
                self._seeded.clear()
                self._warned.clear()
                logger.warning(
                    "state backend reachable again: %d local settlements and charges reconciled",
                    self._counters.replayed,
                )

    def _count_fallback(self, concern: Concern) -> None:
        self._counters.fallbacks[concern] += 1
        now = self._monotonic()
        if now - self._warned.get(concern, -math.inf) >= WARN_EVERY_S:
            self._warned[concern] = now
            mode = "fail_open" if self.fail_open.allows(concern) else "recording only"
            logger.warning(
                "%s is unreachable: %s kept in process-local state (%s) until it is back; %d calls so far",
                self._description,
                concern,
                mode,
                self._counters.fallbacks[concern],
            )
        if self._metric is None:
            from opentelemetry import metrics

            provider = self._meter_provider or metrics.get_meter_provider()
            self._metric = provider.get_meter("switchyard").create_counter(
                "switchyard.state.fallbacks",
                unit="{call}",
                description="State calls answered by process-local state during a state outage",
            )
        self._metric.add(1, {"switchyard.state.concern": concern})

    def stats(self) -> OutageStats:
        with self._lock:
            c = self._counters
            return OutageStats(
                self._degraded, dict(c.fallbacks), dict(c.refused), c.replayed, len(self._journal), c.dropped,
                c.outages,
            )  # fmt: skip

    # --- the StateBackend operations with a concern ---------------------------------------------

    def reserve(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("reserve", *args, **kwargs)

    def settle(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("settle", *args, **kwargs)

    def release(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("release", *args, **kwargs)

    def renew(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("renew", *args, **kwargs)

    def budget_usage(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("budget_usage", *args, **kwargs)

    def rate_limit(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("rate_limit", *args, **kwargs)

    def breaker_allow(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("breaker_allow", *args, **kwargs)

    def breaker_record(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("breaker_record", *args, **kwargs)

    def get_json(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("get_json", *args, **kwargs)

    def set_json(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("set_json", *args, **kwargs)

    def incr(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("incr", *args, **kwargs)

    def ewma_observe(self, *args: Any, **kwargs: Any) -> Any:
        return self._call("ewma_observe", *args, **kwargs)

    async def aclose(self) -> None:
        """Close the running loop's connections of the async twin (they reopen if used again)."""
        if self._async_primary is not None:
            await self._async_primary.aclose()

    def close(self) -> None:
        """Replay what can be replayed, then close the shared backend."""
        primary = self._primary
        if primary is None:
            return
        if self._journal:
            try:
                self._reconcile(primary)
            except StateBackendUnavailableError:
                logger.error(
                    "closing with %d settlements/charges not reconciled: %s is unreachable",
                    len(self._journal),
                    self._description,
                )
        primary.close()
