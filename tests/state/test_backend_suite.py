"""The StateBackend behaviour suite: every test runs against memory, SQLite and Redis."""

from __future__ import annotations

import math
import time
from decimal import Decimal

import pytest

from gateway.state import AsyncStateBackend, StateBackend
from gateway.state.base import BreakerState, Decision, ReserveResult, UsageRecord, UsageTotal

T0 = 1_800_000_000.0
WINDOW_END = T0 + 3600


def expire(kind: str, clock, seconds: float) -> None:
    """Let ``seconds`` pass for TTLs: memory and SQLite read the fake clock, Redis its own time."""
    clock.advance(seconds)
    if kind == "redis":
        time.sleep(seconds)


def test_every_backend_satisfies_the_protocol(backend):
    assert isinstance(backend, StateBackend)


# --- counters, JSON, EWMA ---------------------------------------------------------------------


def test_incr_accumulates_and_sets_ttl_only_on_creation(backend, backend_kind, clock):
    assert backend.incr("hits", 1, ttl_s=0.3) == 1.0
    expire(backend_kind, clock, 0.15)
    assert backend.incr("hits", 2.5, ttl_s=0.3) == 3.5
    expire(backend_kind, clock, 0.2)  # 0.35 s after creation: a later incr did not extend the TTL
    assert backend.incr("hits", 1) == 1.0
    assert backend.incr("forever", -2) == -2.0


def test_json_round_trip_overwrite_and_ttl(backend, backend_kind, clock):
    assert backend.get_json("missing") is None
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": "d"}}
    backend.set_json("doc", value)
    value["a"].append("mutated after writing")
    assert backend.get_json("doc") == {"a": [1, 2.5, "x", None, True], "b": {"c": "d"}}
    backend.set_json("doc", [1], ttl_s=0.1)
    assert backend.get_json("doc") == [1]
    expire(backend_kind, clock, 0.15)
    assert backend.get_json("doc") is None


def test_ewma(backend):
    assert backend.ewma_observe("latency", 100.0, 0.2) == 100.0
    assert backend.ewma_observe("latency", 200.0, 0.2) == pytest.approx(120.0)
    assert backend.ewma_observe("latency", 120.0, 0.2) == pytest.approx(120.0)
    with pytest.raises(ValueError, match="alpha"):
        backend.ewma_observe("latency", 1.0, 0.0)


# --- GCRA rate limits ---------------------------------------------------------------------------


def test_gcra_admits_the_burst_then_refuses_with_exact_retry_after(backend):
    decisions = [backend.rate_limit("rl", 100, 10, 1, T0) for _ in range(11)]
    assert decisions[:10] == [Decision(True, 0.0, 9 - i) for i in range(10)]
    refused = decisions[10]
    assert (refused.allowed, refused.remaining) == (False, 0)
    assert refused.retry_after_s == pytest.approx(0.01, abs=1e-6)
    # A hair before retry-after: still refused; at retry-after: admitted.
    assert not backend.rate_limit("rl", 100, 10, 1, T0 + 0.0099).allowed
    assert backend.rate_limit("rl", 100, 10, 1, T0 + 0.01) == Decision(True, 0.0, 0)


def test_gcra_admits_at_most_rate_times_time_plus_burst(backend):
    # 1,000 requests evenly over one second against 100/s with a burst of 10.
    admitted = sum(backend.rate_limit("rl", 100, 10, 1, T0 + i / 1000).allowed for i in range(1000))
    assert 100 <= admitted <= 100 * 0.999 + 10


def test_gcra_weighted_cost_never_fitting_and_forced_refund(backend):
    assert backend.rate_limit("tpm", 10, 100, 60, T0) == Decision(True, 0.0, 40)
    refused = backend.rate_limit("tpm", 10, 100, 60, T0)
    assert refused.allowed is False
    assert refused.retry_after_s == pytest.approx(2.0)  # 20 tokens short at 10 tokens/s
    never = backend.rate_limit("tpm", 10, 100, 101, T0)
    assert (never.allowed, math.isinf(never.retry_after_s)) == (False, True)
    # A forced negative cost refunds tokens (an estimate larger than the actual).
    assert backend.rate_limit("tpm", 10, 100, -30, T0, force=True).allowed
    assert backend.rate_limit("tpm", 10, 100, 60, T0) == Decision(True, 0.0, 10)


def test_gcra_keys_are_independent_and_recover_over_time(backend):
    for _ in range(3):
        backend.rate_limit("a", 1, 3, 1, T0)
    assert not backend.rate_limit("a", 1, 3, 1, T0).allowed
    assert backend.rate_limit("b", 1, 3, 1, T0).allowed
    assert backend.rate_limit("a", 1, 3, 1, T0 + 3) == Decision(True, 0.0, 2)


# --- budget reservations ------------------------------------------------------------------------


def test_reserve_boundary_exactly_at_just_under_and_just_over(backend):
    assert backend.reserve("b", 100, 60, "r1", 60, WINDOW_END, T0) == ReserveResult(True, 0, 60, 0)
    assert backend.reserve("b", 100, 41, "r2", 60, WINDOW_END, T0) == ReserveResult(False, 0, 60, 0)
    assert backend.reserve("b", 100, 39, "r3", 60, WINDOW_END, T0) == ReserveResult(True, 0, 99, 0)
    assert backend.reserve("b", 100, 1, "r4", 60, WINDOW_END, T0) == ReserveResult(True, 0, 100, 0)
    assert backend.reserve("b", 100, 1, "r5", 60, WINDOW_END, T0).granted is False
    assert backend.reserve("b", 100, 0, "r6", 60, WINDOW_END, T0).granted is True
    assert backend.budget_usage("b", T0) == (0, 100)


def test_reserve_is_idempotent_per_reservation_id(backend):
    assert backend.reserve("b", 100, 70, "r1", 60, WINDOW_END, T0).granted
    assert backend.reserve("b", 100, 70, "r1", 60, WINDOW_END, T0) == ReserveResult(True, 0, 70, 0)
    assert backend.budget_usage("b", T0) == (0, 70)


def test_settle_replaces_the_hold_and_is_idempotent(backend):
    backend.reserve("b", 100, 80, "r1", 60, WINDOW_END, T0)
    assert backend.settle("b", "r1", 30, WINDOW_END, T0) is True
    assert backend.budget_usage("b", T0) == (30, 0)
    for _ in range(3):  # replays change nothing
        assert backend.settle("b", "r1", 30, WINDOW_END, T0) is False
        assert backend.settle("b", "r1", 99, WINDOW_END, T0) is False
    assert backend.budget_usage("b", T0) == (30, 0)
    assert backend.release("b", "r1", T0) is False
    assert backend.reserve("b", 100, 80, "r1", 60, WINDOW_END, T0) == ReserveResult(True, 30, 0, 0)
    assert backend.budget_usage("b", T0) == (30, 0)


def test_release_frees_the_hold_once(backend):
    backend.reserve("b", 100, 100, "r1", 60, WINDOW_END, T0)
    assert backend.release("b", "r1", T0) is True
    assert backend.release("b", "r1", T0) is False
    assert backend.reserve("b", 100, 100, "r2", 60, WINDOW_END, T0).granted


def test_zero_amount_holds_reserve_release_and_settle(backend):
    assert backend.reserve("b", 100, 0, "r1", 60, WINDOW_END, T0) == ReserveResult(True, 0, 0, 0)
    assert backend.release("b", "r1", T0) is True
    assert backend.reserve("b", 100, 0, "r2", 60, WINDOW_END, T0).granted
    assert backend.settle("b", "r2", 0, WINDOW_END, T0) is True
    assert backend.budget_usage("b", T0) == (0, 0)


def test_settling_a_reclaimed_or_unknown_hold_still_charges_the_actual(backend):
    assert backend.settle("b", "ghost", 25, WINDOW_END, T0) is True
    assert backend.budget_usage("b", T0) == (25, 0)


def test_an_actual_above_the_hold_is_charged_in_full_and_blocks_later_holds(backend):
    backend.reserve("b", 100, 50, "r1", 60, WINDOW_END, T0)
    backend.settle("b", "r1", 120, WINDOW_END, T0)
    assert backend.reserve("b", 100, 0, "r2", 60, WINDOW_END, T0) == ReserveResult(False, 120, 0, 0)


def test_expired_leases_are_reclaimed(backend):
    backend.reserve("b", 100, 90, "dead-1", 5, WINDOW_END, T0)
    backend.reserve("b", 100, 10, "dead-2", 7, WINDOW_END, T0)
    assert backend.reserve("b", 100, 50, "r", 60, WINDOW_END, T0 + 4.9).granted is False
    assert backend.budget_usage("b", T0 + 5) == (0, 10)
    assert backend.reserve("b", 100, 50, "r", 60, WINDOW_END, T0 + 5) == ReserveResult(True, 0, 60, 1)
    assert backend.reserve("b", 100, 50, "s", 60, WINDOW_END, T0 + 7) == ReserveResult(True, 0, 100, 1)


def test_a_new_window_starts_empty(backend):
    backend.reserve("b", 100, 100, "r1", 600, WINDOW_END, T0)
    backend.settle("b", "r1", 100, WINDOW_END, T0)
    assert backend.budget_usage("b", WINDOW_END) == (0, 0)
    result = backend.reserve("b", 100, 100, "r2", 600, WINDOW_END + 3600, WINDOW_END)
    assert result == ReserveResult(True, 0, 100, 0)


# --- circuit breakers ---------------------------------------------------------------------------


def _record(backend, ok: bool, now: float) -> BreakerState:
    return backend.breaker_record("p", ok, now, window_s=10, min_calls=4, error_rate=0.5, cooldown_s=30)


def test_breaker_opens_at_the_error_rate_once_min_calls_are_seen(backend):
    assert backend.breaker_allow("p", T0) == BreakerState("closed", True, 0, 0, 0.0)
    assert _record(backend, False, T0) == BreakerState("closed", True, 1, 1, 0.0)
    assert _record(backend, False, T0) == BreakerState("closed", True, 2, 2, 0.0)
    assert _record(backend, True, T0) == BreakerState("closed", True, 3, 2, 0.0)
    assert _record(backend, True, T0 + 1) == BreakerState("open", False, 4, 2, T0 + 31)
    assert backend.breaker_allow("p", T0 + 30) == BreakerState("open", False, 4, 2, T0 + 31)


def test_breaker_grants_one_probe_and_closes_on_success(backend):
    for _ in range(4):
        _record(backend, False, T0)
    assert backend.breaker_allow("p", T0 + 30) == BreakerState("half_open", True, 4, 4, T0 + 60)
    assert backend.breaker_allow("p", T0 + 31).allowed is False  # one probe at a time
    assert _record(backend, True, T0 + 32) == BreakerState("closed", True, 0, 0, 0.0)
    assert backend.breaker_allow("p", T0 + 33).allowed is True


def test_breaker_reopens_on_a_failed_probe_and_reprobes_if_the_prober_vanished(backend):
    for _ in range(4):
        _record(backend, False, T0)
    backend.breaker_allow("p", T0 + 30)
    assert _record(backend, False, T0 + 31) == BreakerState("open", False, 0, 0, T0 + 61)
    assert backend.breaker_allow("p", T0 + 61).status == "half_open"
    # The prober never reports: one cooldown later another probe is granted.
    assert backend.breaker_allow("p", T0 + 91) == BreakerState("half_open", True, 0, 0, T0 + 121)


def test_breaker_window_resets_counts(backend):
    for _ in range(3):
        _record(backend, False, T0)
    assert _record(backend, True, T0 + 10) == BreakerState("closed", True, 1, 0, 0.0)


# --- usage and evals ----------------------------------------------------------------------------


def _usage(i: int, team: str, model: str, cost: str) -> UsageRecord:
    return UsageRecord(f"req-{i}", T0 + i, team, "key-1", "support", "openai", model, 10, 5, Decimal(cost))


def test_usage_append_is_idempotent_and_queries_group_exactly(backend):
    records = [
        _usage(0, "a", "gpt-4o-mini", "0.000001"),
        _usage(1, "a", "gpt-4o-mini", "0.1"),
        _usage(2, "b", "gpt-4o-mini", "0.2"),
        _usage(3, "a", "claude", "0.3"),
    ]
    backend.append_usage(records)
    backend.append_usage(records[:2])
    backend.append_usage([])
    assert backend.query_usage(T0) == [UsageTotal((), 4, 40, 20, Decimal("0.600001"))]
    assert backend.query_usage(T0 + 1, ["team", "model"], until=T0 + 3) == [
        UsageTotal((("team", "a"), ("model", "gpt-4o-mini")), 1, 10, 5, Decimal("0.1")),
        UsageTotal((("team", "b"), ("model", "gpt-4o-mini")), 1, 10, 5, Decimal("0.2")),
    ]
    assert backend.query_usage(T0 + 10) == []
    assert backend.prune_usage(T0 + 2) == 2
    assert backend.prune_usage(T0 + 2) == 0
    assert [t.requests for t in backend.query_usage(0)] == [2]
    with pytest.raises(ValueError, match="cannot group usage by"):
        backend.query_usage(T0, ["colour"])


def test_eval_store_keeps_the_latest(backend):
    assert backend.latest_eval("mmlu-mini", "gpt-4o-mini") is None
    backend.put_eval("mmlu-mini", "gpt-4o-mini", {"score": 0.71, "n": 200})
    backend.put_eval("mmlu-mini", "gpt-4o-mini", {"score": 0.74, "n": 200})
    backend.put_eval("mmlu-mini", "claude", {"score": 0.8, "n": 200})
    assert backend.latest_eval("mmlu-mini", "gpt-4o-mini") == {"score": 0.74, "n": 200}


async def test_async_adapter_runs_the_same_operations(backend):
    async_backend = AsyncStateBackend(backend)
    assert await async_backend.incr("hits", 2) == 2.0
    assert await async_backend.rate_limit("rl", 1, 1, 1, T0) == Decision(True, 0.0, 0)
    assert (await async_backend.reserve("b", 10, 10, "r", 60, WINDOW_END, T0)).granted


def test_memory_sweeps_keys_that_expired_unread(clock):
    from gateway.state.memory import MemoryBackend

    backend = MemoryBackend(clock=clock)
    for i in range(999):
        backend.rate_limit(f"idle-key-{i}", 10, 10, 1, clock())
    clock.advance(5)
    backend.set_json("fresh", 1)  # the 1,000th write sweeps the idle limits away
    assert backend.get_json("fresh") == 1
    assert len(backend._values) == 1
