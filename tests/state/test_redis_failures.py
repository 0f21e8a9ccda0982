"""Redis failures: unreachable at start-up, stopped or killed mid-run, restarted, scripts flushed.

Budgets must fail closed with a typed error within the timeout, rate limits follow ``fail_open``,
nothing hangs, and everything works again once the server is back.
"""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
import redis

from gateway.budgets import Budget, Budgets, Cost, Subject
from gateway.core.errors import BudgetExceededError, StateBackendError
from gateway.ratelimit import RateLimit, RateLimiter
from gateway.state import BackendConfig, open_backend
from gateway.state.errors import StateBackendUnavailableError
from gateway.state.redis import RedisBackend

TIMEOUT_S = 0.5
RETRY_INTERVAL_S = 0.25
SUBJECT = Subject(team="a", key="key-1", route="support")
PASSWORD = "s3cret-Pa55word"


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once the socket is closed


@pytest.mark.parametrize(
    "url",
    [
        "redis://:{pw}@127.0.0.1:{port}/0",
        "redis://admin:{pw}@127.0.0.1:{port}/2",
        "redis://127.0.0.1:{port}/0?password={pw}",
    ],
)
def test_an_unreachable_url_is_a_typed_error_without_the_password(url):
    url = url.format(pw=PASSWORD, port=_closed_port())
    started = time.monotonic()
    with pytest.raises(StateBackendUnavailableError) as caught:
        open_backend(BackendConfig(url, timeout_s=TIMEOUT_S))
    assert time.monotonic() - started < TIMEOUT_S + 0.5
    error = caught.value
    assert isinstance(error, StateBackendError) and isinstance(error, ConnectionError)
    for text in (str(error), repr(error), error.url, repr(error.__context__)):
        assert PASSWORD not in text
    assert "127.0.0.1" in str(error)
    assert "cannot reach Redis" in str(error)


def test_repr_of_a_backend_has_no_password(redis_server):
    server_url = redis_server.url.replace("redis://", f"redis://default:{PASSWORD}@")
    client = redis.Redis.from_url(redis_server.url)
    client.config_set("requirepass", PASSWORD)
    try:
        backend = RedisBackend(server_url, key_prefix="test:repr:")
        assert PASSWORD not in repr(backend)
        assert backend.incr("hits", 1) == 1.0
        backend.close()
    finally:
        authed = redis.Redis.from_url(server_url)
        authed.config_set("requirepass", "")
        authed.close()
        client.close()


def test_scripts_are_reloaded_transparently_after_script_flush(redis_server, key_prefix):
    backend = RedisBackend(redis_server.url, key_prefix=key_prefix)
    budgets = Budgets(backend, [Budget("b", 1000, "tokens")])
    limiter = RateLimiter(backend, [RateLimit.rpm("rpm", 600)], fail_open=False)
    for _ in range(3):
        hold = budgets.reserve(SUBJECT, Cost(tokens=100))
        limiter.acquire(SUBJECT)
        backend.ewma_observe("latency", 1.0, 0.5)
        backend.breaker_record("p", True, time.time(), 10, 5, 0.5, 30)
        backend.incr("hits", 1)
        redis.Redis.from_url(redis_server.url).script_flush()
        budgets.settle(hold, Cost(tokens=100))
    assert [s.used for s in budgets.status(SUBJECT)] == [300]
    backend.close()


def _hammer(budgets: Budgets, stop: threading.Event, log: list[tuple[float, float, str]]) -> None:
    """Reserve and settle in a loop, logging (start, duration, outcome) of every reserve."""
    while not stop.is_set():
        started = time.monotonic()
        try:
            hold = budgets.reserve(SUBJECT, Cost(usd=Decimal("0.001")))
            outcome = "ok"
        except StateBackendUnavailableError:
            outcome = "unavailable"
        except BudgetExceededError:
            outcome = "exceeded"
        log.append((started, time.monotonic() - started, outcome))
        if outcome == "ok":
            try:
                budgets.settle(hold, Cost(usd=Decimal("0.001")))
            except StateBackendUnavailableError:
                pass  # the hold expires with its lease; the next reserve shows the outage
        else:
            time.sleep(0.01)


@pytest.mark.parametrize("outage", ["sigstop", "kill"])
def test_budgets_fail_closed_within_the_timeout_and_recover_after_restart(fresh_redis, outage):
    backend = RedisBackend(
        fresh_redis.url, key_prefix="test:outage:", timeout_s=TIMEOUT_S, retry_interval_s=RETRY_INTERVAL_S
    )
    budgets = Budgets(backend, [Budget("b", Decimal("1000"))], lease_s=30)
    limiter_open = RateLimiter(backend, [RateLimit.rpm("rpm", 6000)])
    limiter_closed = RateLimiter(backend, [RateLimit.rpm("rpm", 6000)], fail_open=False)
    stop, log = threading.Event(), []
    threads = [threading.Thread(target=_hammer, args=(budgets, stop, log)) for _ in range(8)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)
        outage_started = time.monotonic()
        if outage == "sigstop":
            fresh_redis.pause()
        else:
            fresh_redis.stop()
        time.sleep(1.5)
        limiter_open.acquire(SUBJECT)  # fail open: admitted without the backend
        with pytest.raises(StateBackendUnavailableError):
            limiter_closed.acquire(SUBJECT)
        outage_ended = time.monotonic()
        if outage == "sigstop":
            fresh_redis.resume()
        else:
            fresh_redis.start()  # same port, empty server: no scripts loaded
        back = time.monotonic()
        time.sleep(0.6)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads), "a caller hung"
    during = [entry for entry in log if outage_started + 0.05 < entry[0] < outage_ended - TIMEOUT_S]
    # Once back, callers retry within RETRY_INTERVAL_S (they fail fast until then).
    after = [entry for entry in log if entry[0] > back + RETRY_INTERVAL_S + 0.05]
    print(f"\n{outage}: {len(log)} reserves, {len(during)} during the outage, {len(after)} after it")
    failed = sorted(d for _, d, o in log if o == "unavailable")
    print(
        f"  failed reserves: {len(failed)}, median {failed[len(failed) // 2]:.4f} s, slowest {failed[-1]:.3f} s"
    )
    assert during and all(outcome == "unavailable" for _, _, outcome in during)  # fail closed
    # Within the timeout: no handshake on reconnect, so a call makes one attempt of TIMEOUT_S at most.
    assert all(duration <= TIMEOUT_S + 0.25 for _, duration, _ in log)
    assert after and all(outcome == "ok" for _, _, outcome in after)  # reconnected, scripts reloaded
    limiter_closed.acquire(SUBJECT)
    backend.close()


def test_every_key_carries_the_prefix_and_window_keys_expire(redis_server, key_prefix):
    backend = RedisBackend(redis_server.url, key_prefix=key_prefix)
    now = time.time()
    budgets = Budgets(backend, [Budget("b", 1000, "tokens", "minute")])
    hold = budgets.reserve(SUBJECT, Cost(tokens=10))
    budgets.settle(hold, Cost(tokens=5))
    budgets.reserve(SUBJECT, Cost(tokens=10))
    backend.rate_limit("rl", 10, 10, 1, now)
    backend.incr("counter", 1, ttl_s=30)
    backend.set_json("doc", {"a": 1})
    client = redis.Redis.from_url(redis_server.url)
    keys = {key.decode(): client.pttl(key) for key in client.scan_iter(match=key_prefix + "*")}
    client.close()
    backend.close()
    window_keys = [k for k in keys if "budget:" in k]
    assert len(window_keys) == 4  # totals, live holds, lease expiries, settled ids
    assert all(0 < keys[k] <= 120_000 for k in window_keys)  # the minute window + 60 s of grace
    assert 0 < keys[key_prefix + "rl"] <= 1_200  # a GCRA key lives until its TAT has passed
    assert 0 < keys[key_prefix + "counter"] <= 30_000
    assert keys[key_prefix + "doc"] == -1  # no TTL asked, none set


def test_a_missing_redis_server_binary_fails_rather_than_skips(monkeypatch, tmp_path):
    from tests.state.conftest import RedisServer

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="redis-server is not installed"):
        RedisServer()
