"""Pure state transitions shared by the memory and SQLite backends (Redis mirrors them in Lua)."""

from __future__ import annotations

import dataclasses
import json
import math
from decimal import Decimal
from typing import Any

from gateway.state.base import BreakerState, Decision, UsageRecord

# Unix times near 1.8e9 carry ~2.4e-7 s of float precision: never refuse for less than a microsecond.
EPSILON = 1e-6


def gcra(
    tat: float | None, now: float, rate_per_s: float, burst: float, cost: float, force: bool
) -> tuple[float | None, Decision]:
    """One step of the generic cell rate algorithm.

    Returns the new theoretical arrival time to store (``None`` when unchanged) and the decision.
    """
    if rate_per_s <= 0 or burst <= 0:
        raise ValueError(f"rate_per_s and burst must be positive, got {rate_per_s} and {burst}")
    interval = 1.0 / rate_per_s
    base = now if tat is None or tat < now else tat
    new_tat = base + cost * interval
    allow_at = new_tat - burst * interval
    if force or now + EPSILON >= allow_at:
        remaining = math.floor(burst - (new_tat - now) * rate_per_s + 1e-3)
        return new_tat, Decision(True, 0.0, max(0, remaining))
    retry_after = math.inf if cost > burst else allow_at - now
    remaining = math.floor(burst - (base - now) * rate_per_s + 1e-3)
    return None, Decision(False, retry_after, max(0, remaining))


def gcra_ttl(new_tat: float, now: float) -> float:
    """How long a stored TAT matters: once it is in the past, it equals no state at all."""
    return max(new_tat - now, 0.0) + 1.0


def new_breaker() -> dict[str, Any]:
    return {
        "status": "closed",
        "calls": 0,
        "failures": 0,
        "window_start": 0.0,
        "retry_at": 0.0,
        "cooldown": 0.0,
        "probes_ok": 0,
    }


def breaker_view(state: dict[str, Any], allowed: bool) -> BreakerState:
    retry_at = float(state["retry_at"]) if state["status"] != "closed" else 0.0
    return BreakerState(state["status"], allowed, int(state["calls"]), int(state["failures"]), retry_at)


def breaker_allow(state: dict[str, Any], now: float) -> bool:
    """Mutate ``state``; a probe is granted once per cooldown so a dead prober cannot wedge it."""
    if state["status"] == "closed":
        return True
    if now >= state["retry_at"]:
        state["status"] = "half_open"
        state["retry_at"] = now + state["cooldown"]
        return True
    return False


def breaker_record(
    state: dict[str, Any],
    ok: bool,
    now: float,
    window_s: float,
    min_calls: int,
    error_rate: float,
    cooldown_s: float,
    probes: int = 1,
) -> None:
    """Mutate ``state`` with one outcome (fixed window of ``window_s`` seconds while closed).

    Half-open, a successful probe closes the breaker once ``probes`` have succeeded in a row; before
    that the next probe may go at once. A failed probe reopens it."""
    status = state["status"]
    if status == "open":
        return  # a late answer from a call sent before the breaker opened
    if status == "half_open":
        if ok:
            passed = int(state.get("probes_ok", 0)) + 1
            if passed >= probes:
                state.update(
                    status="closed", calls=0, failures=0, window_start=now, retry_at=0.0, probes_ok=0
                )
            else:
                state.update(probes_ok=passed, retry_at=now)
        else:
            state.update(
                status="open",
                calls=0,
                failures=0,
                retry_at=now + cooldown_s,
                cooldown=cooldown_s,
                probes_ok=0,
            )
        return
    if now - state["window_start"] >= window_s:
        state.update(calls=0, failures=0, window_start=now)
    state["calls"] += 1
    state["failures"] += 0 if ok else 1
    if state["calls"] >= min_calls and state["failures"] >= error_rate * state["calls"]:
        state.update(status="open", retry_at=now + cooldown_s, cooldown=cooldown_s)


def ewma(old: float | None, value: float, alpha: float) -> float:
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    return value if old is None else alpha * value + (1.0 - alpha) * old


def usage_to_json(record: UsageRecord) -> str:
    """Deterministic JSON, so that identical records are identical strings (Redis dedupes on it)."""
    fields = dataclasses.asdict(record)
    fields["cost_usd"] = str(record.cost_usd)
    return json.dumps(fields, sort_keys=True, separators=(",", ":"))


def usage_from_json(text: str | bytes) -> UsageRecord:
    fields = json.loads(text)
    fields["cost_usd"] = Decimal(fields["cost_usd"])
    if "tags" in fields:  # JSON has no tuples
        fields["tags"] = tuple((str(k), str(v)) for k, v in fields["tags"])
    return UsageRecord(**fields)
