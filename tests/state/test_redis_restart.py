"""A Redis restart mid-run loses no reply and no record.

Clients built from a policy (state on the test's own ``redis-server``, which the test kills and
starts again on the same port while requests are in flight) keep answering every request: budgets
(``fail_open: {budgets: true}``), rate limits and breakers carry on with process-local state, usage
records go to the on-disk spool. Once Redis is back, the spool is drained and the local budget
settlements replayed, and the upstream's own ledger reconciles with Redis token for token.

Redis runs with appendonly and ``appendfsync always``, so what it acknowledged before the kill
survives it (as in a production Redis with persistence); what it never acknowledged is ours to keep.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import gateway
from gateway.budgets import Budget, Budgets, Subject
from gateway.state import BackendConfig, open_backend
from gateway.state.outage import DegradingBackend
from tests.servers import openai_server
from tests.servers.http import LoopbackServer
from tests.state.conftest import RedisServer

PREFIX = "restart:"
LIMIT_TOKENS = 10_000_000


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisServer]:
    data = tmp_path / "redis-data"
    data.mkdir()
    server = RedisServer(extra_args=("--appendonly", "yes", "--appendfsync", "always", "--dir", str(data)))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def upstream() -> Iterator[LoopbackServer]:
    with LoopbackServer(openai_server.handle) as server:
        yield server


@pytest.fixture
def policy(tmp_path: Path, durable_redis: RedisServer, upstream: LoopbackServer, monkeypatch) -> Path:
    monkeypatch.setenv("SWITCHYARD_USAGE_SPOOL", str(tmp_path / "spool"))
    monkeypatch.setenv("RESTART_TEST_KEY", "sk-restart-test")
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""
version: 1
providers:
  up: {{kind: openai, base_url: "{upstream.base_url}/v1", api_key: "${{RESTART_TEST_KEY}}"}}
models:
  mini: {{provider: up, model: gpt-4o-mini, price: {{input: 1, output: 2}}}}
routes:
  chat: {{candidates: [mini]}}
state: {{backend: redis, url: "{durable_redis.url}", key_prefix: "{PREFIX}", fail_open: {{budgets: true}}}}
budgets: {{all: {{window: day, limit_tokens: {LIMIT_TOKENS}}}}}
rate_limits: {{all: {{rpm: 1000000}}}}
"""
    )
    return path


def _sync_traffic(client: gateway.OpenAI, stop: threading.Event, replies: list[str], errors: list[Exception]):
    i = 0
    while not stop.is_set():
        i += 1
        messages = [{"role": "user", "content": f"{threading.get_ident()} request {i} hello"}]
        try:
            if i % 2:
                reply = client.chat.completions.create(model="route:chat", messages=messages, max_tokens=20)
                replies.append(reply.choices[0].message.content or "")
            else:  # a stream without include_usage: the policy client asks upstream for it
                stream = client.chat.completions.create(
                    model="route:chat", messages=messages, max_tokens=20, stream=True
                )
                replies.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
        except Exception as exc:  # noqa: BLE001 - the test reports every failure
            errors.append(exc)


def _restart_mid_run(
    server: RedisServer, count: Callable[[], int], backend: DegradingBackend, errors: list[Exception]
) -> None:
    """Kill Redis once replies flow, serve some during the outage, start it again, serve some more.

    The first failed request ends the run at once (the traffic would otherwise go on failing, and
    piling up tracebacks, until a wait timed out)."""

    def wait(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if errors:
                raise AssertionError(f"a request failed while waiting until {what}") from errors[0]
            assert time.monotonic() < deadline, f"timed out waiting until {what}: {backend.stats()}"
            time.sleep(0.01)

    wait(lambda: count() >= 10, "replies flow")
    server.stop()
    killed_at = count()
    wait(lambda: backend.stats().degraded and count() >= killed_at + 20, "served during the outage")
    server.start()
    back_at = count()
    wait(lambda: not backend.stats().degraded and count() >= back_at + 10, "served after the restart")


def _reconciles(server: RedisServer, upstream: LoopbackServer, replies: int, spool: Path) -> None:
    served = [rec for rec in upstream.log if rec.path.endswith("/chat/completions")]
    assert len(served) == replies  # every request the upstream served reached its caller
    prompt = sum(rec.served_tokens["prompt"] for rec in served)
    completion = sum(rec.served_tokens["completion"] for rec in served)
    backend = open_backend(BackendConfig(server.url, key_prefix=PREFIX))
    try:
        [total] = backend.query_usage(0)
        assert (total.requests, total.prompt_tokens, total.completion_tokens) == (replies, prompt, completion)
        [status] = Budgets(backend, [Budget("all", LIMIT_TOKENS, "tokens", "day", "global")]).status(
            Subject()
        )
        assert (status.used, status.reserved) == (prompt + completion, 0)
    finally:
        backend.close()
    assert not list(spool.rglob("*.jsonl")) and not list(spool.rglob("*.draining"))  # drained


def test_a_redis_restart_mid_run_loses_no_reply_and_no_record(
    policy: Path, durable_redis: RedisServer, upstream: LoopbackServer, tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.metering")
    replies: list[str] = []
    errors: list[Exception] = []
    stop = threading.Event()
    with gateway.OpenAI(policy=str(policy), max_retries=0) as client:
        backend = client._switchyard.runtime.backend
        assert isinstance(backend, DegradingBackend)
        threads = [
            threading.Thread(target=_sync_traffic, args=(client, stop, replies, errors)) for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        try:
            _restart_mid_run(durable_redis, lambda: len(replies) + len(errors), backend, errors)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)
        stats = backend.stats()
    assert errors == []
    # One restart; a connection opened as the server went down may still fail once afterwards.
    assert stats.outages >= 1 and stats.fallbacks["budgets"] > 0 and stats.replayed > 0
    print(f"\n{len(replies)} replies; outage: {stats}")
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "usage records spooled to" in logged and "usage spool drained" in logged
    _reconciles(durable_redis, upstream, len(replies), tmp_path / "spool")


def test_the_async_client_rides_out_a_redis_restart(
    policy: Path, durable_redis: RedisServer, upstream: LoopbackServer, tmp_path: Path
) -> None:
    replies: list[str] = []
    errors: list[Exception] = []

    async def worker(client: gateway.AsyncOpenAI, n: int, stop: asyncio.Event) -> None:
        i = 0
        while not stop.is_set():
            i += 1
            messages = [{"role": "user", "content": f"task {n} request {i} hello"}]
            try:
                if i % 2:
                    reply = await client.chat.completions.create(model="route:chat", messages=messages)
                    replies.append(reply.choices[0].message.content or "")
                else:
                    stream = await client.chat.completions.create(
                        model="route:chat", messages=messages, stream=True
                    )
                    replies.append(
                        "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
                    )
            except Exception as exc:  # noqa: BLE001 - the test reports every failure
                errors.append(exc)
                stop.set()  # one failure ends the run; the restart thread reports it
            await asyncio.sleep(0)  # a request that fails without awaiting must not starve the loop

    async def main() -> Any:
        async with gateway.AsyncOpenAI(policy=str(policy), max_retries=0) as client:
            backend = client._switchyard.runtime.backend
            stop = asyncio.Event()
            tasks = [asyncio.create_task(worker(client, n, stop)) for n in range(4)]
            try:
                await asyncio.to_thread(
                    _restart_mid_run, durable_redis, lambda: len(replies) + len(errors), backend, errors
                )
            finally:
                stop.set()
                await asyncio.gather(*tasks)
            return backend.stats()

    stats = asyncio.run(main())
    assert errors == []
    assert stats.outages >= 1 and stats.replayed > 0
    _reconciles(durable_redis, upstream, len(replies), tmp_path / "spool")


@pytest.mark.parametrize("holds", [False, True], ids=["breakers-only", "with-budgets-and-rate-limits"])
def test_the_async_client_never_blocks_its_event_loop_on_a_stopped_redis(
    policy: Path, durable_redis: RedisServer, holds: bool
) -> None:
    """SIGSTOP leaves connections open and unanswered: each state call would wait out its timeout
    (1 s here). Without budgets or rate limits, the breakers are the only state the request loop
    asks, on the event loop itself. The loop must keep running meanwhile: the largest gap between
    ticks of a 10 ms ticker stays far below that timeout (measured: ~1 s with blocking breaker
    calls on the loop, ~15 ms with redis.asyncio). With budgets and rate limits, admission and
    settlement are awaited through redis.asyncio too (``Guard.aadmit``, ``Admission.asettle``)."""
    if not holds:
        text = policy.read_text()
        policy.write_text(text[: text.index("\nbudgets:")])
    gaps: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def main() -> int:
        async with gateway.AsyncOpenAI(policy=str(policy), max_retries=0) as client:
            messages = [{"role": "user", "content": "warm up"}]
            await client.chat.completions.create(model="route:chat", messages=messages)
            durable_redis.pause()
            try:
                stop = asyncio.Event()
                tick = asyncio.create_task(ticker(stop))
                served = 0
                for i in range(8):
                    messages = [{"role": "user", "content": f"paused {i}"}]
                    stream = await client.chat.completions.create(
                        model="route:chat", messages=messages, stream=True
                    )
                    served += bool([c async for c in stream])
                stop.set()
                await tick
            finally:
                durable_redis.resume()
            return served

    assert asyncio.run(main()) == 8
    print(f"\nlargest event-loop gap with Redis stopped: {max(gaps) * 1000:.1f} ms over {len(gaps)} ticks")
    assert max(gaps) < 0.5
