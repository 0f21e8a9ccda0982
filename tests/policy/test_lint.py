"""Each lint, located; a clean policy has none."""

from __future__ import annotations

import pytest

from gateway.core.errors import PolicyError
from gateway.policy import LintWarning, lint_policy, parse_policy
from tests.policy.conftest import ENV


def _lint(text: str) -> list[tuple[str, str, int | None, int | None]]:
    return [
        (w.code, w.field_path, w.line, w.column)
        for w in lint_policy(parse_policy(text, filename="p.yaml", env=ENV))
    ]


def test_fallback_with_a_smaller_context_window() -> None:
    text = "version: 1\nroutes:\n  r:\n    candidates: [gpt-4.1, gpt-4o, local/smollm2-135m-instruct]\n"
    assert _lint(text) == [
        ("lint.fallback-smaller-context", "routes.r.candidates[1]", 4, 27),
        ("lint.fallback-smaller-context", "routes.r.candidates[2]", 4, 35),
    ]


def test_required_capability_no_candidate_has() -> None:
    text = "version: 1\nroutes:\n  r:\n    candidates: [local/smollm2-135m-instruct]\n    requires: [streaming, tools]\n"
    assert _lint(text) == [("lint.requires-unsatisfiable", "routes.r.requires[1]", 5, 27)]


def test_local_only_without_a_local_candidate() -> None:
    text = "version: 1\nroutes:\n  r:\n    candidates: [gpt-4o]\n    data: local_only\n"
    assert _lint(text) == [("lint.no-local-candidate", "routes.r.data", 5, 11)]


def test_budget_and_rate_limit_that_match_nothing() -> None:
    text = """\
version: 1
routes:
  support: {candidates: [gpt-4o]}
budgets:
  b: {window: day, limit_usd: 1, match: {route: suport}}
rate_limits:
  l: {rpm: 10, match: {route: sales}}
"""
    assert _lint(text) == [
        ("lint.matches-nothing", "budgets.b.match.route", 5, 49),
        ("lint.matches-nothing", "rate_limits.l.match.route", 7, 31),
    ]


def test_candidate_without_a_price() -> None:
    text = "version: 1\nmodels:\n  mine: {provider: openai}\nroutes:\n  r: {candidates: [gpt-4o, mine]}\n"
    assert _lint(text) == [("lint.no-price", "routes.r.candidates[1]", 5, 28)]


def test_usd_budget_over_an_unpriced_model() -> None:
    text = """\
version: 1
models:
  mine: {provider: openai}
routes:
  priced: {candidates: [gpt-4o]}
  mixed: {candidates: [gpt-4o, mine]}
budgets:
  on-mixed: {window: day, limit_usd: 5, match: {route: mixed}}
  on-priced: {window: day, limit_usd: 5, match: {route: priced}}
  everything: {window: day, limit_usd: 50}
  tokens: {window: day, limit_tokens: 1000, match: {route: mixed}}
"""
    warnings = lint_policy(parse_policy(text, filename="p.yaml", env=ENV))
    budget_warnings = [w for w in warnings if w.code == "lint.budget-unpriced"]
    assert [(w.field_path, w.line, w.column) for w in budget_warnings] == [
        ("budgets.on-mixed.limit_usd", 8, 38),
        ("budgets.everything.limit_usd", 10, 40),
    ]
    assert budget_warnings[0].message == (
        "the budget counts route 'mixed', which can be served by 'mine' with no price: those are charged "
        "at the dearest known price; set input_price and output_price"
    )
    assert "every request" in budget_warnings[1].message


def test_weights_summing_to_zero() -> None:
    text = "version: 1\nroutes:\n  r:\n    candidates: [gpt-4o]\n    weights: {quality: 0, cost: 0}\n"
    assert _lint(text) == [("lint.zero-weights", "routes.r.weights", 5, 14)]


def test_impossible_resilience_settings() -> None:
    text = """\
version: 1
routes:
  r:
    candidates: [gpt-4o]
    fallback: {max_attempts: -1}
    retry: {max_retries: -2, initial_delay_s: 10, max_delay_s: 1}
    timeouts: {total_s: 2, first_token_s: 5}
"""
    assert _lint(text) == [
        ("lint.impossible-resilience", "routes.r.fallback.max_attempts", 5, 30),
        ("lint.impossible-resilience", "routes.r.retry.max_retries", 6, 26),
        ("lint.impossible-resilience", "routes.r.retry.initial_delay_s", 6, 47),
        ("lint.impossible-resilience", "routes.r.timeouts.first_token_s", 7, 43),
    ]


def test_timeouts_respect_the_deadline_at_load_time() -> None:
    """``total_s: 3`` alone serves (connect and read default within it); a longer connect_s is located."""
    policy = parse_policy(
        "version: 1\nroutes:\n  r:\n    candidates: [gpt-4o]\n    timeouts: {total_s: 3}\n", env=ENV
    )
    timeouts = policy.routes["r"].timeouts
    assert (timeouts.connect_s, timeouts.read_s, timeouts.total_s) == (3.0, 3.0, 3.0)
    text = "version: 1\nroutes:\n  r:\n    candidates: [gpt-4o]\n    timeouts: {connect_s: 10, total_s: 2}\n"
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, filename="p.yaml", env=ENV)
    assert (caught.value.line, caught.value.field_path) == (5, "routes.r.timeouts")
    assert "connect_s (10.0) is longer than total_s (2.0)" in caught.value.message


def test_an_env_value_in_a_plain_field_is_not_echoed() -> None:
    text = "version: 1\nroutes:\n  r:\n    candidates: ['${LEAKED}']\n"
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, filename="p.yaml", env={**ENV, "LEAKED": "sk-live-hunter2"})
    assert caught.value.code == "policy.unknown-model"
    assert "hunter2" not in str(caught.value) and "hunter2" not in repr(caught.value)
    assert "<value from the environment>" in str(caught.value)


def test_warning_text_and_a_clean_policy() -> None:
    text = "version: 1\nroutes:\n  r:\n    candidates: [gpt-4o]\n    weights: {}\n"
    (warning,) = lint_policy(parse_policy(text, filename="p.yaml", env=ENV))
    assert warning == LintWarning(
        "lint.zero-weights",
        "weights sum to zero: candidates keep their order",
        "routes.r.weights",
        "p.yaml",
        5,
        14,
    )
    assert str(warning) == (
        "p.yaml:5:14: warning [lint.zero-weights] at routes.r.weights: weights sum to zero: candidates keep their order"
    )
    assert _lint("version: 1\nroutes:\n  r: {candidates: [gpt-4o-mini, gpt-4o]}\n") == []


@pytest.mark.parametrize(
    ("options", "field"),
    [("{max_batch: 0}", "max_batch"), ("{dtype: float64}", "dtype"), ("{kv_blocks: -3}", "kv_blocks")],
)
def test_a_local_engine_setting_the_engine_refuses_is_located(options: str, field: str) -> None:
    text = (
        f"version: 1\nproviders:\n  local: {{kind: local, options: {options}}}\n"
        "routes:\n  r: {candidates: [local/smollm2-135m-instruct]}\n"
    )
    [(code, path, line, _)] = _lint(text)
    assert (code, path, line) == ("lint.local-engine-setting", f"providers.local.options.{field}", 3)
    clean = "version: 1\nproviders:\n  local: {kind: local, options: {max_batch: 8, dtype: bfloat16}}\nroutes:\n  r: {candidates: [local/smollm2-135m-instruct]}\n"
    assert _lint(clean) == []
