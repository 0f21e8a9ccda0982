"""Differential property test: memory, SQLite and Redis (Lua) answer every sequence identically.

The Redis scripts re-implement the Python transitions in Lua; this is what keeps them the same.
"""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.state.memory import MemoryBackend
from gateway.state.redis import RedisBackend
from gateway.state.sqlite import SQLiteBackend

T0 = 1_800_000_000.0
IDS = st.sampled_from(["r1", "r2", "r3", "r4"])

rate_limit_op = st.tuples(
    st.just("rate_limit"),
    st.sampled_from(["a", "b"]),
    st.sampled_from([0.5, 10.0, 100.0]),
    st.sampled_from([1.0, 5.0, 20.0]),
    st.sampled_from([1.0, 3.0, 30.0, -2.0]),
    st.booleans(),
)
reserve_op = st.tuples(st.just("reserve"), IDS, st.integers(0, 6), st.sampled_from([1.0, 5.0]))
settle_op = st.tuples(st.just("settle"), IDS, st.integers(0, 8))
release_op = st.tuples(st.just("release"), IDS)
usage_op = st.tuples(st.just("budget_usage"))
breaker_op = st.tuples(
    st.just("breaker_record"),
    st.booleans(),
    st.sampled_from([2, 3]),
    st.sampled_from([0.5, 1.0]),
    st.sampled_from([1, 2]),  # half-open probes that close it
)
allow_op = st.tuples(st.just("breaker_allow"))
step = st.tuples(
    st.sampled_from([0.0, 0.0, 0.01, 0.3, 1.0, 4.0]),
    st.one_of(rate_limit_op, reserve_op, settle_op, release_op, usage_op, breaker_op, allow_op),
)


def apply(backend, now: float, op: tuple) -> object:
    window_end = T0 + 60
    match op:
        case ("rate_limit", key, rate, burst, cost, force):
            force = force or cost < 0
            return backend.rate_limit(key, rate, burst, cost, now, force=force)
        case ("reserve", rid, amount, lease):
            return backend.reserve("budget", 10, amount, rid, lease, window_end, now)
        case ("settle", rid, actual):
            return backend.settle("budget", rid, actual, window_end, now)
        case ("release", rid):
            return backend.release("budget", rid, now)
        case ("budget_usage",):
            return backend.budget_usage("budget", now)
        case ("breaker_record", ok, min_calls, error_rate, probes):
            return backend.breaker_record("p", ok, now, 2.0, min_calls, error_rate, 1.5, probes)
        case ("breaker_allow",):
            return backend.breaker_allow("p", now)
    raise AssertionError(op)


def _rounded(value: object) -> object:
    """Decisions carry float retry-afters computed from Unix times: compare them to the microsecond."""
    if hasattr(value, "retry_after_s"):
        return (value.allowed, round(value.retry_after_s, 6), value.remaining)
    return value


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step, min_size=1, max_size=40))
def test_all_backends_give_the_same_answers(steps, redis_server, tmp_path_factory):
    directory = tmp_path_factory.mktemp("agree")
    backends = [
        MemoryBackend(),
        SQLiteBackend(str(directory / "state.sqlite")),
        RedisBackend(redis_server.url, key_prefix=f"test:agree:{uuid.uuid4().hex}:"),
    ]
    try:
        now = T0
        for number, (dt, op) in enumerate(steps):
            now += dt
            answers = [_rounded(apply(backend, now, op)) for backend in backends]
            assert answers[0] == answers[1] == answers[2], f"step {number}: {op} at +{now - T0:.2f} s"
    finally:
        for backend in backends:
            backend.close()
