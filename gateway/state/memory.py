"""In-memory state backend: the default, for one process. Thread-safe through a single lock."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.state import _logic
from gateway.state.base import (
    BreakerState,
    Decision,
    JSONValue,
    ReserveResult,
    UsageRecord,
    UsageTotal,
    eval_key,
    sum_usage,
)

_SWEEP_EVERY = 1000  # writes between sweeps of expired keys


@dataclass(slots=True)
class _Window:
    """One budget window: settled spend, live reservations (id -> (amount, expiry)), settled ids."""

    window_end: float
    used: int = 0
    live: dict[str, tuple[int, float]] = field(default_factory=dict)
    settled: set[str] = field(default_factory=set)

    def reserved(self) -> int:
        return sum(amount for amount, _ in self.live.values())


class MemoryBackend:
    """A :class:`~gateway.state.base.StateBackend` held in this process's memory.

    Args:
        clock: Returns the current Unix time; only used to expire keys with a TTL.

    Example:
        >>> backend = MemoryBackend()
        >>> backend.incr("requests", 1)
        1.0
    """

    def __init__(self, *, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or time.time
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {}
        self._expiry: dict[str, float] = {}
        self._windows: dict[str, _Window] = {}
        self._usage: dict[str, UsageRecord] = {}
        self._breakers: dict[str, dict[str, Any]] = {}
        self._writes = 0

    def __repr__(self) -> str:
        return "MemoryBackend()"

    def _get(self, key: str) -> Any:
        expires = self._expiry.get(key)
        if expires is not None and expires <= self._clock():
            del self._expiry[key]
            self._values.pop(key, None)
        return self._values.get(key)

    def _put(self, key: str, value: Any, ttl_s: float | None) -> None:
        self._values[key] = value
        if ttl_s is None:
            self._expiry.pop(key, None)
        else:
            self._expiry[key] = self._clock() + ttl_s
        self._writes += 1
        if self._writes % _SWEEP_EVERY == 0:  # keys nobody reads again (an idle API key's limit)
            now = self._clock()
            for old in [k for k, expires in self._expiry.items() if expires <= now]:
                del self._expiry[old]
                self._values.pop(old, None)

    def incr(self, key: str, amount: float, ttl_s: float | None = None) -> float:
        with self._lock:
            old = self._get(key)
            if old is None:
                self._put(key, float(amount), ttl_s)
            else:
                self._values[key] = old + amount
            return float(self._values[key])

    def get_json(self, key: str) -> JSONValue | None:
        with self._lock:
            value = self._get(key)
        # JSON values are kept as text; counters and means as numbers, which read back as themselves.
        return json.loads(value) if isinstance(value, str) else value

    def set_json(self, key: str, value: JSONValue, ttl_s: float | None = None) -> None:
        text = json.dumps(value)  # stored as text so callers never share a mutable object with us
        with self._lock:
            self._put(key, text, ttl_s)

    def ewma_observe(self, key: str, value: float, alpha: float) -> float:
        with self._lock:
            mean = _logic.ewma(self._get(key), value, alpha)
            self._put(key, mean, None)
            return mean

    def rate_limit(
        self, key: str, rate_per_s: float, burst: float, cost: float, now: float, *, force: bool = False
    ) -> Decision:
        with self._lock:
            new_tat, decision = _logic.gcra(self._get(key), now, rate_per_s, burst, cost, force)
            if new_tat is not None:
                self._put(key, new_tat, _logic.gcra_ttl(new_tat, now))
            return decision

    def _window(self, key: str, window_end: float, now: float) -> _Window:
        window = self._windows.get(key)
        if window is None or window.window_end <= now:
            # Windows are keyed by their start, so ended ones are garbage: drop them here, rarely.
            for old in [k for k, w in self._windows.items() if w.window_end <= now]:
                del self._windows[old]
            window = self._windows[key] = _Window(window_end)
        return window

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
        with self._lock:
            window = self._window(key, window_end, now)
            expired = [rid for rid, (_, expiry) in window.live.items() if expiry <= now]
            for rid in expired:
                del window.live[rid]
            if reservation_id in window.live or reservation_id in window.settled:
                return ReserveResult(True, window.used, window.reserved(), len(expired))
            reserved = window.reserved()
            if window.used + reserved + amount > limit:
                return ReserveResult(False, window.used, reserved, len(expired))
            window.live[reservation_id] = (amount, now + lease_s)
            return ReserveResult(True, window.used, reserved + amount, len(expired))

    def settle(self, key: str, reservation_id: str, actual: int, window_end: float, now: float) -> bool:
        with self._lock:
            window = self._window(key, window_end, now)
            if reservation_id in window.settled:
                return False
            window.live.pop(reservation_id, None)
            window.settled.add(reservation_id)
            window.used += actual
            return True

    def release(self, key: str, reservation_id: str, now: float) -> bool:
        with self._lock:
            window = self._windows.get(key)
            return window is not None and window.live.pop(reservation_id, None) is not None

    def renew(self, key: str, reservation_id: str, lease_s: float, now: float) -> bool:
        with self._lock:
            window = self._windows.get(key)
            held = window.live.get(reservation_id) if window is not None else None
            if window is None or held is None or held[1] <= now:
                return False
            window.live[reservation_id] = (held[0], now + lease_s)
            return True

    def budget_usage(self, key: str, now: float) -> tuple[int, int]:
        with self._lock:
            window = self._windows.get(key)
            if window is None or window.window_end <= now:
                return (0, 0)
            return window.used, sum(a for a, expiry in window.live.values() if expiry > now)

    def breaker_allow(self, key: str, now: float) -> BreakerState:
        with self._lock:
            state = self._breakers.setdefault(key, _logic.new_breaker())
            allowed = _logic.breaker_allow(state, now)
            return _logic.breaker_view(state, allowed)

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
        with self._lock:
            state = self._breakers.setdefault(key, _logic.new_breaker())
            _logic.breaker_record(state, ok, now, window_s, min_calls, error_rate, cooldown_s, probes)
            return _logic.breaker_view(state, state["status"] != "open")

    def append_usage(self, records: Sequence[UsageRecord]) -> None:
        with self._lock:
            for record in records:
                self._usage.setdefault(record.record_id, record)

    def query_usage(
        self, since: float, group_by: Sequence[str] = (), until: float | None = None
    ) -> list[UsageTotal]:
        return sum_usage(self.usage_records(since, until), group_by)

    def usage_records(self, since: float, until: float | None = None) -> list[UsageRecord]:
        with self._lock:
            return [r for r in self._usage.values() if r.ts >= since and (until is None or r.ts < until)]

    def prune_usage(self, before: float) -> int:
        with self._lock:
            old = [rid for rid, record in self._usage.items() if record.ts < before]
            for rid in old:
                del self._usage[rid]
            return len(old)

    def put_eval(self, eval_set: str, model: str, record: Mapping[str, JSONValue]) -> None:
        self.set_json(eval_key(eval_set, model), dict(record))

    def latest_eval(self, eval_set: str, model: str) -> dict[str, JSONValue] | None:
        value = self.get_json(eval_key(eval_set, model))
        return None if value is None else dict(value)

    def close(self) -> None:
        with self._lock:
            self._values.clear()
            self._windows.clear()
