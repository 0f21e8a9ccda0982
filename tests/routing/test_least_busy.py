"""``balance: least_busy`` under concurrent load: attempts in flight are counted per deployment.

Two slow loopback upstreams (each answers after ``DELAY_S``) sit behind one route. Twenty
requests through ``AsyncOpenAI`` and ``asyncio.gather``, one every ``STAGGER_S`` (so about fifteen
are in flight at the peak), are spread across both; without ``balance`` they all go to the route's
first candidate. The counts come back to zero after every kind of attempt end (answered, failed, a
stream closed early).

Requests that arrive at the same instant are all planned before any of them starts its attempt (a
policy file's guard admits each in a worker thread between the plan and the attempt), so a routed
request is counted on its first candidate from the moment it is planned, and the count is handed to
its first attempt (or dropped when the request is refused before one).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import gateway
from gateway.core.attempts import Plan, StreamInfo
from gateway.core.execute import Executor
from gateway.stats import InFlight
from tests.resilience.conftest import FAST, Records, candidate, request
from tests.servers.faults import FastServer, FaultHandler
from tests.servers.http import Recorded, Reply
from tests.servers.openai_server import handle

DELAY_S = 0.3
STAGGER_S = 0.02
REQUESTS = 20
MESSAGES = [{"role": "user", "content": "who is least busy?"}]


class Slow:
    """Answers after ``DELAY_S``; ``peak`` is the most requests it held at once."""

    def __init__(self) -> None:
        self.now = self.peak = self.served = 0
        self._lock = threading.Lock()

    def __call__(self, rec: Recorded) -> Reply:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        time.sleep(DELAY_S)
        with self._lock:
            self.now -= 1
            self.served += 1
        return handle(rec)


@pytest.fixture
def upstreams() -> Iterator[tuple[Slow, Slow, str, str]]:
    a, b = Slow(), Slow()
    with FastServer(a) as server_a, FastServer(b) as server_b:
        yield a, b, server_a.base_url, server_b.base_url


def _policy(path: Path, a_url: str, b_url: str, balance: str) -> Path:
    path.write_text(
        f"""
version: 1
providers:
  alpha: {{kind: openai, base_url: "{a_url}", api_key: sk-busy}}
  beta: {{kind: openai, base_url: "{b_url}", api_key: sk-busy}}
models:
  dep-a: {{provider: alpha, model: upstream-a, price: {{input: 1, output: 1}}}}
  dep-b: {{provider: beta, model: upstream-b, price: {{input: 1, output: 1}}}}
routes:
  busy:
    candidates: [dep-a, dep-b]
    retry: {{max_retries: 0}}
    {balance}
"""
    )
    return path


async def _burst(policy: Path, *, stream: bool, stagger_s: float = STAGGER_S) -> list[str]:
    async with gateway.AsyncOpenAI(policy=policy) as client:

        async def one(i: int) -> str:
            await asyncio.sleep(i * stagger_s)
            if not stream:
                reply = await client.chat.completions.create(model="route:busy", messages=MESSAGES)
                return reply.model
            chunks = await client.chat.completions.create(model="route:busy", messages=MESSAGES, stream=True)
            return [chunk.model async for chunk in chunks][-1]

        await one(0)  # a warm client: the first request's imports would hold the first wave together
        first = await asyncio.gather(*(one(i) for i in range(REQUESTS)))
        second = await asyncio.gather(*(one(i) for i in range(REQUESTS)))  # counts went back to 0
    return [*first, *second]


@pytest.mark.parametrize("stream", [False, True])
def test_least_busy_spreads_a_burst_across_two_deployments(upstreams, tmp_path: Path, stream: bool) -> None:  # type: ignore[no-untyped-def]
    a, b, a_url, b_url = upstreams
    policy = _policy(tmp_path / "p.yaml", a_url, b_url, "balance: least_busy")
    started = time.monotonic()
    served = asyncio.run(_burst(policy, stream=stream))
    elapsed = time.monotonic() - started
    shares = (served.count("upstream-a"), served.count("upstream-b"))
    assert (shares[0] + 1, shares[1]) == (a.served, b.served)  # the warm-up went to dep-a
    # Each wave of 20 alternates the head by in-flight count: 10 and 10, give or take two.
    assert all(REQUESTS - 4 <= share <= REQUESTS + 4 for share in shares), shares
    assert a.peak <= REQUESTS // 2 + 2 and b.peak <= REQUESTS // 2 + 2, (a.peak, b.peak)
    assert elapsed < 2 * (REQUESTS * STAGGER_S + DELAY_S) + 2.0  # nothing queued behind another


def test_without_balance_the_burst_goes_to_the_first_candidate(upstreams, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b, a_url, b_url = upstreams
    policy = _policy(tmp_path / "p.yaml", a_url, b_url, "")
    served = asyncio.run(_burst(policy, stream=False))
    assert (served.count("upstream-a"), a.served, b.served) == (2 * REQUESTS, 2 * REQUESTS + 1, 0)
    assert a.peak > REQUESTS // 2 + 1


def test_a_simultaneous_burst_is_spread(upstreams, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b, a_url, b_url = upstreams
    policy = _policy(tmp_path / "p.yaml", a_url, b_url, "balance: least_busy")
    asyncio.run(_burst(policy, stream=False, stagger_s=0.0))
    assert min(a.served - 1, b.served) >= REQUESTS


def test_every_kind_of_attempt_end_brings_the_count_back() -> None:
    records = Records()
    flights = InFlight(records)
    with FastServer(FaultHandler()) as server, httpx.Client() as http:
        executor = Executor(http, observer=flights, retry=FAST)
        broken = candidate(server, "fault:500", "p0", max_retries=0)
        healthy = candidate(server, "ok", "p1")
        executor.complete(request(), Plan([broken, healthy]), headers={}, timeout=5.0)  # fails over
        assert [r.outcome for r in records] == ["InternalServerError", "ok"] and flights.counts() == {}
        chunks = executor.stream(
            request(stream=True), Plan([healthy]), headers={}, timeout=5.0, holder=StreamInfo()
        )
        next(chunks)
        assert flights.counts() == {"p1/ok": 1}  # the stream is open
        chunks.close()
        assert records[-1].outcome == "closed" and flights.counts() == {}


def test_a_lost_record_stops_counting_after_max_age() -> None:
    now = [0.0]
    flights = InFlight(clock=lambda: now[0], max_age_s=10)
    with FastServer(FaultHandler()) as server:
        flights.attempt_started(candidate(server, "ok", "p0"))
        now[0] = 9.0
        assert flights.counts() == {"p0/ok": 1}
        now[0] = 10.5
        assert flights.counts() == {}


def test_the_wrapped_observers_other_hooks_stay_visible() -> None:
    class Inner(Records):
        def request_finished(self, request_id: str, error: object) -> None:
            self.append(request_id)  # type: ignore[arg-type]

    inner = Inner()
    flights = InFlight(inner)
    flights.request_finished("r1", None)
    assert inner == ["r1"] and getattr(InFlight(Records()), "request_finished", None) is None


def test_a_request_refused_before_any_attempt_leaves_no_count(upstreams, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b, a_url, b_url = upstreams
    policy = _policy(tmp_path / "p.yaml", a_url, b_url, "balance: least_busy")
    policy.write_text(policy.read_text() + "budgets:\n  tiny: {window: day, limit_usd: 0.000000001}\n")
    with gateway.OpenAI(policy=policy) as client:
        with pytest.raises(gateway.BudgetExceededError):
            client.chat.completions.create(model="route:busy", messages=MESSAGES, max_tokens=5)
        assert client._switchyard.runtime.observer.counts() == {}
        assert (a.served, b.served) == (0, 0)
