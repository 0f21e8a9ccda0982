"""The shipped presets load, pass their lints strictly, plan, and the committed schema is current."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.commands.policy import policy_json_schema
from gateway.core.types import ChatRequest
from gateway.policy import lint_policy, load_policy
from gateway.router import StatsSnapshot, plan

POLICIES = Path(__file__).resolve().parents[2] / "policies"
PRESETS = ["default", "cost-first", "quality-first", "local-only"]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_lints_clean_and_plans(name: str, preset_env) -> None:
    policy = load_policy(POLICIES / f"{name}.yaml")
    assert lint_policy(policy) == []
    request = ChatRequest(model="route:default", messages=[{"role": "user", "content": "hello"}])
    for route in policy.routes:
        result = plan(request, route, policy, StatsSnapshot(), prompt_tokens=50)
        assert result.require().candidates, route


def test_local_only_preset_needs_no_keys() -> None:
    policy = load_policy(POLICIES / "local-only.yaml", env={})
    request = ChatRequest(model="route:default", messages=[{"role": "user", "content": "hello"}])
    result = plan(request, "default", policy, StatsSnapshot(), prompt_tokens=5)
    assert [c.model for c in result.candidates] == ["local/smollm2-135m-instruct"]


def test_presets_read_keys_from_the_environment(preset_env) -> None:
    policy = load_policy(POLICIES / "default.yaml")
    key = policy.providers["openai"].api_key
    assert key is not None and key.get_secret_value() == preset_env["OPENAI_API_KEY"]


def test_committed_schema_is_current() -> None:
    committed = json.loads((POLICIES / "policy.schema.json").read_text())
    assert committed == policy_json_schema()


def test_schema_forbids_unknown_keys_in_every_section() -> None:
    schema = policy_json_schema()
    sections = [schema, *schema["$defs"].values()]
    objects = [s for s in sections if s.get("type") == "object"]
    assert len(objects) == len(sections) >= 15
    assert all(s["additionalProperties"] is False for s in objects)


def test_the_schema_default_stream_buffer_is_the_cores() -> None:
    from gateway.core.attempts import DEFAULT_BUFFER_TOKENS
    from gateway.policy import parse_policy

    policy = parse_policy("version: 1\nroutes: {r: {candidates: [openai/gpt-4o-mini]}}\n")
    assert policy.routes["r"].buffer_tokens == DEFAULT_BUFFER_TOKENS == 4
