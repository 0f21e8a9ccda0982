"""Hedged requests with the blocking client (``gateway/resilience/hedge_sync.py``): the asyncio race's
decisions, run in threads. The first answer wins; a non-streamed loser finishes unread and is
metered, a streamed one is stopped (its socket shut) and recorded as cancelled."""

from __future__ import annotations

import httpx

from gateway.core.attempts import Plan
from gateway.core.errors import StreamInterruptedError
from gateway.resilience.hedge import HedgeSettings
from tests.resilience.conftest import ANSWER, candidate, chat_log, run_sync
from tests.resilience.test_hedge import wait_for
from tests.servers.http import LoopbackServer


def test_hedge_wins_and_the_slow_request_finishes_unread_and_is_metered(
    primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    plan = Plan(
        [candidate(primary, "fault:slow-700"), candidate(secondary, "gpt-4o-mini", "secondary")],
        hedge=HedgeSettings(after_s=0.05),
    )
    with httpx.Client() as http:
        result = run_sync(plan, http=http)
        assert result.error is None and result.text == ANSWER
        assert result.elapsed < 0.5  # the answer did not wait for the loser
        assert result.reply.gateway.model == "secondary/gpt-4o-mini"
        assert wait_for(lambda: len(result.records) == 2)  # the loser, once its thread finished
    assert sorted(result.outcomes) == ["cancelled", "ok"]
    assert sorted(r.attempt for r in result.records) == [0, 1]  # two threads, two distinct attempts
    [loser] = [r for r in result.records if r.outcome == "cancelled"]
    assert wait_for(lambda: chat_log(primary)[0].outcome is not None)
    [served] = chat_log(primary)
    assert loser.usage is not None and (loser.usage.prompt_tokens, loser.usage.completion_tokens) == (
        served.served_tokens["prompt"],
        served.served_tokens["completion"],
    )


def test_primary_answering_first_leaves_the_hedge_to_finish(primary: LoopbackServer) -> None:
    plan = Plan(
        [candidate(primary, "fault:slow-150"), candidate(primary, "fault:slow-900", "hedge")],
        hedge=HedgeSettings(after_s=0.03),
    )
    with httpx.Client() as http:
        result = run_sync(plan, http=http)
        assert result.error is None and result.reply.gateway.model == "primary/fault:slow-150"
        assert wait_for(lambda: len(result.records) == 2)
    assert sorted(result.outcomes) == ["cancelled", "ok"]
    assert all(r.usage is not None and r.usage.total_tokens > 0 for r in result.records)


def test_fast_primary_starts_no_hedge(primary: LoopbackServer, secondary: LoopbackServer) -> None:
    plan = Plan(
        [candidate(primary, "gpt-4o-mini"), candidate(secondary, "gpt-4o-mini", "secondary")],
        hedge=HedgeSettings(after_s=0.5),
    )
    result = run_sync(plan)
    assert result.outcomes == ["ok"] and len(chat_log(secondary)) == 0


def test_a_primary_failing_before_the_delay_falls_back_without_a_hedge(
    primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    plan = Plan(
        [candidate(primary, "fault:503", max_retries=0), candidate(secondary, "gpt-4o-mini", "secondary")],
        hedge=HedgeSettings(after_s=0.5),
    )
    result = run_sync(plan)
    assert result.error is None and result.outcomes == ["InternalServerError", "ok"]
    assert len(chat_log(secondary)) == 1


def test_failed_primary_after_hedge_start_still_served_by_hedge(
    primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    plan = Plan(
        [candidate(primary, "fault:hang", max_retries=0), candidate(secondary, "gpt-4o-mini", "secondary")],
        hedge=HedgeSettings(after_s=0.02),
    )
    result = run_sync(plan, timeout=0.3)
    assert result.error is None and result.reply.gateway.model == "secondary/gpt-4o-mini"
    assert wait_for(lambda: len(result.records) == 2)  # the hung primary, given up on unread
    assert sorted(result.outcomes) == ["cancelled", "ok"]


def test_a_hedged_request_through_the_sdk_client(
    tmp_path, primary: LoopbackServer, secondary: LoopbackServer
) -> None:  # type: ignore[no-untyped-def]
    """End to end: a policy's hedge with the blocking gateway.OpenAI (before, only AsyncOpenAI hedged)."""
    import gateway

    policy = tmp_path / "p.yaml"
    policy.write_text(
        f"""version: 1
providers:
  slow: {{kind: openai, base_url: "{primary.base_url}/v1", api_key: "sk-slow-key"}}
  fast: {{kind: openai, base_url: "{secondary.base_url}/v1", api_key: "sk-fast-key"}}
models:
  a: {{provider: slow, model: "fault:slow-900", price: {{input: 0.1, output: 0.1}}}}
  b: {{provider: fast, model: gpt-4o-mini, price: {{input: 1, output: 1}}}}
routes:
  chat: {{candidates: [a, b], minimize: cost, hedge: {{after_ms: 50}}, retry: {{max_retries: 0}}}}
"""
    )
    with gateway.OpenAI(api_key="sk-test", policy=policy, max_retries=0) as client:
        reply = client.chat.completions.create(
            model="route:chat", messages=[{"role": "user", "content": "hi"}]
        )
        info = gateway.info(reply)
        assert info is not None and info.model == "b"
        assert wait_for(lambda: len(chat_log(primary)) == 1 and len(chat_log(secondary)) == 1)


def test_stream_hedge_wins_and_the_slow_stream_is_stopped(
    primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    plan = Plan(
        [candidate(primary, "fault:slow-first-token-700"), candidate(secondary, "gpt-4o-mini", "secondary")],
        hedge=HedgeSettings(after_s=0.05),
    )
    result = run_sync(plan, stream=True)
    assert result.error is None and result.text == ANSWER
    assert result.elapsed < 0.5
    assert result.info is not None and result.info.gateway is not None
    assert result.info.gateway.model == "secondary/gpt-4o-mini"
    assert sorted(result.outcomes) == ["cancelled", "ok"]
    assert wait_for(lambda: chat_log(primary)[0].outcome == "disconnected")  # the upstream saw the hang-up


def test_stream_primary_first_token_wins(primary: LoopbackServer) -> None:
    plan = Plan(
        [
            candidate(primary, "fault:slow-first-token-150"),
            candidate(primary, "fault:slow-first-token-900", "hedge"),
        ],
        hedge=HedgeSettings(after_s=0.03),
    )
    result = run_sync(plan, stream=True)
    assert result.error is None and result.text == ANSWER
    assert result.info is not None and result.info.gateway is not None
    assert result.info.gateway.model == "primary/fault:slow-first-token-150"
    assert sorted(result.outcomes) == ["cancelled", "ok"]


def test_stream_hedge_failing_fast_leaves_the_primary_to_win(primary: LoopbackServer) -> None:
    plan = Plan(
        [candidate(primary, "fault:slow-first-token-200"), candidate(primary, "fault:503", "hedge")],
        hedge=HedgeSettings(after_s=0.03),
    )
    result = run_sync(plan, stream=True)
    assert result.error is None and result.text == ANSWER
    assert result.outcomes == ["InternalServerError", "ok"]
    assert [a.outcome for a in result.info.gateway.attempts] == ["InternalServerError", "ok"]  # type: ignore[union-attr]


def test_stream_hedge_cut_after_content_is_interrupted(
    primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    plan = Plan(
        [candidate(primary, "fault:cut-after-3"), candidate(secondary, "gpt-4o-mini", "secondary")],
        hedge=HedgeSettings(after_s=0.5),
        buffer_tokens=0,  # the two words reach the caller before the cut
    )
    result = run_sync(plan, stream=True)
    assert isinstance(result.error, StreamInterruptedError)
    assert result.error.chunks_delivered == len(result.chunks) == 3
    assert result.outcomes == ["partial"] and len(chat_log(secondary)) == 0
