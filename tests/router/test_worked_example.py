"""The worked example of ``gateway/router.py``'s docstring, checked number by number."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.router import Candidate, Exclusion, StatsSnapshot, plan
from tests.router.conftest import request


def test_worked_example(worked) -> None:
    result = plan(request(), "support", worked, StatsSnapshot(), prompt_tokens=1000)
    assert (result.route, result.prompt_tokens, result.output_tokens, result.exclusions) == (
        "support",
        1000,
        500,
        (),
    )
    small, big, local = result.candidates
    assert small == Candidate(
        model="small",
        provider="openai",
        upstream="small",
        quality=0.7,
        latency_s=pytest.approx(4.3),
        cost_usd=Decimal("0.00045"),
        quality_score=pytest.approx(0.5 / 0.7),
        speed_score=1.0,
        cost_score=pytest.approx(0.94),
        total=pytest.approx(0.845142857),
        basis="weights",
    )
    assert big == Candidate(
        "big", "openai", "big", 0.9, pytest.approx(5.5), Decimal("0.0075"),
        1.0, pytest.approx(14.6 / 15.8), 0.0, pytest.approx(0.777215190), "weights",
    )  # fmt: skip
    assert local == Candidate(
        "local",
        "local",
        "local",
        0.2,
        pytest.approx(20.1),
        Decimal(0),
        0.0,
        0.0,
        1.0,
        pytest.approx(0.2),
        "weights",
    )
    assert small.reason == (
        "weights: total 0.845 (quality 0.71, speed 1.00, cost 0.94; est. quality 0.70, 4.30s, $0.000450)"
    )


def test_worked_example_with_tools_excludes_local_and_ties(worked) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    result = plan(request(tools=tools), "support", worked, StatsSnapshot(), prompt_tokens=1000)
    assert result.exclusions == (Exclusion("local", "missing_capability", "does not support tools"),)
    # Over two candidates each wins two dimensions: 0.5 * 1 = 0.3 * 1 + 0.2 * 1, a tie; declared order decides.
    assert [(c.model, c.total) for c in result.candidates] == [("big", 0.5), ("small", 0.5)]
