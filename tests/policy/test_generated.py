"""Hundreds of generated policies: valid ones load; broken ones fail with a PolicyError, nothing else."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.errors import PolicyError
from gateway.policy import parse_policy, policy_index
from tests.policy.conftest import ENV

NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
CATALOG = [
    "openai/gpt-4o-mini",
    "anthropic/claude-haiku-4-5",
    "gemini/gemini-2.5-flash",
    "local/smollm2-135m-instruct",
]
PRICES = st.decimals(min_value=0, max_value=100, places=3, allow_nan=False, allow_infinity=False)


@st.composite
def model_entries(draw: st.DrawFn) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "provider": draw(st.sampled_from(["openai", "anthropic", "groq", "local", "together"]))
    }
    if draw(st.booleans()):
        entry["price"] = {"input": str(draw(PRICES)), "output": str(draw(PRICES))}
    if draw(st.booleans()):
        entry["context_window"] = draw(st.integers(1, 2_000_000))
    if draw(st.booleans()):
        entry["quality"] = draw(st.floats(0, 1))
    if draw(st.booleans()):
        entry["capabilities"] = {"tools": draw(st.booleans()), "vision": draw(st.booleans())}
    if draw(st.booleans()):
        entry["tags"] = draw(st.lists(st.sampled_from(["local", "fast", "eu"]), unique=True))
    return entry


@st.composite
def policies(draw: st.DrawFn) -> dict[str, Any]:
    models = draw(st.dictionaries(NAMES, model_entries(), max_size=5))
    pool = sorted(models) + CATALOG
    routes: dict[str, Any] = {}
    for name in draw(st.lists(NAMES, unique=True, max_size=4)):
        route: dict[str, Any] = {
            "candidates": draw(st.lists(st.sampled_from(pool), min_size=1, max_size=5, unique=True))
        }
        objective = draw(st.sampled_from(["weights", "minimize", "none"]))
        if objective == "weights":
            route["weights"] = {k: draw(st.floats(0, 10)) for k in ("quality", "speed", "cost")}
        elif objective == "minimize":
            route["minimize"] = draw(st.sampled_from(["cost", "latency"]))
        if draw(st.booleans()):
            route["min_quality"] = draw(st.floats(0, 1))
        if draw(st.booleans()):
            route["fallback"] = {
                "on": draw(st.lists(st.sampled_from(["rate_limit", "timeout", "auth"]), unique=True))
            }
        routes[name] = route
    budgets = {
        name: {"window": draw(st.sampled_from(["minute", "day"])), "limit_usd": str(draw(PRICES))}
        for name in draw(st.lists(NAMES, unique=True, max_size=2))
    }
    policy: dict[str, Any] = {"version": 1, "models": models, "routes": routes, "budgets": budgets}
    if draw(st.booleans()):
        policy["providers"] = {"openai": {"api_key": "${OPENAI_API_KEY}"}}
    return policy


def _dump(policy: dict[str, Any], fmt: str) -> str:
    return json.dumps(policy) if fmt == "json" else yaml.safe_dump(policy, sort_keys=False)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policy=policies(), fmt=st.sampled_from(["yaml", "json"]))
def test_valid_policies_load(policy: dict[str, Any], fmt: str) -> None:
    loaded = parse_policy(_dump(policy, fmt), filename=f"gen.{fmt}", env=ENV)
    assert list(loaded.routes) == list(policy["routes"])
    for name, route in policy["routes"].items():
        assert loaded.routes[name].candidates == route["candidates"]
    for name, budget in policy["budgets"].items():
        assert loaded.budgets[name].limit_usd == Decimal(budget["limit_usd"])
    assert set(policy_index(loaded).routes) == set(policy["routes"])


MUTATIONS = st.sampled_from(["delete", "insert", "duplicate-line", "replace", "truncate"])


def _mutate(text: str, how: str, at: int, junk: str) -> str:
    at %= max(len(text), 1)
    lines = text.splitlines(keepends=True)
    match how:
        case "delete":
            return text[:at] + text[at + len(junk) + 1 :]
        case "insert":
            return text[:at] + junk + text[at:]
        case "duplicate-line":
            index = at % max(len(lines), 1)
            return "".join(lines[: index + 1] + lines[index:])
        case "replace":
            return text[:at] + junk + text[at + len(junk) :]
        case _:
            return text[:at]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    policy=policies(),
    fmt=st.sampled_from(["yaml", "json", "toml"]),
    how=MUTATIONS,
    at=st.integers(0, 10_000),
    junk=st.text(alphabet=st.sampled_from(list(":-[]{}&*!|>'\"#%@`,? \n\tab1$.=~")), min_size=1, max_size=6),
)
def test_broken_policies_fail_with_a_policy_error(
    policy: dict[str, Any], fmt: str, how: str, at: int, junk: str
) -> None:
    text = _mutate(_dump(policy, "json" if fmt == "json" else "yaml"), how, at, junk)
    try:
        parse_policy(text, filename=f"gen.{fmt}", env=ENV)
    except PolicyError as exc:
        assert exc.errors and all(isinstance(error, PolicyError) for error in exc.errors)
        assert all(error.file == f"gen.{fmt}" for error in exc.errors)
        assert ENV["OPENAI_API_KEY"] not in str(exc)
        if fmt != "toml":  # tomllib keeps no positions: its locations come from a line scanner
            assert exc.errors[0].line is not None and exc.errors[0].column is not None, str(exc)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300), fmt=st.sampled_from(["yaml", "json", "toml"]))
def test_arbitrary_text_never_raises_anything_else(text: str, fmt: str) -> None:
    try:
        parse_policy(text, filename=f"any.{fmt}", env=ENV)
    except PolicyError as exc:
        assert exc.errors


@settings(max_examples=100, deadline=None)
@given(policy=policies(), key=NAMES, section=st.sampled_from(["top", "route"]))
def test_an_injected_unknown_key_is_always_located(policy: dict[str, Any], key: str, section: str) -> None:
    target = policy if section == "top" or not policy["routes"] else next(iter(policy["routes"].values()))
    known = {"version", "models", "routes", "budgets", "providers", "rate_limits", "state", "telemetry"}
    if key in known or key in target or (target is not policy and key in _ROUTE_FIELDS):
        return
    target[key] = 1
    try:
        parse_policy(yaml.safe_dump(policy), filename="gen.yaml", env=ENV)
    except PolicyError as exc:
        unknown = [e for e in exc.errors if e.code == "policy.unknown-field"]
        assert unknown and all(e.line is not None and e.column is not None for e in unknown)
    else:
        raise AssertionError("an unknown key was accepted")


_ROUTE_FIELDS = {
    "candidates", "weights", "minimize", "min_quality", "max_latency_ms", "max_cost_usd", "requires", "data",
    "balance", "balance_weights", "explore", "expected_output_tokens", "fallback", "retry", "timeouts", "hedge",
    "buffer_tokens", "drop_unsupported_params", "eval_set",
}  # fmt: skip


TAGS = ["!!int", "!!float", "!!bool", "!!null", "!!str", "!!binary", "!!python/tuple", "!!omap", "!!pairs",
        "!!set", "!!timestamp", "!!merge", "!!value", "!local", "!!python/object:os.system", ""]  # fmt: skip
VALUES = st.one_of(
    st.text(alphabet=st.characters(codec="ascii", exclude_characters="\r\n\\\"'"), max_size=8),
    st.sampled_from(
        ["0x", "0b2", "1e999", ".nan", "-.inf", "0o9", "1_000", "~", "[]", "{}", "*a", "&a 1", "[*a]"]
    ),
)


@settings(max_examples=300, deadline=None)
@given(tag=st.sampled_from(TAGS), value=VALUES, anchor=st.booleans())
def test_tagged_and_aliased_scalars_never_raise_anything_else(tag: str, value: str, anchor: bool) -> None:
    prefix = "base: &a {x: 1}\n" if anchor else ""
    text = f"version: 1\n{prefix}telemetry:\n  service_name: {tag} {value}\n"
    try:
        parse_policy(text, filename="tags.yaml", env=ENV)
    except PolicyError as exc:
        assert exc.errors and all(error.file == "tags.yaml" for error in exc.errors)
