"""State outages: each concern degrades to process-local state or fails closed, and reconciles.

Every test runs its own ``redis-server`` (appendonly, fsync always, so what Redis acknowledged
survives the kill, as a production Redis with persistence would) and kills and restarts it on the
same port. Nothing of ours is mocked.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from gateway.budgets import Budget, Budgets, Cost, Subject
from gateway.core.errors import BudgetExceededError
from gateway.ratelimit import RateLimit, RateLimiter
from gateway.resilience.breaker import Breakers, BreakerSettings
from gateway.state import BackendConfig, open_backend
from gateway.state.errors import StateBackendUnavailableError
from gateway.state.outage import DegradingBackend, FailOpen
from gateway.state.redis import RedisBackend
from tests.state.conftest import RedisServer

SUBJECT = Subject(team="a")
PREFIX = "test:outage:"


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own whose acknowledged writes survive a kill (AOF, fsync always)."""
    data = tmp_path / "redis-data"
    data.mkdir()
    server = RedisServer(extra_args=("--appendonly", "yes", "--appendfsync", "always", "--dir", str(data)))
    server.start()
    yield server
    server.stop()


def _degrading(server: RedisServer, fail_open: object, **kwargs: object) -> DegradingBackend:
    def primary() -> RedisBackend:
        return RedisBackend(server.url, key_prefix=PREFIX, timeout_s=0.5, retry_interval_s=0.05)

    return DegradingBackend(
        primary, fail_open, retry_interval_s=0.05, description="the test's Redis", **kwargs
    )  # type: ignore[arg-type]


def _until_back(backend: DegradingBackend) -> None:
    """Call the shared backend until it answers again (the call that finds it reconciles)."""
    deadline = time.monotonic() + 10
    while backend.stats().degraded or backend.stats().pending:
        assert time.monotonic() < deadline, backend.stats()
        backend.get_json("ping")
        time.sleep(0.06)


def test_fail_open_setting_reads_bools_and_mappings() -> None:
    assert FailOpen.of(True) == FailOpen(budgets=False, rate_limits=True, breakers=True, live_stats=True)
    assert FailOpen.of(False) == FailOpen(False, False, False, False)
    assert FailOpen.of({"budgets": True, "breakers": False}) == FailOpen(True, True, False, True)
    with pytest.raises(ValueError, match=r"unknown concern\(s\) \['budget'\]"):
        FailOpen.of({"budget": True})


def test_budgets_that_fail_open_carry_on_locally_and_reconcile_exactly(durable_redis: RedisServer) -> None:
    backend = _degrading(durable_redis, {"budgets": True})
    budgets = Budgets(backend, [Budget("b", 1_000, "tokens")])
    before = [budgets.reserve(SUBJECT, Cost(tokens=50)) for _ in range(3)]
    budgets.settle(before[0], Cost(tokens=40))
    durable_redis.stop()
    budgets.settle(before[1], Cost(tokens=30))  # held on Redis, settled while it is down
    during = [budgets.reserve(SUBJECT, Cost(tokens=50)) for _ in range(4)]
    for hold in during:
        budgets.settle(hold, Cost(tokens=25))
    budgets.release(before[2])
    stats = backend.stats()
    assert stats.degraded and stats.pending == 5 and stats.fallbacks["budgets"] >= 9
    durable_redis.start()
    _until_back(backend)
    [status] = budgets.status(SUBJECT)
    assert status.used == 40 + 30 + 4 * 25  # every settlement, once
    assert status.reserved == 50  # before[2]'s release was lost with Redis: it lapses with its lease
    assert backend.stats().replayed == 5
    backend.close()


def test_a_settlement_that_timed_out_but_ran_late_is_not_counted_twice(durable_redis: RedisServer) -> None:
    backend = _degrading(durable_redis, True)
    budgets = Budgets(backend, [Budget("b", 1_000, "tokens")])
    hold = budgets.reserve(SUBJECT, Cost(tokens=50))
    durable_redis.pause()  # the command is sent, Redis runs it only when resumed
    budgets.settle(hold, Cost(tokens=30))  # times out: journalled under the same reservation id
    assert backend.stats().pending == 1
    durable_redis.resume()
    _until_back(backend)
    assert backend.stats().replayed == 1
    assert budgets.status(SUBJECT)[0].used == 30
    backend.close()


def test_a_local_window_starts_from_what_the_shared_one_held(durable_redis: RedisServer) -> None:
    backend = _degrading(durable_redis, {"budgets": True})
    budgets = Budgets(backend, [Budget("b", 100, "tokens")])
    budgets.settle(budgets.reserve(SUBJECT, Cost(tokens=60)), Cost(tokens=60))
    budgets.reserve(SUBJECT, Cost(tokens=10))  # 60 spent + 10 held, as last seen
    durable_redis.stop()
    budgets.reserve(SUBJECT, Cost(tokens=30))  # exactly the room left
    with pytest.raises(BudgetExceededError):
        budgets.reserve(SUBJECT, Cost(tokens=1))
    backend.close()


def test_budgets_fail_closed_by_default_but_keep_what_was_spent(durable_redis: RedisServer) -> None:
    backend = _degrading(durable_redis, True)
    budgets = Budgets(backend, [Budget("b", 1_000, "tokens")])
    hold = budgets.reserve(SUBJECT, Cost(tokens=100))
    durable_redis.stop()
    with pytest.raises(StateBackendUnavailableError, match=r"budgets fail closed \(state.fail_open.budgets"):
        budgets.reserve(SUBJECT, Cost(tokens=1))
    budgets.settle(hold, Cost(tokens=70))  # the reply was served: never an error
    assert backend.stats().refused == {"budgets": 1}
    durable_redis.start()
    _until_back(backend)
    assert budgets.status(SUBJECT)[0].used == 70
    backend.close()


def test_rate_limits_are_enforced_locally_and_their_charges_replayed(durable_redis: RedisServer) -> None:
    now = [time.time()]
    backend = _degrading(durable_redis, True)
    limiter = RateLimiter(backend, [RateLimit.rpm("rpm", 3, scope="global")], clock=lambda: now[0])
    limiter.acquire(SUBJECT)
    durable_redis.stop()
    for _ in range(3):
        limiter.acquire(SUBJECT)
    with pytest.raises(BudgetExceededError, match="rate limit 'rpm' exceeded"):
        limiter.acquire(SUBJECT)  # enforced by the local GCRA, which starts empty: 3 fit
    durable_redis.start()
    _until_back(backend)
    # Redis saw 1 charge and was replayed 3 (of 20 s each): 4 in the 3-per-minute bucket.
    now[0] += 39.0
    with pytest.raises(BudgetExceededError, match="rate limit 'rpm' exceeded"):
        limiter.acquire(SUBJECT)
    now[0] += 1.0  # two emission intervals after the last charge, one fits again
    limiter.acquire(SUBJECT)
    backend.close()


def test_breakers_carry_on_locally_then_the_shared_state_takes_over(durable_redis: RedisServer) -> None:
    backend = _degrading(durable_redis, True)
    breakers = Breakers(backend, BreakerSettings(min_calls=2, cooldown_s=60))
    durable_redis.stop()
    assert breakers.allow("gpt").allowed
    breakers.record("gpt", ok=False)
    breakers.record("gpt", ok=False)
    assert not breakers.allow("gpt").allowed  # opened in this process's state
    durable_redis.start()
    _until_back(backend)
    assert breakers.allow("gpt").allowed  # Redis never saw the failures
    backend.close()


def test_breakers_that_fail_closed_refuse(durable_redis: RedisServer) -> None:
    backend = _degrading(durable_redis, {"breakers": False})
    durable_redis.stop()
    with pytest.raises(StateBackendUnavailableError, match="breakers fail closed"):
        Breakers(backend).allow("gpt")
    Breakers(backend).record("gpt", ok=True)  # recording an attempt that happened never raises
    backend.close()


def _client_policy(tmp_path: Path, upstream_url: str, budget: str, state: str) -> Path:
    """One priced model on the loopback upstream, one daily budget, the given ``state`` section."""
    policy = tmp_path / "p.yaml"
    policy.write_text(
        f"""version: 1
providers:
  up: {{kind: openai, base_url: "{upstream_url}/v1", api_key: "sk-upstream-key-123456"}}
models:
  m: {{provider: up, model: gpt-4o-mini, price: {{input: 1, output: 1}}}}
routes:
  chat: {{candidates: [m]}}
budgets:
  daily: {budget}
state: {state}
"""
    )
    return policy


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://:hunter2-secret@127.0.0.1:{port}/0"


def test_open_backend_with_fail_open_does_not_fail_on_an_unreachable_redis() -> None:
    url = _closed_port_url()
    with pytest.raises(StateBackendUnavailableError):
        open_backend(BackendConfig(url, timeout_s=0.2))
    backend = open_backend(BackendConfig(url, timeout_s=0.2, fail_open=True))
    assert isinstance(backend, DegradingBackend) and "hunter2-secret" not in repr(backend)
    with pytest.raises(StateBackendUnavailableError) as caught:
        backend.query_usage(0)  # a method without a concern needs the backend
    assert "hunter2-secret" not in str(caught.value)
    backend.close()


def test_a_fallback_warns_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    url = _closed_port_url()
    reader = InMemoryMetricReader()
    with caplog.at_level(logging.WARNING, logger="gateway.state"):
        backend = DegradingBackend(
            lambda: RedisBackend(url, timeout_s=0.2),
            True,
            description="redis://<redacted>@127.0.0.1",
            meter_provider=MeterProvider(metric_readers=[reader]),
        )
        limiter = RateLimiter(backend, [RateLimit.rpm("rpm", 60)], fail_open=False)
        limiter.acquire(Subject(key="k"))  # admitted by the local limiter, not by skipping it
        limiter.acquire(Subject(key="k"))
    assert backend.stats().fallbacks == {"rate_limits": 2}
    [metric] = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
    assert metric.name == "switchyard.state.fallbacks"
    [point] = metric.data.data_points
    assert point.value == 2 and dict(point.attributes) == {"switchyard.state.concern": "rate_limits"}
    warnings = [
        r.getMessage() for r in caplog.records if "rate_limits kept in process-local state" in r.getMessage()
    ]
    assert len(warnings) == 1  # once per outage and concern, not per call
    assert all("hunter2-secret" not in r.getMessage() for r in caplog.records)
    backend.close()


def test_the_policy_setting_parses_and_rejects_typos() -> None:
    from gateway.core.errors import PolicyError
    from gateway.policy import parse_policy

    assert FailOpen.of(parse_policy("version: 1").state.fail_open) == FailOpen()
    assert FailOpen.of(parse_policy("version: 1\nstate: {fail_open: false}").state.fail_open) == FailOpen.of(
        False
    )
    both = parse_policy("version: 1\nstate: {fail_open: {budgets: true, breakers: false}}")
    assert FailOpen.of(both.state.fail_open) == FailOpen(budgets=True, rate_limits=True, breakers=False)
    with pytest.raises(PolicyError, match="budget"):
        parse_policy("version: 1\nstate: {fail_open: {budget: true}}")


def test_a_budget_failing_closed_is_a_503_that_names_the_state(tmp_path: Path) -> None:
    """Through the client: the state backend unreachable and budgets failing closed (the default)
    answer 503 (the gateway is unavailable, not broken), code ``state.unavailable``, no secret."""
    import openai

    import gateway
    from tests.servers.http import LoopbackServer
    from tests.servers.openai_server import handle

    with LoopbackServer(handle) as upstream:
        policy = _client_policy(
            tmp_path, upstream.base_url, "{window: day, limit_usd: 5}",
            f'{{backend: redis, url: "{_closed_port_url()}"}}',
        )  # fmt: skip
        with gateway.OpenAI(api_key="sk-test", policy=policy, max_retries=0) as client:
            with pytest.raises(openai.InternalServerError) as caught:
                client.chat.completions.create(
                    model="route:chat", messages=[{"role": "user", "content": "hi"}]
                )
        assert upstream.log == []  # nothing was sent without the budget's say
    error = caught.value
    assert error.status_code == 503 and error.code == "state.unavailable"
    assert "hunter2-secret" not in str(error) and "sk-upstream" not in str(error)


def _hold_write_lock(path: str) -> sqlite3.Connection:
    """Another process's connection holding the file's write lock (``BEGIN EXCLUSIVE``)."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN EXCLUSIVE")
    return holder


def test_a_sqlite_file_locked_past_the_busy_timeout_degrades_and_reconciles(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.state.sqlite import SQLiteBackend

    path = str(tmp_path / "state.sqlite")
    reader = InMemoryMetricReader()
    backend = DegradingBackend(
        lambda: SQLiteBackend(path, busy_timeout_s=0.05),
        {"budgets": True},
        retry_interval_s=0.05,
        description="the test's SQLite file",
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    budgets = Budgets(backend, [Budget("b", 1_000, "tokens")])
    budgets.settle(budgets.reserve(SUBJECT, Cost(tokens=50)), Cost(tokens=40))
    holder = _hold_write_lock(path)  # another process holds the write lock: writers wait, then fail
    try:
        with pytest.raises(StateBackendUnavailableError, match="is unavailable: database is locked"):
            SQLiteBackend(path, busy_timeout_s=0.05).incr("k", 1)
        with caplog.at_level(logging.WARNING, logger="gateway.state"):
            started = time.monotonic()
            budgets.settle(budgets.reserve(SUBJECT, Cost(tokens=50)), Cost(tokens=25))  # local ledger
            waited = time.monotonic() - started
        stats = backend.stats()
        assert stats.degraded and stats.fallbacks["budgets"] >= 2 and stats.pending == 1
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert waited < 2  # one busy timeout (0.05 s), then process-local state: no hang
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if m.startswith("state backend unavailable")] == [
        f"state backend unavailable, using process-local state where allowed: SQLite state file {path!r} "
        "is unavailable: database is locked (see https://switchyard.dev/errors#state.unavailable)"
    ]
    assert len([m for m in messages if "budgets kept in process-local state (fail_open)" in m]) == 1
    [metric] = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
    [point] = metric.data.data_points
    assert metric.name == "switchyard.state.fallbacks"
    assert (point.value, dict(point.attributes)) == (
        stats.fallbacks["budgets"],
        {"switchyard.state.concern": "budgets"},
    )
    _until_back(backend)
    [status] = budgets.status(SUBJECT)
    assert status.used == 40 + 25 and status.reserved == 0  # the local settlement reached the file
    backend.close()


def test_a_sqlite_file_locked_at_start_up_starts_degraded_and_reconciles(tmp_path: Path) -> None:
    """``open_backend`` (the policy's path) on a new file another process is creating, lock held:
    the client starts degraded, as with an unreachable Redis, and the file takes over once free."""
    path = str(tmp_path / "state.sqlite")
    holder = _hold_write_lock(path)
    holder.execute("CREATE TABLE theirs (x)")  # uncommitted: our schema cannot be written yet
    config = BackendConfig(f"sqlite:///{path}", busy_timeout_s=0.05, fail_open={"budgets": True})
    try:
        backend = open_backend(config)
        budgets = Budgets(backend, [Budget("b", 1_000, "tokens")])
        budgets.settle(budgets.reserve(SUBJECT, Cost(tokens=50)), Cost(tokens=30))
        assert backend.stats().degraded  # type: ignore[attr-defined]
    finally:
        holder.execute("COMMIT")
        holder.close()
    _until_back(backend)  # type: ignore[arg-type]
    [status] = budgets.status(SUBJECT)
    assert (status.used, status.reserved) == (30, 0)
    backend.close()


def test_the_policy_busy_timeout_bounds_the_wait_on_a_locked_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the client: with ``state.busy_timeout_s: 0.2`` a request that finds the policy's
    SQLite file locked by another connection degrades after about 0.2 s, not the default 10 s."""
    import gateway
    from tests.servers.http import LoopbackServer
    from tests.servers.openai_server import handle

    path = tmp_path / "state.sqlite"
    with LoopbackServer(handle) as upstream:
        policy = _client_policy(
            tmp_path, upstream.base_url, "{window: day, limit_tokens: 100000}",
            f'{{backend: sqlite, path: "{path}", busy_timeout_s: 0.2, fail_open: {{budgets: true}}}}',
        )  # fmt: skip
        with gateway.OpenAI(api_key="sk-test", policy=policy, max_retries=0) as client:
            holder = _hold_write_lock(str(path))  # the client's file exists: now another writer holds it
            try:
                with caplog.at_level(logging.WARNING, logger="gateway.state"):
                    started = time.monotonic()
                    reply = client.chat.completions.create(
                        model="route:chat", messages=[{"role": "user", "content": "hi"}]
                    )
                    waited = time.monotonic() - started
            finally:
                holder.execute("ROLLBACK")
                holder.close()
    assert reply.choices[0].message.content
    assert 0.15 < waited < 3  # one busy timeout of the policy's 0.2 s, then process-local state
    messages = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("state backend unavailable")
    ]
    assert messages == [
        f"state backend unavailable, using process-local state where allowed: SQLite state file {str(path)!r} "
        "is unavailable: database is locked (see https://switchyard.dev/errors#state.unavailable)"
    ]


@pytest.mark.parametrize(
    ("value", "code"),
    [("0", "policy.greater-than"), ("-1", "policy.greater-than"), ("soon", "policy.float-parsing"),
     (".inf", "policy.finite-number"), ("601", "policy.less-than-equal")],
)  # fmt: skip
def test_a_bad_busy_timeout_is_refused_with_its_line_and_column(value: str, code: str) -> None:
    from gateway.core.errors import PolicyError
    from gateway.policy import parse_policy

    text = f"version: 1\nstate:\n  backend: sqlite\n  path: s.sqlite\n  busy_timeout_s: {value}\n"
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, filename="p.yaml")
    assert [(e.line, e.column, e.field_path, e.code) for e in caught.value.errors] == [
        (5, 19, "state.busy_timeout_s", code)
    ]
    assert str(caught.value).startswith("p.yaml:5:19 at state.busy_timeout_s: ")
    assert parse_policy("version: 1").state.busy_timeout_s == 10.0  # the default: as before the setting


def test_a_locked_sqlite_file_refuses_budgets_that_fail_closed(tmp_path: Path) -> None:
    from gateway.state.sqlite import SQLiteBackend

    path = str(tmp_path / "state.sqlite")
    backend = DegradingBackend(
        SQLiteBackend(path, busy_timeout_s=0.05), {"budgets": False}, retry_interval_s=0.05
    )
    budgets = Budgets(backend, [Budget("b", 1_000, "tokens")])
    held = budgets.reserve(SUBJECT, Cost(tokens=50))
    holder = _hold_write_lock(path)
    try:
        with pytest.raises(
            StateBackendUnavailableError, match=r"budgets fail closed \(state.fail_open.budgets"
        ):
            budgets.reserve(SUBJECT, Cost(tokens=50))
        budgets.settle(held, Cost(tokens=20))  # accounting: the upstream already answered, kept locally
        assert backend.stats().refused == {"budgets": 1}
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    _until_back(backend)
    [status] = budgets.status(SUBJECT)
    assert (status.used, status.reserved) == (20, 0)
    backend.close()
