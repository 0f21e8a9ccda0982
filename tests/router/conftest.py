"""The worked example's policy and small request builders shared by the router tests."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.types import ChatRequest
from gateway.policy import Policy, parse_policy

WORKED_EXAMPLE = """\
version: 1
models:
  big:
    provider: openai
    price: {input: 2.50, output: 10.00}
    quality: 0.9
    ttft_s: 0.5
    tokens_per_s: 100
    context_window: 128000
  small:
    provider: openai
    price: {input: 0.15, output: 0.60}
    quality: 0.7
    ttft_s: 0.3
    tokens_per_s: 125
    context_window: 128000
  local:
    provider: local
    price: {input: 0, output: 0}
    quality: 0.2
    ttft_s: 0.1
    tokens_per_s: 25
    tags: [local]
    context_window: 8192
    max_output: 2048
    capabilities: {tools: false, vision: false, json_schema: false, streaming: true}
routes:
  support:
    candidates: [big, small, local]
    weights: {quality: 0.5, speed: 0.3, cost: 0.2}
    expected_output_tokens: 500
"""


def request(**extra: Any) -> ChatRequest:
    return ChatRequest(model="route:support", messages=[{"role": "user", "content": "hi"}], **extra)


def policy_with(route_yaml: str, models_yaml: str = "") -> Policy:
    """The worked example's models plus extra models and a route named ``r``."""
    base = WORKED_EXAMPLE.replace("routes:\n", models_yaml + "routes:\n") if models_yaml else WORKED_EXAMPLE
    return parse_policy(base + "  r:\n" + route_yaml, filename="p.yaml", env={})


@pytest.fixture
def worked() -> Policy:
    return parse_policy(WORKED_EXAMPLE, filename="worked.yaml", env={})
