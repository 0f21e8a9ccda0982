"""Re-planning logged requests: exploration stays within its share, least_busy spreads overlapping
requests by the replayed choices' own in-flight counts, and a Redis store replays like SQLite."""

from __future__ import annotations

import uuid
from decimal import Decimal

from gateway.commands.replan import LatencyFit, logged_requests, replay
from gateway.policy import parse_policy
from gateway.state.base import UsageRecord
from gateway.state.redis import RedisBackend
from tests.state.conftest import RedisServer

T0 = 1_800_000_000.0
POLICY = """
version: 1
models:
  big: {provider: openai, model: big-1, price: {input: 10, output: 30}, quality: 0.9, ttft_s: 0.3, tokens_per_s: 100}
  small: {provider: openai, model: small-1, price: {input: 0.1, output: 0.4}, quality: 0.6, ttft_s: 0.3, tokens_per_s: 100}
routes:
  explore: {candidates: [big, small], utility: {quality_usd_per_1k: 2, latency_usd_per_1k: 0}, explore: 0.1}
  busy: {candidates: [big, small], balance: least_busy}
"""


def logged(route: str, count: int, *, every_s: float, latency_s: float) -> list[UsageRecord]:
    """``count`` requests served by ``big``, one every ``every_s``, each taking ``latency_s``."""
    return [
        UsageRecord(f"req-{route}-{i}:0", T0 + i * every_s + latency_s, "", "-", route, "openai", "big", 100, 50,
                    Decimal("0.0025"), latency_s=latency_s)
        for i in range(count)
    ]  # fmt: skip


def test_exploration_stays_within_its_share() -> None:
    records = logged("explore", 1000, every_s=1.0, latency_s=0.2)
    requests, _ = logged_requests(records)
    side = replay(requests, records, parse_policy(POLICY), lambda eval_set: None, seed=3)["explore"]
    assert side.served == 1000
    assert 60 <= side.requests["small"] <= 140  # explore: 0.1 of 1000, seeded


def test_least_busy_spreads_overlapping_requests() -> None:
    # twenty requests 50 ms apart, each 1 s long: about twenty overlap at the peak
    records = logged("busy", 20, every_s=0.05, latency_s=1.0)
    requests, _ = logged_requests(records)
    side = replay(requests, records, parse_policy(POLICY), lambda eval_set: None)["busy"]
    # small's estimated 0.8 s (ttft 0.3 + 50 tokens at 100/s) frees it sooner than big's logged 1.0 s
    assert dict(side.requests) == {"big": 9, "small": 11}
    unbalanced = parse_policy(POLICY.replace("balance: least_busy", "minimize: cost"))
    assert dict(replay(requests, records, unbalanced, lambda eval_set: None)["busy"].requests) == {
        "small": 20
    }


def test_latency_fit_needs_enough_answers() -> None:
    records = logged("busy", 2, every_s=1.0, latency_s=1.0)
    assert LatencyFit(records).estimate("big", 50) is None
    assert LatencyFit(logged("busy", 3, every_s=1.0, latency_s=1.0)).estimate("big", 50) == 1.0


def test_replay_reads_a_redis_store(redis_server: RedisServer) -> None:
    backend = RedisBackend(redis_server.url, key_prefix=f"replay-{uuid.uuid4().hex[:8]}:")
    try:
        backend.append_usage(logged("busy", 20, every_s=0.05, latency_s=1.0))
        records = backend.usage_records(T0)
    finally:
        backend.close()
    requests, _ = logged_requests(records)
    assert len(requests) == 20
    side = replay(requests, records, parse_policy(POLICY), lambda eval_set: None)["busy"]
    assert dict(side.requests) == {"big": 9, "small": 11}
