"""Ranking: ties, balance, minimize, exploration, live stats, evals, local load; purity."""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal

import pytest

from gateway.router import PRIOR_WEIGHT, EvalScore, LocalEngineLoad, ModelStats, StatsSnapshot, plan
from tests.router.conftest import policy_with, request

TWINS = "  twin-a: {provider: openai, price: {input: 1, output: 1}, quality: 0.5}\n" \
        "  twin-b: {provider: openai, price: {input: 1, output: 1}, quality: 0.5}\n" \
        "  twin-c: {provider: openai, price: {input: 1, output: 1}, quality: 0.5}\n"  # fmt: skip


def _order(policy, stats=None, rng=None, evals=None, route="r", **extra) -> list[str]:
    result = plan(
        request(**extra), route, policy, stats or StatsSnapshot(), prompt_tokens=1000, evals=evals, rng=rng
    )
    return [c.model for c in result.candidates]


def test_ties_keep_the_declared_order() -> None:
    assert _order(policy_with("    candidates: [twin-c, twin-a, twin-b]\n", TWINS)) == [
        "twin-c",
        "twin-a",
        "twin-b",
    ]


def test_zero_weights_keep_the_declared_order() -> None:
    policy = policy_with("    candidates: [local, big, small]\n    weights: {}\n")
    assert _order(policy) == ["local", "big", "small"]


def test_least_busy_puts_the_fewest_in_flight_first() -> None:
    policy = policy_with("    candidates: [twin-a, twin-b, twin-c, big]\n    balance: least_busy\n", TWINS)
    stats = StatsSnapshot(
        models={
            n: ModelStats(in_flight=k) for n, k in {"twin-a": 4, "twin-b": 1, "twin-c": 2, "big": 3}.items()
        }
    )
    order = _order(policy, stats)
    assert order[0] == "twin-b"
    result = plan(request(), "r", policy, stats, prompt_tokens=1000)
    assert result.candidates[0].basis == "balance least_busy"
    assert _order(policy) == _order(policy_with("    candidates: [twin-a, twin-b, twin-c, big]\n", TWINS))


def test_weighted_balance_splits_by_weight() -> None:
    policy = policy_with(
        "    candidates: [twin-a, twin-b, big]\n    balance: weighted\n    balance_weights: {twin-a: 3, twin-b: 1}\n",
        TWINS,
    )
    assert _order(policy)[0] == "twin-a"  # no rng: the heaviest
    rng = random.Random(7)
    firsts = Counter(_order(policy, rng=rng)[0] for _ in range(4000))
    assert set(firsts) == {"twin-a", "twin-b"}  # big has no weight: it is never the head
    assert 0.72 < firsts["twin-a"] / 4000 < 0.78


def test_minimize_cost_and_latency() -> None:
    policy = policy_with(
        "    candidates: [big, small, local, unpriced]\n    minimize: cost\n",
        "  unpriced: {provider: openai}\n",
    )
    assert _order(policy) == ["local", "small", "big", "unpriced"]
    policy = policy_with("    candidates: [big, small, local]\n    minimize: latency\n")
    assert _order(policy, max_tokens=500) == ["small", "big", "local"]
    result = plan(request(), "r", policy, StatsSnapshot(), prompt_tokens=10)
    assert {c.basis for c in result.candidates} == {"minimize latency"}


def test_minimize_respects_constraints() -> None:
    policy = policy_with("    candidates: [big, small, local]\n    minimize: cost\n    min_quality: 0.5\n")
    assert _order(policy) == ["small", "big"]


def test_exploration_moves_a_runner_up_first() -> None:
    policy = policy_with("    candidates: [big, small, local]\n    explore: 1.0\n")
    result = plan(request(), "r", policy, StatsSnapshot(), prompt_tokens=1000, rng=random.Random(1))
    assert result.candidates[0].basis == "explore" and result.candidates[0].model != "big"
    assert _order(policy) == ["big", "small", "local"]  # no rng: no exploration
    assert _order(policy_with("    candidates: [big, small, local]\n"), rng=random.Random(1)) == [
        "big",
        "small",
        "local",
    ]


def test_exploration_is_bounded_and_prefers_the_least_known() -> None:
    policy = policy_with("    candidates: [big, small, local]\n    explore: 0.1\n")
    known = StatsSnapshot(models={"small": ModelStats(ttft_s=0.3, tokens_per_s=125, samples=40, weight=19.0)})
    rng = random.Random(3)
    firsts = Counter(_order(policy, known, rng=rng)[0] for _ in range(5000))
    assert firsts["big"] / 5000 > 0.88  # at most the 10 % share leaves the best
    assert firsts["local"] > 5 * firsts["small"]  # local has no observations, small has 19


def test_live_stats_blend_with_priors_by_weight(worked) -> None:
    slow = ModelStats(ttft_s=30.0, tokens_per_s=10.0, samples=1, weight=0.1)
    assert _order(worked, StatsSnapshot(models={"big": slow}), route="support")[0] == "big"  # stale: prior
    slow = ModelStats(ttft_s=30.0, tokens_per_s=10.0, samples=20, weight=18.0)
    result = plan(request(), "support", worked, StatsSnapshot(models={"big": slow}), prompt_tokens=1000)
    assert [c.model for c in result.candidates] == ["small", "big", "local"]
    ttft = (18 * 30 + PRIOR_WEIGHT * 0.5) / (18 + PRIOR_WEIGHT)
    tps = (18 * 10 + PRIOR_WEIGHT * 100) / (18 + PRIOR_WEIGHT)
    assert result.candidates[1].ttft_s == pytest.approx(ttft)
    assert result.candidates[1].latency_s == pytest.approx(ttft + 500 / tps)


def test_failure_rate_lengthens_the_expected_ttft(worked) -> None:
    flaky = ModelStats(ttft_s=0.5, samples=10, weight=10.0, failure_rate=0.5)
    result = plan(request(), "support", worked, StatsSnapshot(models={"big": flaky}), prompt_tokens=1000)
    big = next(c for c in result.candidates if c.model == "big")
    rate = 0.5 * 10 / (10 + PRIOR_WEIGHT)  # blended toward 0 by weight, like the estimates
    assert big.ttft_s == pytest.approx(0.5 * (1 + rate / (1 - rate)))


def test_max_ttft_is_a_constraint() -> None:
    policy = policy_with("    candidates: [big, small, local]\n    max_ttft_s: 0.4\n")
    result = plan(request(), "r", policy, StatsSnapshot(), prompt_tokens=1000)
    assert [c.model for c in result.candidates] == ["small", "local"]
    assert [(e.model, e.code) for e in result.exclusions] == [("big", "max_ttft")]


def test_eval_scores_replace_quality_priors(worked) -> None:
    # 0.99 x $250 - 20.1 s x $1.5 = $217.35 per 1k requests, above big's $209.25
    evals = {"local": EvalScore(score=0.99, samples=200)}
    result = plan(request(), "support", worked, StatsSnapshot(), prompt_tokens=1000, evals=evals)
    assert result.candidates[0].model == "local" and result.candidates[0].quality == 0.99


def test_local_engine_load_slows_local_models(worked) -> None:
    idle = plan(request(), "support", worked, StatsSnapshot(), prompt_tokens=1000)
    busy = StatsSnapshot(local_engine=LocalEngineLoad(queue_depth=3, running=4, tokens_per_s=100.0))
    loaded = plan(request(), "support", worked, busy, prompt_tokens=1000)
    latency = {c.model: c.latency_s for c in loaded.candidates}
    assert latency["local"] == 0.1 * 4 + 500 / (100.0 / 5)
    assert latency["big"] == {c.model: c.latency_s for c in idle.candidates}["big"]


def test_plan_is_pure(worked) -> None:
    stats = StatsSnapshot(models={"big": ModelStats(in_flight=2)})
    before = worked.model_dump()
    first = plan(request(), "support", worked, stats, prompt_tokens=1000)
    second = plan(request(), "support", worked, stats, prompt_tokens=1000)
    assert first == second and worked.model_dump() == before


def test_costs_are_exact_decimals(worked) -> None:
    result = plan(request(max_tokens=333), "support", worked, StatsSnapshot(), prompt_tokens=777)
    big = next(c for c in result.candidates if c.model == "big")
    assert big.cost_usd == (777 * Decimal("2.50") + 333 * Decimal("10.00")) / Decimal(1_000_000)


def test_a_policy_built_in_code_and_a_copy_are_indexed(worked) -> None:
    from gateway.core.errors import PolicyError
    from gateway.policy import Policy

    direct = Policy.model_validate({"version": 1, "routes": {"r": {"candidates": ["gpt-4o-mini", "gpt-4o"]}}})
    assert sorted(_order(direct)) == ["openai/gpt-4o", "openai/gpt-4o-mini"]
    routes = {**worked.routes, "r": direct.routes["r"]}
    copy = worked.model_copy(update={"routes": routes})
    assert sorted(_order(copy)) == ["openai/gpt-4o", "openai/gpt-4o-mini"]
    broken = Policy.model_validate({"version": 1, "routes": {"r": {"candidates": ["gpt4o"]}}})
    with pytest.raises(PolicyError) as info:
        _order(broken)
    assert "unknown model 'gpt4o'" in info.value.message
