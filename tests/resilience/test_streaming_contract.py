"""The streaming contract beyond the catalogue: early close, buffering, exactly-once reporting, defaults."""

from __future__ import annotations

import asyncio

import httpx

from gateway import OpenAI, RateLimitError
from gateway.core.attempts import Plan, StreamInfo
from gateway.core.execute import Executor
from gateway.core.execute_async import AsyncExecutor
from tests.resilience.conftest import ANSWER, FAST, Records, candidate, chat_log, request, run
from tests.servers.http import LoopbackServer

WORDS = ANSWER.split(" ")


def test_closing_early_reports_one_closed_attempt(secondary: LoopbackServer) -> None:
    records = Records()
    plan = Plan([candidate(secondary, "gpt-4o-mini")], buffer_tokens=0)  # the first word comes at once
    with httpx.Client() as http:
        ex = Executor(http, observer=records, retry=FAST)
        chunks = ex.stream(request(stream=True), plan, headers={}, timeout=5.0, holder=StreamInfo())
        first = [next(chunks), next(chunks)]
        chunks.close()
    assert first[0].choices[0].delta.role == "assistant"
    assert first[1].choices[0].delta.content == WORDS[0]
    assert [r.outcome for r in records] == ["closed"]
    assert records[0].streamed_text == WORDS[0]


async def test_async_close_reports_one_closed_attempt(secondary: LoopbackServer) -> None:
    records = Records()
    plan = Plan([candidate(secondary, "gpt-4o-mini")])
    async with httpx.AsyncClient() as http:
        ex = AsyncExecutor(http, observer=records, retry=FAST)
        chunks = ex.stream(request(stream=True), plan, headers={}, timeout=5.0, holder=StreamInfo())
        await anext(chunks)
        await anext(chunks)
        await chunks.aclose()
    assert [r.outcome for r in records] == ["closed"]
    assert asyncio.current_task() is not None


def test_buffered_stream_delivers_every_chunk_once(mode: str, secondary: LoopbackServer) -> None:
    for buffer in (0, 2, 100):
        result = run(mode, Plan([candidate(secondary, "gpt-4o-mini")], buffer_tokens=buffer), stream=True)
        assert result.text == ANSWER
        roles = [c for c in result.chunks if c.choices and c.choices[0].delta.role]
        assert len(roles) == 1
        assert result.outcomes == ["ok"]
        assert result.info is not None and result.info.gateway is not None
        assert result.info.gateway.attempts[0].outcome == "ok"


def test_each_attempt_reported_once_with_increasing_index(
    mode: str, primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    plan = Plan([candidate(primary, "fault:503"), candidate(secondary, "gpt-4o-mini", "secondary")])
    result = run(mode, plan, stream=True)
    assert [r.attempt for r in result.records] == [0, 1, 2, 3]
    assert len({r.request_id for r in result.records}) == 1
    assert len(chat_log(primary)) + len(chat_log(secondary)) == len(result.records)


def test_default_client_keeps_the_sdk_semantics(primary: LoopbackServer) -> None:
    client = OpenAI(api_key="sk-test", base_url=primary.base_url + "/v1")
    try:
        client.chat.completions.create(
            model="fault:429-retry-after", messages=[{"role": "user", "content": "hi"}]
        )
    except RateLimitError as exc:  # the original class, not AllAttemptsFailedError
        assert exc.status_code == 429
    else:
        raise AssertionError("expected RateLimitError")
    finally:
        client.close()
    starts = [r.started for r in chat_log(primary)]
    assert len(starts) == 3  # two retries, as the SDK
    assert all(b - a >= 0.019 for a, b in zip(starts, starts[1:], strict=False))  # retry-after-ms honoured
