"""Hedged requests (asyncio): the first answer wins; the loser finishes unread (a non-streamed one) or
is cancelled (a stream), and both are metered."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from gateway.core.attempts import Plan
from gateway.resilience.hedge import HedgeSettings, TTFTWindow, hedge_affordable, hedge_delay
from tests.resilience.conftest import ANSWER, candidate, chat_log, run_async
from tests.servers.http import LoopbackServer


def wait_for(predicate, timeout: float = 3.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


async def until(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    """``wait_for`` for what the event loop itself must finish (a hedge loser running in a task)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return False


async def test_hedge_wins_and_the_slow_request_finishes_unread_and_is_metered(
    primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    plan = Plan(
        [candidate(primary, "fault:slow-700"), candidate(secondary, "gpt-4o-mini", "secondary")],
        hedge=HedgeSettings(after_s=0.05),
    )
    async with httpx.AsyncClient() as http:
        result = await run_async(plan, http=http)
        assert result.error is None and result.text == ANSWER
        assert result.elapsed < 0.5  # the answer did not wait for the loser
        assert result.reply.gateway.model == "secondary/gpt-4o-mini"
        assert await until(lambda: len(result.records) == 2)  # the loser, once it finished
    assert sorted(result.outcomes) == ["cancelled", "ok"]  # both attempts reach the observer, once each
    assert len({(r.request_id, r.attempt) for r in result.records}) == 2
    [loser] = [r for r in result.records if r.outcome == "cancelled"]
    [served] = chat_log(primary)
    assert served.outcome == "ok"  # the upstream answered it in full (and bills it)
    assert loser.usage is not None and not loser.usage_estimated
    assert (loser.usage.prompt_tokens, loser.usage.completion_tokens) == (
        served.served_tokens["prompt"],
        served.served_tokens["completion"],
    )
    assert loser.status_code == 200 and len(chat_log(secondary)) == 1


async def test_a_hedge_loser_still_running_when_the_client_closes_is_cancelled(
    primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    plan = Plan(
        [candidate(primary, "fault:slow-700"), candidate(secondary, "gpt-4o-mini", "secondary")],
        hedge=HedgeSettings(after_s=0.05),
    )
    result = await run_async(plan)  # closes its HTTP client as soon as the answer is in
    assert result.error is None and result.reply.gateway.model == "secondary/gpt-4o-mini"
    assert await until(lambda: len(result.records) == 2)
    assert sorted(result.outcomes) == ["cancelled", "ok"]  # not a connection error: no breaker hears it
    # The upstream saw the hang-up (on a loaded machine the request may not have been sent at all).
    assert wait_for(lambda: all(r.outcome == "disconnected" for r in chat_log(primary)))


async def test_primary_answering_first_leaves_the_hedge_to_finish(primary: LoopbackServer) -> None:
    plan = Plan(
        [candidate(primary, "fault:slow-150"), candidate(primary, "fault:slow-900", "hedge")],
        hedge=HedgeSettings(after_s=0.03),
    )
    async with httpx.AsyncClient() as http:
        result = await run_async(plan, http=http)
        assert result.error is None and result.reply.gateway.model == "primary/fault:slow-150"
        assert await until(lambda: len(result.records) == 2)
    assert sorted(result.outcomes) == ["cancelled", "ok"]
    assert {r.outcome for r in chat_log(primary)} == {"ok"}
    assert all(r.usage is not None and r.usage.total_tokens > 0 for r in result.records)


async def test_fast_primary_starts_no_hedge(primary: LoopbackServer, secondary: LoopbackServer) -> None:
    plan = Plan(
        [candidate(primary, "gpt-4o-mini"), candidate(secondary, "gpt-4o-mini", "secondary")],
        hedge=HedgeSettings(after_s=0.5),
    )
    result = await run_async(plan)
    assert result.outcomes == ["ok"] and len(chat_log(secondary)) == 0


async def test_extra_cost_cap_prevents_the_hedge(primary: LoopbackServer, secondary: LoopbackServer) -> None:
    plan = Plan(
        [
            candidate(primary, "fault:slow-200"),
            candidate(secondary, "gpt-4o-mini", "secondary", estimated_cost_usd=0.02),
        ],
        hedge=HedgeSettings(after_s=0.02, max_extra_cost_usd=0.01),
    )
    result = await run_async(plan)
    assert result.outcomes == ["ok"] and result.reply.gateway.model == "primary/fault:slow-200"
    assert len(chat_log(secondary)) == 0


async def test_failed_primary_after_hedge_start_still_served_by_hedge(
    primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    plan = Plan(
        [candidate(primary, "fault:hang", max_retries=0), candidate(secondary, "gpt-4o-mini", "secondary")],
        hedge=HedgeSettings(after_s=0.02),
    )
    result = await run_async(plan, timeout=0.3)
    assert result.error is None and result.reply.gateway.model == "secondary/gpt-4o-mini"
    assert await until(lambda: len(result.records) == 2)  # the hung primary, given up on unread
    assert sorted(result.outcomes) == ["cancelled", "ok"]


def test_p95_delay_and_fallback() -> None:
    window = TTFTWindow(size=100)
    settings = HedgeSettings(after_s=0.25, p95=True, min_samples=20)
    assert hedge_delay(settings, window, "m") == 0.25  # too few samples: the fixed delay
    for i in range(1, 101):
        window.observe("m", i / 100)
    assert hedge_delay(settings, window, "m") == 0.95
    assert hedge_affordable(HedgeSettings(after_s=0.1), None)
    assert not hedge_affordable(HedgeSettings(after_s=0.1, max_extra_cost_usd=0.01), None)


@pytest.mark.parametrize("bad", [{"after_s": -1.0}, {}, {"after_s": 1.0, "max_extra_cost_usd": -1.0}])
def test_impossible_hedge_settings(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="HedgeSettings"):
        HedgeSettings(**bad)


async def test_stream_hedge_wins_and_the_slow_stream_is_cancelled(
    primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    plan = Plan(
        [candidate(primary, "fault:slow-first-token-700"), candidate(secondary, "gpt-4o-mini", "secondary")],
        hedge=HedgeSettings(after_s=0.05),
    )
    result = await run_async(plan, stream=True)
    assert result.error is None and result.text == ANSWER
    assert result.elapsed < 0.5
    assert result.info is not None and result.info.gateway is not None
    assert result.info.gateway.model == "secondary/gpt-4o-mini"
    assert sorted(result.outcomes) == ["cancelled", "ok"]
    assert wait_for(lambda: chat_log(primary)[0].outcome == "disconnected")


async def test_stream_primary_first_token_wins(primary: LoopbackServer) -> None:
    plan = Plan(
        [
            candidate(primary, "fault:slow-first-token-150"),
            candidate(primary, "fault:slow-first-token-900", "hedge"),
        ],
        hedge=HedgeSettings(after_s=0.03),
    )
    result = await run_async(plan, stream=True)
    assert result.error is None and result.text == ANSWER
    assert result.info is not None and result.info.gateway is not None
    assert result.info.gateway.model == "primary/fault:slow-first-token-150"
    assert sorted(result.outcomes) == ["cancelled", "ok"]


async def test_stream_hedge_failing_fast_leaves_the_primary_to_win(primary: LoopbackServer) -> None:
    plan = Plan(
        [candidate(primary, "fault:slow-first-token-200"), candidate(primary, "fault:503", "hedge")],
        hedge=HedgeSettings(after_s=0.03),
    )
    result = await run_async(plan, stream=True)
    assert result.error is None and result.text == ANSWER
    assert result.outcomes == ["InternalServerError", "ok"]
    assert [a.outcome for a in result.info.gateway.attempts] == ["InternalServerError", "ok"]  # type: ignore[union-attr]


async def test_stream_hedge_cut_after_content_is_interrupted(
    primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    from gateway.core.errors import StreamInterruptedError

    plan = Plan(
        [candidate(primary, "fault:cut-after-3"), candidate(secondary, "gpt-4o-mini", "secondary")],
        hedge=HedgeSettings(after_s=0.5),
        buffer_tokens=0,  # the two words reach the caller before the cut
    )
    result = await run_async(plan, stream=True)
    assert isinstance(result.error, StreamInterruptedError)
    assert result.error.chunks_delivered == len(result.chunks) == 3
    assert result.outcomes == ["partial"] and len(chat_log(secondary)) == 0
