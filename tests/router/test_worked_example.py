"""The worked example of ``gateway/router.py``'s docstring, checked number by number."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.router import Candidate, Exclusion, StatsSnapshot, plan, route_rates
from tests.router.conftest import WORKED_EXAMPLE, request


def test_worked_example(worked) -> None:
    result = plan(request(), "support", worked, StatsSnapshot(), prompt_tokens=1000)
    assert (result.route, result.prompt_tokens, result.output_tokens, result.exclusions) == (
        "support",
        1000,
        500,
        (),
    )
    big, small, local = result.candidates
    assert big == Candidate(
        model="big",
        provider="openai",
        upstream="big",
        quality=0.9,
        ttft_s=0.5,
        latency_s=pytest.approx(5.5),
        cost_usd=Decimal("0.0075"),
        utility=pytest.approx(225 - 7.5 - 8.25),
        samples=0.0,
        basis="weights",
    )
    assert small == Candidate(
        "small", "openai", "small", 0.7, 0.3, pytest.approx(4.3), Decimal("0.00045"),
        pytest.approx(175 - 0.45 - 6.45), 0.0, "weights",
    )  # fmt: skip
    assert local == Candidate(
        "local", "local", "local", 0.2, 0.1, pytest.approx(20.1), Decimal(0), pytest.approx(50 - 30.15), 0.0,
        "weights",
    )  # fmt: skip
    assert big.reason == (
        "weights: utility $209.25/1k requests (quality 0.90, ttft 0.50s, latency 5.50s, $0.007500/request)"
    )


def test_the_legacy_weights_are_the_utility_they_map_to(worked) -> None:
    from gateway.policy import parse_policy

    as_utility = WORKED_EXAMPLE.replace(
        "weights: {quality: 0.5, speed: 0.3, cost: 0.2}",
        "utility: {quality_usd_per_1k: 2.5, latency_usd_per_1k: 1.5}",
    )
    rates = route_rates(worked.routes["support"])
    assert (rates.quality, rates.ttft, rates.latency, rates.cost) == pytest.approx((2.5, 0, 1.5, 1))
    legacy = plan(request(), "support", worked, StatsSnapshot(), prompt_tokens=1000)
    new = plan(request(), "support", parse_policy(as_utility, env={}), StatsSnapshot(), prompt_tokens=1000)
    assert [(c.model, c.utility) for c in new.candidates] == [
        (c.model, pytest.approx(c.utility)) for c in legacy.candidates
    ]
    assert {c.basis for c in new.candidates} == {"utility"}


def test_worked_example_with_tools_excludes_local(worked) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    result = plan(request(tools=tools), "support", worked, StatsSnapshot(), prompt_tokens=1000)
    assert result.exclusions == (Exclusion("local", "missing_capability", "does not support tools"),)
    # Utilities are per candidate: dropping local changes neither of the others'.
    assert [(c.model, c.utility) for c in result.candidates] == [
        ("big", pytest.approx(209.25)),
        ("small", pytest.approx(168.1)),
    ]
