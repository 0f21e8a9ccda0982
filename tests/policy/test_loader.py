"""Loading valid policies from YAML, TOML and JSON, and locating every kind of error exactly."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from gateway.catalog import load_catalog
from gateway.core.errors import PolicyError
from gateway.policy import load_policy, parse_policy, policy_index
from tests.policy.conftest import ENV, errors_of, where

YAML = """\
version: 1
providers:
  openai:
    api_key: ${OPENAI_API_KEY}
    headers: {x-team: ml}
models:
  cheap:
    provider: openai
    model: gpt-4o-mini
    price: {input: 0.15, output: "0.60"}
routes:
  support:
    candidates: [cheap, anthropic/claude-haiku-4-5, gpt-4.1]
    weights: {quality: 0.5, speed: 0.3, cost: 0.2}
    fallback:
      on: [rate_limit, timeout]
      max_attempts: 2
"""

TOML = """\
version = 1

[providers.openai]
api_key = "${OPENAI_API_KEY}"
headers = { x-team = "ml" }

[models.cheap]
provider = "openai"
model = "gpt-4o-mini"
price = { input = 0.15, output = "0.60" }

[routes.support]
candidates = ["cheap", "anthropic/claude-haiku-4-5", "gpt-4.1"]
weights = { quality = 0.5, speed = 0.3, cost = 0.2 }
fallback = { on = ["rate_limit", "timeout"], max_attempts = 2 }
"""


def test_yaml_toml_and_json_load_the_same_policy() -> None:
    from_yaml = parse_policy(YAML, filename="p.yaml", env=ENV)
    from_toml = parse_policy(TOML, filename="p.toml", env=ENV)
    from_json = parse_policy(json.dumps(from_yaml.model_dump(mode="json")), filename="p.json", env=ENV)
    assert from_yaml == from_toml
    assert from_yaml.routes == from_json.routes and from_yaml.models == from_json.models


def test_values_are_resolved_and_typed() -> None:
    policy = parse_policy(YAML, filename="p.yaml", env=ENV)
    route = policy.routes["support"]
    assert route.fallback.on == ["rate_limit", "timeout"]  # "on" is a key, not the boolean True
    assert policy.models["cheap"].price is not None and policy.models["cheap"].price.output == Decimal("0.60")
    index = policy_index(policy)
    assert index.routes["support"] == ("cheap", "anthropic/claude-haiku-4-5", "openai/gpt-4.1")
    cheap = index.models["cheap"]
    assert (cheap.upstream, cheap.context_window, cheap.input_price) == (
        "gpt-4o-mini",
        128000,
        Decimal("0.15"),
    )


def test_secrets_are_expanded_but_never_shown() -> None:
    policy = parse_policy(YAML, filename="p.yaml", env=ENV)
    key = policy.providers["openai"].api_key
    assert key is not None and key.get_secret_value() == ENV["OPENAI_API_KEY"]
    assert ENV["OPENAI_API_KEY"] not in repr(policy) and ENV["OPENAI_API_KEY"] not in str(policy)


def test_load_policy_reads_a_file(tmp_path) -> None:
    path = tmp_path / "p.yml"
    path.write_text(YAML)
    assert load_policy(path, env=ENV).routes["support"].candidates[0] == "cheap"
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "missing.yaml")
    assert info.value.code == "policy.unreadable"


def test_unknown_key_points_at_the_key_with_a_suggestion() -> None:
    errors = errors_of("version: 1\nroutes:\n  r:\n    candidates: [gpt-4o]\n    wieghts: {quality: 1}\n")
    assert where(errors) == [(5, 5, "routes.r.wieghts", "policy.unknown-field")]
    assert "unknown field 'wieghts'; did you mean 'weights'?" in str(errors[0])


def test_unknown_model_names_the_candidate_index_and_suggests() -> None:
    errors = errors_of("version: 1\nroutes:\n  support:\n    candidates: [gpt-4o, gpt-4.1, gpt4o-mini]\n")
    assert where(errors) == [(4, 35, "routes.support.candidates[2]", "policy.unknown-model")]
    assert "unknown model 'gpt4o-mini'; did you mean 'gpt-4o-mini'?" in errors[0].message


def test_unknown_provider_is_located_with_a_suggestion() -> None:
    errors = errors_of("version: 1\nmodels:\n  m:\n    provider: opneai\n")
    assert where(errors) == [(4, 15, "models.m.provider", "policy.unknown-provider")]
    assert "did you mean 'openai'?" in errors[0].message


def test_wrong_literal_suggests_the_allowed_value() -> None:
    errors = errors_of("version: 1\nroutes:\n  r:\n    candidates: [gpt-4o]\n    minimize: costs\n")
    assert where(errors) == [(5, 15, "routes.r.minimize", "policy.literal-error")]
    assert "got 'costs'; did you mean 'cost'?" in errors[0].message


def test_all_errors_are_collected_in_file_order() -> None:
    text = """\
version: 2
models:
  m: {provider: openai, context_window: -5}
routes:
  r:
    candidates: [nope-model]
    data: everywhere
budgets:
  b: {window: week, limit_usd: 1}
"""
    errors = errors_of(text)
    assert where(errors) == [
        (1, 10, "version", "policy.literal-error"),
        (3, 41, "models.m.context_window", "policy.greater-than"),
        (6, 18, "routes.r.candidates[0]", "policy.unknown-model"),
        (7, 11, "routes.r.data", "policy.literal-error"),
        (9, 15, "budgets.b.window", "policy.literal-error"),
    ]
    with pytest.raises(PolicyError) as info:
        parse_policy(text, filename="p.yaml", env=ENV)
    assert str(info.value).startswith("p.yaml: 5 problems in the policy:\n  p.yaml:1:10 at version:")
    assert (info.value.line, info.value.column) == (1, 10)


def test_missing_required_field_points_at_the_parent_key() -> None:
    errors = errors_of("version: 1\nroutes:\n  r:\n    weights: {quality: 1}\n")
    assert where(errors) == [(3, 3, "routes.r", "policy.missing-field")]
    assert "missing required field 'candidates'" in errors[0].message


def test_cross_field_rules_are_located_at_the_section() -> None:
    errors = errors_of(
        "version: 1\nroutes:\n  r:\n    candidates: [gpt-4o]\n    weights: {cost: 1}\n    minimize: cost\n"
    )
    assert where(errors) == [(4, 5, "routes.r", "policy.invalid-value")]
    assert "'weights' or 'minimize', not both" in errors[0].message


def test_missing_env_var_is_named_and_located() -> None:
    errors = errors_of("version: 1\nproviders:\n  openai:\n    api_key: ${OPENAI_KEY}\n")
    assert where(errors) == [(4, 14, "providers.openai.api_key", "policy.missing-env")]
    assert "environment variable 'OPENAI_KEY' is not set; did you mean 'OPENAI_API_KEY'?" in errors[0].message


def test_env_escape_and_bad_names() -> None:
    policy = parse_policy(
        "version: 1\ntelemetry: {service_name: 'cost$$-${TEAM}'}\n", filename="p.yaml", env={"TEAM": "ml"}
    )
    assert policy.telemetry.service_name == "cost$-ml"
    errors = errors_of("version: 1\ntelemetry: {service_name: '${1BAD}'}\n")
    assert where(errors) == [(2, 27, "telemetry.service_name", "policy.env-syntax")]


def test_a_secret_that_fails_validation_is_not_echoed() -> None:
    env = {**ENV, "WINDOW": "s3cr3t-value"}
    errors = errors_of("version: 1\nmodels:\n  m: {provider: openai, context_window: '${WINDOW}'}\n", env=env)
    assert where(errors) == [(3, 41, "models.m.context_window", "policy.int-parsing")]
    assert all("s3cr3t" not in str(error) for error in errors)
    errors = errors_of("version: 1\nroutes:\n  r: {candidates: [gpt-4o], data: '${WINDOW}'}\n", env=env)
    assert "s3cr3t" not in str(errors[0]) and errors[0].code == "policy.literal-error"


def test_provider_outside_the_host_table_needs_kind_and_base_url() -> None:
    errors = errors_of("version: 1\nproviders:\n  mine: {api_key: x}\n  other: {kind: openai}\n")
    assert where(errors) == [
        (3, 3, "providers.mine", "policy.missing-field"),
        (4, 3, "providers.other", "policy.missing-field"),
    ]


def test_policy_model_outside_the_catalog_needs_a_provider() -> None:
    errors = errors_of("version: 1\nmodels:\n  homegrown: {context_window: 4096}\n")
    assert where(errors) == [(3, 3, "models.homegrown", "policy.missing-field")]


def test_duplicate_candidate_and_stray_balance_weight() -> None:
    errors = errors_of(
        "version: 1\nroutes:\n  r:\n    candidates: [gpt-4o, openai/gpt-4o]\n    balance_weights: {gpt-4o: 1, gtp-4o-mini: 2}\n"
    )
    assert where(errors) == [
        (4, 26, "routes.r.candidates[1]", "policy.duplicate-candidate"),
        (5, 34, "routes.r.balance_weights.gtp-4o-mini", "policy.unknown-model"),
    ]


def test_policy_overrides_a_catalog_entry_field_by_field() -> None:
    policy = parse_policy(
        "version: 1\nmodels:\n  openai/gpt-4o:\n    price: {output: 9}\n    tags: [preferred]\n",
        filename="p.yaml",
        env=ENV,
    )
    spec = policy_index(policy).models["openai/gpt-4o"]
    assert (spec.input_price, spec.output_price, spec.tags) == (
        Decimal("2.50"),
        Decimal(9),
        frozenset({"preferred"}),
    )
    assert spec.context_window == 128000


def test_toml_errors_are_located() -> None:
    errors = errors_of('version = 1\n[routes.r]\ncandidates = ["gpt-4o"]\nweigths = {}\n', filename="p.toml")
    assert where(errors) == [(4, 1, "routes.r.weigths", "policy.unknown-field")]
    errors = errors_of(
        "version = 1\n[routes.r]\ncandidates = [\"gpt-4o\", 'gpt4o-mini']\n", filename="p.toml"
    )
    assert where(errors) == [(3, 25, "routes.r.candidates[1]", "policy.unknown-model")]
    errors = errors_of("version = 1\n[routes.r\n", filename="p.toml")
    assert where(errors) == [(2, 10, None, "policy.syntax")]


def test_json_errors_are_located() -> None:
    text = '{\n  "version": 1,\n  "routes": {"r": {"candidates": ["gpt-4o"], "minimise": "cost"}}\n}\n'
    errors = errors_of(text, filename="p.json")
    assert where(errors) == [(3, 46, "routes.r.minimise", "policy.unknown-field")]
    errors = errors_of('{"version": 1,}', filename="p.json")
    assert where(errors) == [(1, 15, None, "policy.syntax")]


def test_yaml_anchors_and_merge_keys_work() -> None:
    text = """\
version: 1
routes:
  a: &base
    candidates: [gpt-4o-mini]
    max_latency_ms: 5000
  b:
    <<: *base
    candidates: [gpt-4o]
"""
    policy = parse_policy(text, filename="p.yaml", env=ENV)
    assert policy.routes["b"].max_latency_ms == 5000 and policy.routes["b"].candidates == ["gpt-4o"]


@pytest.mark.parametrize("text", ["", "# nothing\n", "- a\n- b\n", "just a string\n"])
def test_a_document_that_is_not_a_mapping(text: str) -> None:
    errors = errors_of(text)
    assert where(errors) == [(1, 1, None, "policy.not-a-mapping")]


def test_cache_write_prices_are_merged_field_by_field() -> None:
    policy = parse_policy(
        """\
version: 1
models:
  anthropic/claude-sonnet-4-5:
    price: {cache_write_1h: 7}
  mine:
    provider: openai
    model: house-model
    price: {input: 2, output: 8, cache_write: "2.5", cache_write_1h: 4}
""",
        filename="p.yaml",
        env=ENV,
    )
    models = policy_index(policy).models
    sonnet, mine = models["anthropic/claude-sonnet-4-5"], models["mine"]
    catalog = load_catalog().models["anthropic/claude-sonnet-4-5"]
    # the policy sets the 1-hour write; every other price is the catalog's (genai-prices' or bundled)
    assert (sonnet.input_price, sonnet.cached_input_price, sonnet.output_price) == (
        catalog.input_price,
        catalog.cached_input_price,
        catalog.output_price,
    )
    assert (sonnet.cache_write_price, sonnet.cache_write_1h_price) == (catalog.cache_write_price, Decimal(7))
    assert (mine.cache_write_price, mine.cache_write_1h_price) == (Decimal("2.5"), Decimal(4))


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("-1", "policy.greater-than-equal"),
        ("abc", "policy.decimal-parsing"),
        ("[1]", "policy.decimal-type"),
        (".nan", "policy.finite-number"),
    ],
)
def test_a_bad_cache_write_price_is_located(value: str, code: str) -> None:
    price = f"{{input: 1, cache_write: 1, cache_write_1h: {value}}}"
    errors = errors_of(f"version: 1\nmodels:\n  m:\n    provider: openai\n    price: {price}\n")
    assert where(errors) == [(5, 55, "models.m.price.cache_write_1h", code)]
