"""The runner against loopback models: scores, resumability, failures, the judge and metering."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from typing import Any

import pytest

from gateway.evals import EvalStore, ModelCaller, Output, PlainProgress, parse_set, run_eval
from gateway.evals.calls import price_table
from gateway.metering import MemorySink, Meter
from gateway.policy import Policy
from gateway.state import open_backend
from tests.evals.conftest import SET_TEXT
from tests.servers.http import LoopbackServer

MODELS = ["good/model", "bad/model"]


def chat_requests(server: LoopbackServer) -> int:
    return sum(1 for r in server.log if r.path.endswith("/chat/completions"))


def test_two_models_with_different_answers_score_differently(
    policy: Policy, servers: dict[str, LoopbackServer]
) -> None:
    quiz = parse_set(SET_TEXT)
    out = io.StringIO()
    with ModelCaller(policy) as caller:
        run = run_eval(
            quiz, MODELS, caller=caller, concurrency=3, progress=PlainProgress(out), clock=lambda: 1000.0
        )
    good, bad = run.summaries
    assert (good.model, good.mean, good.cases, good.scored, good.failures) == ("good/model", 1.0, 4, 4, 0)
    assert (bad.model, bad.mean, bad.failures) == ("bad/model", 0.0, 0)
    assert [r.case_id for r in run.results["good/model"]] == ["sum", "capital", "prime", "planet"]
    assert run.results["bad/model"][0].output == "no idea"
    assert (run.upstream_calls, run.cached) == (8, 0)
    assert chat_requests(servers["good"]) == chat_requests(servers["bad"]) == 4
    # Cost per case: the loopback counts words as tokens; good/model costs $10/$20 per 1M tokens.
    first = run.results["good/model"][0]
    assert first.cost_usd == (first.prompt_tokens * 10 + first.completion_tokens * 20) / Decimal(1_000_000)
    assert good.cost_per_case_usd is not None and bad.cost_per_case_usd is not None
    assert good.cost_per_case_usd > bad.cost_per_case_usd * 50
    assert good.latency_p50_s is not None and good.latency_p95_s is not None
    assert 0 < good.latency_p50_s <= good.latency_p95_s
    assert good.finished_at == 1000.0
    assert out.getvalue().splitlines()[-1] == "eval quiz: 8/8 (0 cached)"


def test_a_second_run_makes_no_upstream_calls_for_cached_cases(
    policy: Policy, servers: dict[str, LoopbackServer]
) -> None:
    store = EvalStore(open_backend("memory://"))
    quiz = parse_set(SET_TEXT)
    with ModelCaller(policy) as caller:
        first = run_eval(quiz, MODELS, caller=caller, store=store)
        for server in servers.values():
            server.reset_log()
        second = run_eval(quiz, MODELS, caller=caller, store=store)
    assert chat_requests(servers["good"]) == chat_requests(servers["bad"]) == 0
    assert (second.upstream_calls, second.cached) == (0, 8)
    assert second.results == first.results
    assert [s.mean for s in second.summaries] == [1.0, 0.0]
    # A new case (a new set version) is called afresh; the old version's cache is not reused.
    grown = parse_set(
        SET_TEXT + "\n" + json.dumps({"id": "extra", "prompt": "What is 2+2?", "expected": "4"})
    )
    with ModelCaller(policy) as caller:
        third = run_eval(grown, ["good/model"], caller=caller, store=store)
    assert (third.upstream_calls, third.cached) == (5, 0)


def test_resume_after_a_partial_run(policy: Policy, servers: dict[str, LoopbackServer]) -> None:
    store = EvalStore(open_backend("memory://"))
    quiz = parse_set(SET_TEXT)
    with ModelCaller(policy) as caller:
        for case in quiz.cases[:2]:  # as if the first run stopped after two cases
            store.put_case(quiz.name, quiz.version, run_eval(
                parse_set(json.dumps({"id": case.id, "prompt": case.messages[0]["content"]})),
                ["good/model"], caller=caller,
            ).results["good/model"][0])  # fmt: skip
        for server in servers.values():
            server.reset_log()
        run = run_eval(quiz, ["good/model"], caller=caller, store=store)
    assert (run.upstream_calls, run.cached, chat_requests(servers["good"])) == (2, 2, 2)


def explode(output: Output, case: Any) -> float:
    if case.id == "boom":
        raise RuntimeError("scorer bug")
    return 1.0


def test_a_raising_scorer_records_a_failure_and_the_run_goes_on(policy: Policy) -> None:
    text = "\n".join(
        json.dumps({"id": i, "prompt": "What is 2+2?", "scorer": f"{__name__}:explode"})
        for i in ("a", "boom", "c")
    )
    store = EvalStore(open_backend("memory://"))
    with ModelCaller(policy) as caller:
        run = run_eval(parse_set(text), ["good/model"], caller=caller, store=store)
    a, boom, c = run.results["good/model"]
    assert (a.status, c.status) == ("ok", "ok")
    assert (boom.status, boom.score, boom.error) == ("scorer_error", None, "RuntimeError: scorer bug")
    summary = run.summaries[0]
    assert (summary.mean, summary.scored, summary.failures) == (1.0, 2, 1)
    assert summary.failure_examples == ("boom: RuntimeError: scorer bug",)
    assert store.get_case("set", parse_set(text).version, "good/model", "boom") is None  # retried next time


def test_fail_fast_stops_and_stores_nothing(policy: Policy) -> None:
    text = "\n".join(
        json.dumps({"id": f"c{i}", "prompt": "What is 2+2?", "scorer": f"{__name__}:explode"})
        for i in range(6)
    ).replace('"c2"', '"boom"')
    store = EvalStore(open_backend("memory://"))
    with ModelCaller(policy) as caller:
        run = run_eval(
            parse_set(text), ["good/model"], caller=caller, store=store, fail_fast=True, concurrency=1
        )
    assert run.stopped is not None and run.stopped.case_id == "boom"
    assert len(run.results["good/model"]) == 3
    assert store.summaries("set") == []


def test_a_failing_model_is_an_error_not_a_score(policy: Policy) -> None:
    # error:500 makes the loopback answer 500 every time; max_retries=0 keeps the test fast.
    store = EvalStore(open_backend("memory://"))
    with ModelCaller(policy, max_retries=0) as caller:
        run = run_eval(parse_set(SET_TEXT), ["bad/broken"], caller=caller, store=store)
    summary = run.summaries[0]
    assert (summary.scored, summary.failures, summary.cost_per_case_usd, summary.latency_p50_s) == (
        0,
        4,
        None,
        None,
    )
    first = run.results["bad/broken"][0]
    assert (first.status, first.score) == ("call_error", None)
    assert first.error is not None and first.error.startswith("InternalServerError")
    assert run.unstored == {
        "bad/broken": f"bad/broken: all 4 cases failed (sum: {first.error}); nothing stored for it"
    }
    assert store.summaries("quiz") == []


JUDGED = json.dumps(
    {"id": "j", "prompt": "Capital of France?", "scorer": {"type": "judge", "rubric": "Names Paris"}}
)


def test_judge_cost_is_metered_like_any_call(policy: Policy, servers: dict[str, LoopbackServer]) -> None:
    sink = MemorySink()
    meter = Meter(sink, prices=price_table(policy))
    with ModelCaller(policy, observer=meter) as caller:
        run = run_eval(
            parse_set(JUDGED, name="judged"), ["good/model"], caller=caller, judge_model="judge/grader"
        )
    meter.flush()
    result = run.results["good/model"][0]
    assert (result.status, result.score, result.reason) == ("ok", 0.8, "fine")
    records = {r.model: r for r in sink.records}
    assert set(records) == {"good/model", "judge/grader"}
    assert records["judge/grader"].route == "eval:judged:judge"
    assert records["judge/grader"].cost_usd == result.judge_cost_usd and result.judge_cost_usd
    assert records["good/model"].route == "eval:judged"
    assert run.summaries[0].judge_cost_usd == result.judge_cost_usd
    judge_body = servers["judge"].log[-1].json()
    assert judge_body["model"] == "grader" and "Names Paris" in judge_body["messages"][1]["content"]
    meter.close()


def test_a_garbage_judge_is_a_scored_failure_not_a_crash(policy: Policy) -> None:
    store = EvalStore(open_backend("memory://"))
    with ModelCaller(policy) as caller:
        run = run_eval(
            parse_set(JUDGED, name="judged"),
            ["good/model"],
            caller=caller,
            store=store,
            judge_model="judge/garbage",
        )
    result = run.results["good/model"][0]
    assert (result.status, result.score) == ("judge_error", 0.0)
    assert result.error is not None and result.error.startswith("judge returned garbage")
    assert (run.summaries[0].mean, run.summaries[0].failures, run.summaries[0].scored) == (0.0, 1, 1)


def test_bad_arguments_fail_before_any_call(policy: Policy, servers: dict[str, LoopbackServer]) -> None:
    from gateway.core.errors import PolicyError
    from gateway.evals import ScorerError

    with ModelCaller(policy) as caller:
        with pytest.raises(ValueError, match="concurrency"):
            run_eval(parse_set(SET_TEXT), MODELS, caller=caller, concurrency=0)
        with pytest.raises(ScorerError):
            run_eval(parse_set('{"prompt": "x", "scorer": "nope"}'), MODELS, caller=caller)
        with pytest.raises(PolicyError, match="unknown model .nowhere/model.; did you mean .good/model."):
            run_eval(parse_set(SET_TEXT), ["nowhere/model"], caller=caller)
    assert sum(chat_requests(s) for s in servers.values()) == 0


def test_rpm_spaces_calls_per_model(policy: Policy) -> None:
    waits: list[float] = []
    with ModelCaller(policy) as caller:
        run_eval(
            parse_set(SET_TEXT), ["good/model"], caller=caller, rpm=60, concurrency=1, sleep=waits.append
        )
    # The fake sleep returns at once, so each call's slot is one more second after the first's.
    assert [round(w) for w in waits] == [1, 2, 3]


def test_concurrency_bounds_the_calls_in_flight(policy: Policy, servers: dict[str, LoopbackServer]) -> None:
    quiz = parse_set(
        "\n".join(json.dumps({"id": f"c{i}", "prompt": "What is 2+2?", "expected": "4"}) for i in range(6))
    )
    with ModelCaller(policy) as caller:
        run_eval(quiz, MODELS, caller=caller, concurrency=3)
    spans = [(r.started, r.finished or r.started) for s in ("good", "bad") for r in servers[s].log]
    in_flight = max(sum(1 for start, end in spans if start <= t < end) for t, _ in spans)
    assert len(spans) == 12 and 1 <= in_flight <= 3


def test_progress_bars() -> None:
    from gateway.evals import make_progress
    from gateway.evals.progress import NullProgress, PlainProgress, RichProgress

    out = io.StringIO()
    assert isinstance(make_progress("none"), NullProgress)
    assert isinstance(make_progress("auto", out), PlainProgress)  # not a terminal
    bar = make_progress("rich", out)
    assert isinstance(bar, RichProgress)
    bar.start(2, "eval quiz")
    bar.advance()
    bar.advance(cached=True)
    bar.close()
    assert "eval quiz" in out.getvalue() and "2/2" in out.getvalue()


def test_an_upstream_that_echoes_the_key_does_not_leak_it_into_results() -> None:
    from gateway.policy import parse_policy
    from tests.servers.http import JSONReply, Recorded

    def echo_key(rec: Recorded) -> JSONReply:
        key = rec.headers.get("authorization", "")
        body = {"error": {"message": f"Incorrect API key provided: {key}", "type": "invalid_request_error"}}
        return JSONReply(status=401, body=body)

    with LoopbackServer(echo_key) as server:
        policy = parse_policy(
            "version: 1\nproviders:\n"
            f"  leaky: {{kind: openai, base_url: '{server.base_url}/v1', api_key: sk-very-secret-key-123}}\n"
            "models:\n  leaky/m: {provider: leaky, model: m}\n"
        )
        store = EvalStore(open_backend("memory://"))
        with ModelCaller(policy, max_retries=0) as caller:
            run = run_eval(parse_set(SET_TEXT), ["leaky/m"], caller=caller, store=store)
    error = run.results["leaky/m"][0].error
    assert error is not None and error.startswith("AuthenticationError") and "<redacted>" in error
    assert "sk-very-secret-key-123" not in repr(run) + repr(store.summaries("quiz"))
