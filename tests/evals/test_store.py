"""The eval store on memory and SQLite, and the router reading it."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.core.types import ChatRequest
from gateway.evals import (
    CaseResult,
    EvalScores,
    EvalStore,
    ModelSummary,
    QualityEvidence,
    route_evals,
    route_quality,
)
from gateway.policy import Policy, parse_policy
from gateway.router import EvalScore, StatsSnapshot, plan


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EvalStore]:
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/evals/store.sqlite"
    opened = EvalStore.open(url)
    yield opened
    opened.close()


def summary(
    model: str, mean: float, *, at: float = 1000.0, version: str = "v1", set_name: str = "quiz"
) -> ModelSummary:
    return ModelSummary(
        set_name, version, model, 10, 10, mean, mean - 0.1, min(1.0, mean + 0.1), Decimal("0.0004"),
        Decimal("0.0001"), 0.2, 0.4, 1, at, ("c3: RuntimeError: x",),
    )  # fmt: skip


def test_round_trip(store: EvalStore) -> None:
    case = CaseResult("c1", "good/model", "ok", 1.0, "matches", "Paris", Decimal("0.00001"), None, 0.12, 5, 1)
    store.put_case("quiz", "v1", case)
    assert store.get_case("quiz", "v1", "good/model", "c1") == case
    assert store.get_case("quiz", "v2", "good/model", "c1") is None
    assert store.get_case("quiz", "v1", "bad/model", "c1") is None
    first, second = summary("good/model", 0.7, at=1000.0), summary("good/model", 0.9, at=2000.0, version="v2")
    store.put_summary(first)
    store.put_summary(second)
    store.put_summary(summary("bad/model", 0.2))
    assert store.latest("quiz", "good/model") == second
    assert store.history("quiz", "good/model") == [first, second]
    assert store.models("quiz") == ["bad/model", "good/model"]
    assert store.summaries("quiz") == [summary("bad/model", 0.2), second]
    assert store.summaries("other") == [] and store.latest("other", "good/model") is None


def test_the_summary_is_what_the_state_backend_stores_as_latest_eval(store: EvalStore) -> None:
    store.put_summary(summary("good/model", 0.8))
    raw = store.backend.latest_eval("quiz", "good/model")
    assert (
        raw is not None and raw["mean"] == 0.8 and raw["set_version"] == "v1" and raw["finished_at"] == 1000.0
    )


def test_sqlite_results_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/evals.sqlite"
    first = EvalStore.open(url)
    first.put_summary(summary("good/model", 0.8))
    first.close()
    again = EvalStore.open(url)
    assert again.latest("quiz", "good/model") == summary("good/model", 0.8)
    again.close()


POLICY = """version: 1
models:
  openai/gpt-4o-mini: {quality: 0.6}
routes:
  qa: {candidates: [gpt-4o-mini, gpt-4o, claude-3-5-haiku], eval_set: quiz}
  bare: {candidates: [gpt-4o-mini, gpt-4o]}
"""


@pytest.fixture
def policy() -> Policy:
    return parse_policy(POLICY)


def test_a_routes_quality_is_the_latest_eval_else_the_prior(store: EvalStore, policy: Policy) -> None:
    store.put_summary(summary("openai/gpt-4o", 0.95, at=1000.0))
    store.put_summary(summary("openai/gpt-4o-mini", 0.3, at=900.0))
    evidence = route_quality(store, policy, "route:qa", now=1000.0 + 7200)
    assert evidence[0] == QualityEvidence(
        "openai/gpt-4o-mini", 0.3, "eval", "quiz", "v1", 10, 900.0, 7300.0, (pytest.approx(0.2), 0.4)
    )
    assert evidence[1].quality == 0.95 and evidence[1].age_s == 7200.0
    third = evidence[2]
    assert (third.model, third.source, third.eval_set) == ("anthropic/claude-3-5-haiku", "prior", "quiz")
    assert evidence[0].describe() == "0.30 from eval set 'quiz' vv1 (10 cases, 95% CI 0.20-0.40, 2.0 h old)"
    assert third.describe().endswith("from the prior (no eval on set 'quiz')")
    assert route_evals(store, policy, "qa", now=2000.0) == {
        "openai/gpt-4o-mini": EvalScore(0.3, 10),
        "openai/gpt-4o": EvalScore(0.95, 10),
    }
    # Too old: the prior stands in again.
    assert route_evals(store, policy, "qa", now=10_000.0, max_age_s=3600) == {}
    # A route without eval_set uses priors only, whatever the store holds.
    assert route_evals(store, policy, "bare") == {}
    assert {e.source for e in route_quality(store, policy, "bare")} == {"prior"}


def test_the_router_ranks_by_the_stored_scores(store: EvalStore, policy: Policy) -> None:
    request = ChatRequest(model="route:qa", messages=[{"role": "user", "content": "hi"}])
    before = plan(
        request, "qa", policy, StatsSnapshot(), prompt_tokens=10, evals=route_evals(store, policy, "qa")
    )
    store.put_summary(summary("openai/gpt-4o-mini", 0.1))
    store.put_summary(summary("openai/gpt-4o", 1.0))
    after = plan(
        request, "qa", policy, StatsSnapshot(), prompt_tokens=10, evals=route_evals(store, policy, "qa")
    )
    quality = {c.model: c.quality for c in after.candidates}
    assert quality["openai/gpt-4o"] == 1.0 and quality["openai/gpt-4o-mini"] == 0.1
    assert {c.model: c.quality for c in before.candidates}["openai/gpt-4o-mini"] == 0.6  # the policy's prior


def test_eval_scores_cache_per_set(store: EvalStore, policy: Policy) -> None:
    now = [0.0]
    scores = EvalScores(store, policy, ttl_s=60, clock=lambda: now[0])
    assert (scores("quiz"), scores(None), scores.for_route("qa")) == ({}, None, {})
    store.put_summary(summary("openai/gpt-4o", 0.9, at=0.0))
    assert scores.for_route("route:qa") == {}  # cached
    now[0] = 61.0
    assert scores("quiz") == scores.for_route("qa") == {"openai/gpt-4o": EvalScore(0.9, 10)}
    assert scores.for_route("bare") == {} and scores.for_route("missing") == {}
    stale = EvalScores(store, max_age_s=30, clock=lambda: 61.0)
    assert stale("quiz") == {}
    with pytest.raises(ValueError, match="needs the policy"):
        stale.for_route("qa")


def test_a_new_run_reaches_a_running_client_within_the_refresh_interval(store: EvalStore) -> None:
    from gateway.evals import SCORE_REFRESH_S

    now = [1000.0]
    scores = EvalScores(store, clock=lambda: now[0])  # the client's: ttl_s=SCORE_REFRESH_S
    store.put_summary(summary("openai/gpt-4o", 0.5, at=now[0]))
    assert scores("quiz") == {"openai/gpt-4o": EvalScore(0.5, 10)}
    store.put_summary(summary("openai/gpt-4o", 0.9, at=now[0]))  # a new `eval run` lands
    now[0] += SCORE_REFRESH_S - 1
    assert scores("quiz") == {"openai/gpt-4o": EvalScore(0.5, 10)}  # still the cached read
    now[0] += 1
    assert scores("quiz") == {"openai/gpt-4o": EvalScore(0.9, 10)}
    assert SCORE_REFRESH_S == 60.0


def test_the_clients_planner_reads_eval_scores(
    store: EvalStore, policy: Policy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.core.plan import Planner

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    from gateway.targets import ClientConfig

    request = ChatRequest(model="route:qa", messages=[{"role": "user", "content": "hi"}])
    planner = Planner(ClientConfig(api_key="sk-test"), policy, evals=EvalScores(store, ttl_s=0))
    assert planner.plan("route:qa", request).candidates[0].name == "openai/gpt-4o"  # by the priors
    store.put_summary(summary("openai/gpt-4o-mini", 1.0))
    store.put_summary(summary("openai/gpt-4o", 0.1))
    assert planner.plan("route:qa", request).candidates[0].name == "openai/gpt-4o-mini"


def test_the_refresh_interval_and_max_age_are_policy_settings_that_follow_a_reload(store: EvalStore) -> None:
    from gateway.policy import parse_policy

    def policy(refresh: float, max_age: float | None = None) -> Policy:
        section = f"evals: {{refresh_s: {refresh}" + (f", max_age_s: {max_age}" if max_age else "") + "}"
        return parse_policy(
            f"version: 1\nroutes: {{qa: {{candidates: [openai/gpt-4o], eval_set: quiz}}}}\n{section}\n"
        )

    current = [policy(5)]
    now = [1000.0]
    scores = EvalScores(store, clock=lambda: now[0], settings=lambda: current[0])
    store.put_summary(summary("openai/gpt-4o", 0.5, at=now[0]))
    assert scores("quiz") == {"openai/gpt-4o": EvalScore(0.5, 10)}
    store.put_summary(summary("openai/gpt-4o", 0.9, at=now[0]))
    now[0] += 4
    assert scores("quiz") == {"openai/gpt-4o": EvalScore(0.5, 10)}  # within refresh_s: 5
    now[0] += 1
    assert scores("quiz") == {"openai/gpt-4o": EvalScore(0.9, 10)}
    current[0] = policy(0, max_age=3)  # reloaded: read on every plan, scores older than 3 s ignored
    store.put_summary(summary("openai/gpt-4o", 0.7, at=now[0]))
    assert scores("quiz") == {"openai/gpt-4o": EvalScore(0.7, 10)}
    now[0] += 4
    assert scores("quiz") == {}
    with pytest.raises(Exception, match="refresh_s"):
        policy(-1)
