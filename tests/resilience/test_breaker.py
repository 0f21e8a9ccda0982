"""Circuit breakers: the full cycle on every state backend, and one breaker shared by two processes.

closed -> open at the error rate (with a minimum of calls) -> half-open with exactly one probe after
the cooldown -> open again with a doubled cooldown, or closed. Time is an injected clock.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.core.errors import BadRequestError, InternalServerError
from gateway.resilience.breaker import Breakers, BreakerSettings
from gateway.state.memory import MemoryBackend
from gateway.state.redis import RedisBackend
from gateway.state.sqlite import SQLiteBackend
from tests.state.conftest import RedisServer

SETTINGS = BreakerSettings(
    window_s=60, min_calls=4, error_rate=0.5, cooldown_s=10, cooldown_factor=2, max_cooldown_s=30
)
WORKER = Path(__file__).with_name("breaker_worker.py")
REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "memory":
        made: Any = MemoryBackend()
    elif request.param == "sqlite":
        made = SQLiteBackend(str(tmp_path / "state.sqlite"))
    else:
        server = request.getfixturevalue("redis_server")
        made = RedisBackend(server.url, key_prefix=f"test:{uuid.uuid4().hex[:8]}:")
    yield made
    made.close()


def test_full_cycle(backend: Any) -> None:
    clock = Clock()
    breakers = Breakers(backend, SETTINGS, clock=clock)
    for ok in (False, False, False):
        assert breakers.allow("gpt").allowed
        breakers.record("gpt", ok=ok)
    assert breakers.allow("gpt").allowed  # 3 of 3 failed, but under min_calls: still closed
    assert breakers.open_breakers() == {}
    breakers.record("gpt", ok=True)  # 3 of 4 failed: at least error_rate, min_calls reached
    refused = breakers.allow("gpt")
    assert not refused.allowed and "3 failures in 4 calls" in refused.reason
    assert set(breakers.open_breakers()) == {"gpt"}

    cooldowns = []
    for _ in range(3):  # each failed probe doubles the cooldown, up to max_cooldown_s
        opened_at = clock.now
        clock.now += 1
        assert not breakers.allow("gpt").allowed
        while not (decision := breakers.allow("gpt")).allowed:
            clock.now += 1
        cooldowns.append(clock.now - opened_at)
        assert decision.probe
        assert not breakers.allow("gpt").allowed  # exactly one probe
        breakers.record("gpt", ok=False, probe=True)
    assert cooldowns == [10, 20, 30]

    clock.now += 30
    probe = breakers.allow("gpt")
    assert probe.probe
    breakers.record("gpt", ok=True, probe=True)
    assert breakers.allow("gpt") == breakers.allow("other")
    assert breakers.allow("gpt").allowed and breakers.open_breakers() == {}


def test_half_open_closes_after_its_probes_succeed_one_at_a_time(backend: Any) -> None:
    clock = Clock()
    breakers = Breakers(backend, BreakerSettings(min_calls=2, cooldown_s=10, half_open_probes=3), clock=clock)
    for _ in range(2):
        breakers.record("gpt", ok=False)
    clock.now += 10
    for number in range(3):
        probe = breakers.allow("gpt")
        assert probe.allowed and probe.probe, number
        assert not breakers.allow("gpt").allowed  # one probe in flight at a time
        breakers.record("gpt", ok=True, probe=True)
        if number < 2:
            assert breakers.allow("other").allowed and set(breakers.open_breakers()) <= {"gpt"}
    assert breakers.allow("gpt") == breakers.allow("other")  # closed: not a probe any more
    # a failure among the probes reopens it, and the count starts again after the next cooldown
    for _ in range(2):
        breakers.record("gpt", ok=False)
    clock.now += 10
    breakers.record("gpt", ok=True, probe=breakers.allow("gpt").probe)
    breakers.record("gpt", ok=False, probe=breakers.allow("gpt").probe)
    assert not breakers.allow("gpt").allowed
    clock.now += 20  # the failed probe doubled the cooldown
    for _ in range(3):
        breakers.record("gpt", ok=True, probe=breakers.allow("gpt").probe)
    assert breakers.allow("gpt") == breakers.allow("other")


def test_open_breakers_reopen_to_the_router_after_the_cooldown(backend: Any) -> None:
    clock = Clock()
    breakers = Breakers(backend, SETTINGS, clock=clock)
    for _ in range(4):
        breakers.record("gpt", ok=False)
    assert set(breakers.open_breakers()) == {"gpt"}
    clock.now += 10
    assert breakers.open_breakers() == {}  # the router plans it again, so the executor can probe


def test_only_deployment_faults_count() -> None:
    from gateway.core.attempts import is_deployment_fault

    assert is_deployment_fault(InternalServerError("x", body=None, status_code=503))
    assert not is_deployment_fault(BadRequestError("x", body=None, status_code=400))


@pytest.mark.parametrize(
    "field",
    [
        "window_s",
        "min_calls",
        "error_rate",
        "cooldown_s",
        "cooldown_factor",
        "max_cooldown_s",
        "half_open_probes",
    ],
)
def test_impossible_settings_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        BreakerSettings(**{field: 0 if field != "cooldown_factor" else 0.5})


class Worker:
    def __init__(self, url: str, prefix: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), url, prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        )
        assert json.loads(self._line()) == {"ready": True}

    def _line(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def __call__(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return dict(json.loads(self._line()))

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def test_two_processes_share_one_breaker(redis_server: RedisServer) -> None:
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    a, b = Worker(redis_server.url, prefix), Worker(redis_server.url, prefix)
    try:
        for _ in range(3):
            a(op="record", name="gpt", ok=False, now=100)
        assert b(op="allow", name="gpt", now=101)["allowed"] is False  # B sees A's trip
        assert b(op="open", now=101) == {"open": ["gpt"]}
        probe_b = b(op="allow", name="gpt", now=110)
        probe_a = a(op="allow", name="gpt", now=110)
        assert (probe_b["probe"], probe_a["allowed"]) == (True, False)  # one probe across both
        b(op="record", name="gpt", ok=False, now=110.5, probe=True)
        assert a(op="allow", name="gpt", now=125)["allowed"] is False  # cooldown doubled: 20 s
        assert a(op="allow", name="gpt", now=130.5)["probe"] is True
        assert a(op="record", name="gpt", ok=True, now=131, probe=True)["status"] == "closed"
        assert b(op="allow", name="gpt", now=131)["allowed"] is True
    finally:
        a.close()
        b.close()
        client = redis.Redis.from_url(redis_server.url)
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()


# --- settings per deployment, from the policy -------------------------------------------------------

PROVIDER = "version: 1\nproviders:\n  up: {kind: openai, base_url: 'http://127.0.0.1:9'}\nmodels:\n"


def test_each_deployment_has_its_own_settings() -> None:
    clock = Clock()
    strict = BreakerSettings(min_calls=2, error_rate=1.0, cooldown_s=5, max_cooldown_s=5)
    breakers = Breakers(MemoryBackend(), SETTINGS, clock=clock, per_deployment={"strict": strict})
    for _ in range(2):
        breakers.record("strict", ok=False)
        breakers.record("lenient", ok=False)
    assert (breakers.allow("strict").allowed, breakers.allow("lenient").allowed) == (False, True)
    clock.now += 5  # strict's own cooldown, not the default's 10 s
    assert breakers.allow("strict").probe


def test_policy_sections_become_settings_and_follow_a_reload() -> None:
    from gateway.policy import parse_policy
    from gateway.resilience.breaker import PolicyBreakerSettings, policy_breakers

    text = PROVIDER + "  a: {provider: up, breaker: {min_calls: 2, cooldown_s: 900}}\n  b: {provider: up}\n"
    policy = parse_policy(text, filename="p.yaml")
    assert policy_breakers(policy) == {
        "a": BreakerSettings(min_calls=2, cooldown_s=900, max_cooldown_s=900)  # cap raised to it
    }
    current = [policy]
    table = PolicyBreakerSettings(lambda: current[0])
    assert set(table()) == {"a"}
    current[0] = parse_policy(PROVIDER + "  b: {provider: up, breaker: {window_s: 5}}\n", filename="p.yaml")
    assert table() == {"b": BreakerSettings(window_s=5)}


def test_a_cap_below_the_cooldown_names_the_field() -> None:
    from gateway.policy import parse_policy
    from gateway.resilience.breaker import policy_breakers

    text = PROVIDER + "  a: {provider: up, breaker: {cooldown_s: 60, max_cooldown_s: 30}}\n"
    with pytest.raises(ValueError, match=r"models\.a\.breaker\.max_cooldown_s \(30\.0\) is below"):
        policy_breakers(parse_policy(text, filename="p.yaml"))


def _policy(path: Path, base_url: str, breaker: str) -> Path:
    path.write_text(
        f"""
version: 1
providers:
  up: {{kind: openai, base_url: "{base_url}", api_key: "sk-breaker-test"}}
models:
  flaky: {{provider: up, model: upstream-flaky{breaker}}}
"""
    )
    return path


@pytest.mark.parametrize("section", ["", ", breaker: {min_calls: 2, error_rate: 1.0, cooldown_s: 0.3}"])
def test_a_policy_breaker_opens_after_two_failures_then_probes(tmp_path: Path, section: str) -> None:
    import time

    import gateway
    from tests.servers.http import LoopbackServer
    from tests.servers.openai_server import error_reply, handle

    failing = {"on": True}
    messages = [{"role": "user", "content": "breaker"}]

    def upstream(rec):  # type: ignore[no-untyped-def]
        return error_reply(503) if failing["on"] else handle(rec)

    with LoopbackServer(upstream) as server:
        policy = _policy(tmp_path / "p.yaml", server.base_url, section)
        with gateway.OpenAI(policy=policy, max_retries=0) as client:
            for _ in range(3):
                with pytest.raises(gateway.APIError) as caught:
                    client.chat.completions.create(model="flaky", messages=messages)
            if not section:  # the default needs 10 calls: the third request reached the upstream
                assert len(server.log) == 3 and "circuit breaker" not in str(caught.value)
                return
            assert len(server.log) == 2  # the third was refused without a call
            assert "circuit breaker open after 2 failures in 2 calls" in str(caught.value)
            failing["on"] = False
            time.sleep(0.35)  # the policy's cooldown: the next request is the half-open probe
            reply = client.chat.completions.create(model="flaky", messages=messages)
            assert reply.model == "upstream-flaky" and len(server.log) == 3
