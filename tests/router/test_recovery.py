"""The router and ``LiveStats`` together on a simulated clock (no I/O, no sleeping).

A slowed deployment loses the traffic within a few requests; after a 60 s outage of timeouts (the
failoverbench S15 shape, seen by the router) it regains the head within 30 s of recovering.
"""

from __future__ import annotations

import random

from gateway.core.attempts import AttemptRecord, Candidate
from gateway.router import plan
from gateway.stats import LiveStats
from providers.base import Target
from tests.router.conftest import policy_with, request

FAST = "  fast-a: {provider: openai, price: {input: 1, output: 1}, quality: 0.8, ttft_s: 0.3, tokens_per_s: 100}\n" \
       "  fast-b: {provider: openai, price: {input: 1, output: 1}, quality: 0.8, ttft_s: 0.6, tokens_per_s: 100}\n"  # fmt: skip
POLICY = policy_with(
    "    candidates: [fast-a, fast-b]\n    explore: 0.05\n    expected_output_tokens: 100\n", FAST
)


def _record(name: str, at: float, outcome: str, ttft: float | None, duration: float) -> AttemptRecord:
    target = Target(provider="openai", kind="openai", base_url="http://127.0.0.1:1", model=name)
    return AttemptRecord("r", 0, Candidate(target, name), "r", at, duration, ttft, outcome, 200, None)


def _simulate(slow_until: float, end: float, *, timeouts: bool) -> list[tuple[float, str]]:
    """10 requests a second; fast-a answers in 5 s (or times out at 5 s) until ``slow_until``."""
    now = [0.0]
    stats = LiveStats(clock=lambda: now[0])
    rng = random.Random(11)
    heads = []
    while now[0] < end:
        head = plan(request(), "r", POLICY, stats.snapshot(), prompt_tokens=100, rng=rng).candidates[0].model
        heads.append((now[0], head))
        if head == "fast-a" and now[0] < slow_until:
            record = (
                _record(head, now[0], "APITimeoutError", None, 5.0)
                if timeouts
                else _record(head, now[0], "ok", 5.0, 6.0)
            )
            stats.attempt_finished(record)
        else:
            ttft = 0.3 if head == "fast-a" else 0.6
            stats.attempt_finished(_record(head, now[0], "ok", ttft, ttft + 1.0))
        now[0] += 0.1
    return heads


def test_a_slowed_deployment_loses_the_head_within_a_few_requests() -> None:
    heads = _simulate(slow_until=1e9, end=10.0, timeouts=False)
    first_leave = next(i for i, (_, head) in enumerate(heads) if head == "fast-b")
    assert first_leave <= 3
    late = [head for at, head in heads if at >= 2.0]
    assert late.count("fast-a") / len(late) <= 0.1  # only exploration goes back to it


def test_a_recovered_deployment_regains_the_head_within_30_s() -> None:
    heads = _simulate(slow_until=60.0, end=120.0, timeouts=True)
    during = [head for at, head in heads if 5.0 <= at < 60.0]
    assert during.count("fast-a") / len(during) <= 0.1
    # After recovery at 60 s: from some time before 90 s on, fast-a leads all but the explored share.
    after = [head for at, head in heads if 90.0 <= at < 120.0]
    assert after.count("fast-a") / len(after) >= 0.9
