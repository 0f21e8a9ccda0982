"""Circuit breakers per deployment, their state in the shared ``StateBackend``.

```
closed --(error rate >= error_rate over window_s, at least min_calls calls)--> open
open --(cooldown over: exactly one caller is granted a probe)--> half_open
half_open --(half_open_probes probes succeed, one at a time)--> closed        (cooldown back to cooldown_s)
half_open --(probe fails)--> open             (cooldown x cooldown_factor, up to max_cooldown_s)
```

The state lives in the backend (``breaker_allow``/``breaker_record``, atomic in memory, SQLite and
Redis), so every process that shares a Redis sees one breaker per deployment. Time comes from the
injected ``clock`` (Unix seconds). Only deployment faults count (429, 5xx, timeouts, connection
errors, malformed answers, auth failures); a bad request says nothing about the deployment's health.

Settings are per deployment: ``Breakers(backend, default, per_deployment=...)`` takes a mapping
from candidate name to ``BreakerSettings`` (or a callable returning the current one, so a
hot-reloaded policy applies at the next attempt); ``gateway/runtime.py`` builds it from each
model's ``breaker:`` section (``breaker_settings``). Names not in it use the default.

``open_breakers()`` is what the router reads (``LiveStats(breakers=breakers.open_breakers)``): the
deployments this process last saw refusing calls, each with why, until their cooldown ends; the
executor's ``allow`` before every attempt remains the authority, and is what grants the probe.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from gateway.state.aio import call_async
from gateway.state.base import BreakerState, StateBackend
from gateway.state.memory import MemoryBackend

if TYPE_CHECKING:
    from gateway.policy.schema import Policy

logger = logging.getLogger("gateway.resilience")


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    """When a deployment's breaker opens and how long it stays open.

    Raises:
        ValueError: A setting out of range (the message names it).
    """

    window_s: float = 60.0
    min_calls: int = 10
    error_rate: float = 0.5
    cooldown_s: float = 30.0
    cooldown_factor: float = 2.0
    max_cooldown_s: float = 600.0
    half_open_probes: int = 1  # successful probes in a row, one at a time, that close it again

    def __post_init__(self) -> None:
        checks = {
            "window_s": self.window_s > 0,
            "min_calls": self.min_calls >= 1,
            "error_rate": 0 < self.error_rate <= 1,
            "cooldown_s": self.cooldown_s > 0,
            "cooldown_factor": self.cooldown_factor >= 1,
            "max_cooldown_s": self.max_cooldown_s >= self.cooldown_s,
            "half_open_probes": self.half_open_probes >= 1,
        }
        for name, ok in checks.items():
            value = getattr(self, name)
            if not ok or not math.isfinite(value):
                raise ValueError(f"BreakerSettings.{name} is out of range: {value!r}")


@dataclass(frozen=True, slots=True)
class BreakerDecision:
    """Whether one attempt may go to a deployment; ``probe`` when it is the half-open probe."""

    allowed: bool
    probe: bool = False
    reason: str = ""


_CLOSED = BreakerDecision(True)

PerDeployment: TypeAlias = Mapping[str, BreakerSettings] | Callable[[], Mapping[str, BreakerSettings]]


class Breakers:
    """The breakers of every deployment, keyed by candidate name, over one state backend.

    Example:
        >>> from gateway.state.memory import MemoryBackend
        >>> now = [1000.0]
        >>> breakers = Breakers(MemoryBackend(), BreakerSettings(min_calls=2), clock=lambda: now[0])
        >>> for _ in range(2):
        ...     _ = breakers.record("gpt", ok=False)
        >>> breakers.allow("gpt").allowed, sorted(breakers.open_breakers())
        (False, ['gpt'])
    """

    def __init__(
        self,
        backend: StateBackend,
        settings: BreakerSettings = BreakerSettings(),
        *,
        clock: Callable[[], float] = time.time,
        namespace: str = "",
        per_deployment: PerDeployment | None = None,
    ) -> None:
        self.backend = backend
        self.settings = settings
        self.per_deployment = per_deployment
        self.clock = clock
        self.namespace = namespace
        self._seen: dict[str, BreakerState] = {}
        self._probe_cooldown: dict[str, float] = {}

    def settings_for(self, name: str) -> BreakerSettings:
        """The settings of deployment ``name``: its own when it has some, else the default."""
        table = self.per_deployment
        if table is None:
            return self.settings
        found = (table() if callable(table) else table).get(name)
        return self.settings if found is None else found

    def allow(self, name: str) -> BreakerDecision:
        """Ask before an attempt; grants the single half-open probe once a cooldown is over."""
        now = self.clock()
        return self._decide(name, self.backend.breaker_allow(self.namespace + name, now), now)

    async def aallow(self, name: str) -> BreakerDecision:
        """:meth:`allow` from an event loop, which it never blocks (``redis.asyncio`` for Redis)."""
        now = self.clock()
        return self._decide(
            name, await call_async(self.backend, "breaker_allow", self.namespace + name, now), now
        )

    def _decide(self, name: str, state: BreakerState, now: float) -> BreakerDecision:
        self._seen[name] = state
        if state.status == "closed":
            return _CLOSED
        if state.allowed:
            self._probe_cooldown[name] = max(state.retry_at - now, self.settings_for(name).cooldown_s)
            return BreakerDecision(True, probe=True, reason="half-open probe")
        return BreakerDecision(False, reason=_reason(state, now))

    def record(self, name: str, ok: bool, *, probe: bool = False) -> BreakerState:
        """Report an attempt's outcome; a failed probe reopens with a longer cooldown."""
        state = self.backend.breaker_record(*self._record_args(name, ok, probe))
        self._seen[name] = state
        return state

    async def arecord(self, name: str, ok: bool, *, probe: bool = False) -> BreakerState:
        """:meth:`record` from an event loop, which it never blocks."""
        state: BreakerState = await call_async(
            self.backend, "breaker_record", *self._record_args(name, ok, probe)
        )
        self._seen[name] = state
        return state

    @property
    def blocking(self) -> bool:
        """Whether a call may wait on I/O (any backend but the in-memory one)."""
        return not isinstance(self.backend, MemoryBackend)

    def _record_args(self, name: str, ok: bool, probe: bool) -> tuple[Any, ...]:
        settings = self.settings_for(name)
        cooldown = settings.cooldown_s
        if probe:
            previous = self._probe_cooldown.pop(name, settings.cooldown_s)
            cooldown = cooldown if ok else min(previous * settings.cooldown_factor, settings.max_cooldown_s)
        key = self.namespace + name
        return (
            key, ok, self.clock(), settings.window_s, settings.min_calls, settings.error_rate, cooldown,
            settings.half_open_probes,
        )  # fmt: skip

    def open_breakers(self) -> dict[str, str]:
        """Deployments refusing calls now, each with why, as this process last saw them."""
        now = self.clock()
        return {
            name: _reason(state, now)
            for name, state in list(self._seen.items())
            if state.status != "closed" and now < state.retry_at
        }


def _reason(state: BreakerState, now: float) -> str:
    wait = max(0.0, state.retry_at - now)
    if state.status == "half_open":
        return f"circuit breaker half-open: a probe is in flight, next one in {wait:.1f}s"
    return (
        f"circuit breaker open after {state.failures} failures in {state.calls} calls; probe in {wait:.1f}s"
    )


def policy_breakers(policy: Policy) -> dict[str, BreakerSettings]:
    """Each model's ``breaker:`` section as ``BreakerSettings``; models without one are left out.

    A ``cooldown_s`` above the default ``max_cooldown_s`` raises the cap to it when the section
    does not set one, so ``breaker: {cooldown_s: 900}`` means what it says.

    Raises:
        ValueError: ``max_cooldown_s`` set below ``cooldown_s`` (the message names the field).
    """
    table: dict[str, BreakerSettings] = {}
    for name, entry in policy.models.items():
        section = entry.breaker
        if section is None:
            continue
        fields = section.model_dump()
        if "max_cooldown_s" not in section.model_fields_set:
            fields["max_cooldown_s"] = max(fields["max_cooldown_s"], fields["cooldown_s"])
        elif fields["max_cooldown_s"] < fields["cooldown_s"]:
            raise ValueError(
                f"models.{name}.breaker.max_cooldown_s ({fields['max_cooldown_s']}) is below "
                f"cooldown_s ({fields['cooldown_s']}): raise max_cooldown_s or lower cooldown_s"
            )
        table[name] = BreakerSettings(**fields)
    return table


class PolicyBreakerSettings:
    """``per_deployment`` for ``Breakers`` read from the policy in force (``Policy`` or a callable).

    The table is rebuilt only when the policy object changes (a hot reload); a reloaded policy
    whose breaker sections are inconsistent keeps the previous table and logs why.
    """

    def __init__(self, source: Policy | Callable[[], Policy]) -> None:
        self._source: Any = source
        self._policy: Policy | None = None
        self._table: dict[str, BreakerSettings] = {}
        self()  # the first policy's errors surface when the client is built

    def __call__(self) -> Mapping[str, BreakerSettings]:
        policy = self._source() if callable(self._source) else self._source
        if policy is self._policy:
            return self._table
        first = self._policy is None
        self._policy = policy
        try:
            self._table = policy_breakers(policy)
        except ValueError as exc:
            if first:
                raise
            logger.warning("policy reload: keeping the previous breaker settings: %s", exc)
        return self._table
