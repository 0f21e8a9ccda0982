"""Every exclusion reason, each with its stable code and message; a plan with no survivor."""

from __future__ import annotations

import pytest

from gateway.core.errors import NoRouteError
from gateway.router import Exclusion, ModelStats, StatsSnapshot, plan
from tests.router.conftest import policy_with, request

TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
IMAGE = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]


def _excluded(result) -> list[tuple[str, str]]:
    return [(e.model, e.code) for e in result.exclusions]


@pytest.mark.parametrize(
    ("extra", "capability"),
    [
        ({"tools": TOOLS}, "tools"),
        ({"functions": [{"name": "f", "parameters": {}}]}, "tools"),
        ({"messages": [{"role": "user", "content": IMAGE}]}, "vision"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}},
            "json_schema",
        ),
    ],
)
def test_missing_capability_from_the_request(worked, extra, capability) -> None:
    body = {"model": "route:support", "messages": [{"role": "user", "content": "hi"}], **extra}
    from gateway.core.types import ChatRequest

    result = plan(ChatRequest(**body), "support", worked, StatsSnapshot(), prompt_tokens=10)
    assert result.exclusions == (Exclusion("local", "missing_capability", f"does not support {capability}"),)
    assert [c.model for c in result.candidates] == ["big", "small"] or capability != "tools"


def test_json_object_mode_needs_no_json_schema(worked) -> None:
    result = plan(
        request(response_format={"type": "json_object"}), "support", worked, StatsSnapshot(), prompt_tokens=10
    )
    assert result.exclusions == ()


def test_streaming_and_route_requires() -> None:
    policy = policy_with(
        "    candidates: [local, nostream]\n    requires: [vision]\n",
        "  nostream: {provider: openai, capabilities: {streaming: false, vision: true}}\n",
    )
    result = plan(request(stream=True), "r", policy, StatsSnapshot(), prompt_tokens=10)
    assert result.exclusions == (
        Exclusion("local", "missing_capability", "does not support vision"),
        Exclusion("nostream", "missing_capability", "does not support streaming"),
    )


def test_context_window_counts_prompt_output_and_buffer() -> None:
    policy = policy_with("    candidates: [local, small]\n    buffer_tokens: 100\n")
    fits = plan(request(max_tokens=1000), "r", policy, StatsSnapshot(), prompt_tokens=7092)
    assert fits.exclusions == ()
    result = plan(request(max_tokens=1000), "r", policy, StatsSnapshot(), prompt_tokens=7093)
    assert result.exclusions == (
        Exclusion("local", "context_window", "needs 8193 tokens, the window holds 8192"),
    )


def test_max_output(worked) -> None:
    result = plan(request(max_completion_tokens=4096), "support", worked, StatsSnapshot(), prompt_tokens=10)
    assert result.exclusions == (
        Exclusion("local", "max_output", "asks for 4096 output tokens, the model writes at most 2048"),
    )
    assert result.output_tokens == 4096


def test_breaker_open_and_over_budget(worked) -> None:
    stats = StatsSnapshot(
        models={"big": ModelStats(breaker_open=True, breaker_reason="5 failures in 30 s")},
        over_budget=frozenset({"small"}),
    )
    result = plan(request(), "support", worked, stats, prompt_tokens=10)
    assert result.exclusions == (
        Exclusion("big", "breaker_open", "circuit breaker open (5 failures in 30 s)"),
        Exclusion("small", "over_budget", "over budget"),
    )
    assert [c.model for c in result.candidates] == ["local"]


def test_local_only() -> None:
    policy = policy_with("    candidates: [big, local]\n    data: local_only\n")
    result = plan(request(), "r", policy, StatsSnapshot(), prompt_tokens=10)
    assert _excluded(result) == [("big", "not_local")]
    assert [c.model for c in result.candidates] == ["local"]


def test_min_quality_max_latency_max_cost() -> None:
    policy = policy_with("    candidates: [big, small, local]\n    min_quality: 0.5\n")
    assert _excluded(plan(request(), "r", policy, StatsSnapshot(), prompt_tokens=1000)) == [
        ("local", "min_quality")
    ]
    policy = policy_with("    candidates: [big, small, local]\n    max_latency_ms: 5000\n")
    result = plan(request(max_tokens=500), "r", policy, StatsSnapshot(), prompt_tokens=1000)
    assert result.exclusions == (
        Exclusion("big", "max_latency", "estimated 5500 ms exceeds max_latency_ms 5000"),
        Exclusion("local", "max_latency", "estimated 20100 ms exceeds max_latency_ms 5000"),
    )
    policy = policy_with(
        "    candidates: [big, small, free]\n    max_cost_usd: 0.001\n", "  free: {provider: openai}\n"
    )
    result = plan(request(max_tokens=500), "r", policy, StatsSnapshot(), prompt_tokens=1000)
    assert result.exclusions == (
        Exclusion("big", "max_cost", "estimated cost $0.0075 exceeds max_cost_usd 0.001"),
        Exclusion("free", "max_cost", "estimated cost unknown exceeds max_cost_usd 0.001"),
    )


def test_no_survivor_raises_no_route_with_the_plan(worked) -> None:
    stats = StatsSnapshot(over_budget=frozenset({"big", "small", "local"}))
    result = plan(request(), "support", worked, stats, prompt_tokens=10)
    assert result.candidates == ()
    with pytest.raises(NoRouteError) as info:
        result.require()
    assert info.value.plan is result and info.value.status_code == 400
    assert "big: over budget; small: over budget; local: over budget" in info.value.message


def test_unknown_route_suggests(worked) -> None:
    with pytest.raises(NoRouteError) as info:
        plan(request(), "suport", worked, StatsSnapshot(), prompt_tokens=10)
    assert "unknown route or model 'suport'; did you mean 'support'?" in info.value.message


def test_a_model_name_plans_that_model_alone(worked) -> None:
    result = plan(request(), "gpt-4o-mini", worked, StatsSnapshot(), prompt_tokens=10)
    assert [(c.model, c.upstream) for c in result.candidates] == [("openai/gpt-4o-mini", "gpt-4o-mini")]
    assert [
        c.model for c in plan(request(), "route:small", worked, StatsSnapshot(), prompt_tokens=1).candidates
    ] == ["small"]
