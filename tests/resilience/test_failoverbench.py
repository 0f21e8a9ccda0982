"""The 16 scenarios of the failoverbench catalogue, each followed by an "alive" probe.

Each scenario runs through the blocking and the asyncio loop and is checked from both sides: what
the caller got (a reply, the exact chunks, a typed error) and what the upstreams logged (how many
attempts, when). No scenario may end in a truncated success or a hang.
"""

from __future__ import annotations

import pytest

from gateway.core.attempts import DEFAULT_BUFFER_TOKENS, Plan
from gateway.core.errors import (
    AllAttemptsFailedError,
    APIConnectionError,
    BadRequestError,
    InternalServerError,
    StreamInterruptedError,
)
from gateway.resilience.breaker import Breakers, BreakerSettings
from gateway.resilience.deadline import Timeouts
from gateway.state.memory import MemoryBackend
from tests.resilience.conftest import ANSWER, Result, candidate, chat_log, run
from tests.servers.faults import FastServer, FaultHandler
from tests.servers.http import LoopbackServer

MODEL = "gpt-4o-mini"


def fallback_plan(primary: LoopbackServer, secondary: LoopbackServer, fault: str, **kw: object) -> Plan:
    return Plan(
        [candidate(primary, f"fault:{fault}"), candidate(secondary, MODEL, "secondary")],
        **kw,  # type: ignore[arg-type]
    )


def assert_alive(mode: str, *servers: LoopbackServer) -> None:
    """After the scenario, a plain request to each upstream still succeeds (nothing wedged)."""
    for server in servers:
        result = run(mode, Plan([candidate(server, MODEL, "alive")]))
        assert result.error is None
        assert result.text == ANSWER


def assert_served_by_secondary(result: Result, primary_attempts: int) -> None:
    assert result.error is None, result.error
    assert result.text == ANSWER
    info = result.reply.gateway if result.reply is not None else result.info.gateway  # type: ignore[union-attr]
    assert info.model == f"secondary/{MODEL}"
    assert len(result.records) == primary_attempts + 1
    assert result.records[-1].outcome == "ok"
    assert [a.outcome for a in info.attempts][-1] == "ok"


def test_01_429_with_retry_after(mode: str, primary: LoopbackServer, secondary: LoopbackServer) -> None:
    result = run(mode, fallback_plan(primary, secondary, "429-retry-after"))
    assert_served_by_secondary(result, 3)
    assert result.outcomes[:3] == ["RateLimitError"] * 3
    starts = [r.started for r in chat_log(primary)]
    assert len(starts) == 3
    assert all(b - a >= 0.019 for a, b in zip(starts, starts[1:], strict=False))  # retry-after-ms: 20
    assert_alive(mode, primary, secondary)


def test_02_429_without_retry_after(mode: str, primary: LoopbackServer, secondary: LoopbackServer) -> None:
    result = run(mode, fallback_plan(primary, secondary, "429"))
    assert_served_by_secondary(result, 3)
    assert len(chat_log(primary)) == 3 and len(chat_log(secondary)) == 1
    assert_alive(mode, primary, secondary)


def test_03_500_once(mode: str, primary: LoopbackServer, secondary: LoopbackServer) -> None:
    result = run(mode, fallback_plan(primary, secondary, "once-500"))
    assert result.error is None and result.text == ANSWER
    assert result.outcomes == ["InternalServerError", "ok"]
    assert result.reply.gateway.model == "primary/fault:once-500"
    assert len(chat_log(secondary)) == 0
    assert_alive(mode, primary, secondary)


def test_04_503_persistent_single_candidate(mode: str, primary: LoopbackServer) -> None:
    result = run(mode, Plan([candidate(primary, "fault:503")]))
    assert type(result.error) is InternalServerError  # the SDK's own class, not AllAttemptsFailedError
    assert result.error.status_code == 503
    assert len(chat_log(primary)) == 3
    assert_alive(mode, primary)


def test_05_reset_before_headers(mode: str, primary: LoopbackServer, secondary: LoopbackServer) -> None:
    result = run(mode, fallback_plan(primary, secondary, "reset"))
    assert_served_by_secondary(result, 3)
    assert all(isinstance(r.error, APIConnectionError) for r in result.records[:3])
    assert_alive(mode, primary, secondary)


def test_06_accepted_socket_never_answers(
    mode: str, primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    plan = fallback_plan(primary, secondary, "hang", timeouts=Timeouts(read_s=0.15))
    result = run(mode, plan)
    assert_served_by_secondary(result, 3)
    assert result.outcomes[:3] == ["APITimeoutError"] * 3
    assert result.elapsed < 2.0
    assert_alive(mode, primary, secondary)


def test_07_first_token_after_a_long_delay(
    mode: str, primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    plan = fallback_plan(primary, secondary, "slow-first-token-3000", timeouts=Timeouts(first_token_s=0.15))
    result = run(mode, plan, stream=True)
    assert_served_by_secondary(result, 3)
    assert result.elapsed < 2.0
    assert_alive(mode, primary, secondary)


def test_08_stream_cut_after_n_tokens(mode: str, primary: LoopbackServer, secondary: LoopbackServer) -> None:
    # With the default buffer (DEFAULT_BUFFER_TOKENS = 4) a cut after two words falls back unseen.
    assert Plan([]).buffer_tokens == DEFAULT_BUFFER_TOKENS == 4
    result = run(mode, fallback_plan(primary, secondary, "cut-after-3"), stream=True)
    assert_served_by_secondary(result, 3)
    assert result.outcomes[:3] == ["APIConnectionError"] * 3
    assert_alive(mode, primary, secondary)


def test_08b_cut_without_a_buffer_is_an_interruption(
    mode: str, primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    result = run(mode, fallback_plan(primary, secondary, "cut-after-3", buffer_tokens=0), stream=True)
    assert isinstance(result.error, StreamInterruptedError)
    assert result.error.chunks_delivered == len(result.chunks) == 3  # role + two words, nothing more
    assert result.text == " ".join(ANSWER.split(" ")[:2])
    assert result.outcomes == ["partial"]
    assert result.records[0].streamed_text == result.text
    assert len(chat_log(secondary)) == 0
    assert_alive(mode, primary, secondary)


def test_08c_cut_after_the_buffer_is_an_interruption(
    mode: str, primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    result = run(mode, fallback_plan(primary, secondary, "cut-after-7"), stream=True)  # role + 6 words
    assert isinstance(result.error, StreamInterruptedError)
    assert result.error.chunks_delivered == len(result.chunks) == 7
    assert result.outcomes == ["partial"] and len(chat_log(secondary)) == 0


def test_09_stall_mid_stream(mode: str, primary: LoopbackServer, secondary: LoopbackServer) -> None:
    plan = fallback_plan(primary, secondary, "stall-mid", timeouts=Timeouts(stream_idle_s=0.15))
    result = run(mode, plan, stream=True)
    assert_served_by_secondary(result, 3)  # the stall came inside the default buffer
    assert result.outcomes[:3] == ["APITimeoutError"] * 3
    assert_alive(mode, primary, secondary)


def test_09b_stall_mid_stream_without_a_buffer(
    mode: str, primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    timeouts = Timeouts(stream_idle_s=0.15)
    result = run(
        mode, fallback_plan(primary, secondary, "stall-mid", timeouts=timeouts, buffer_tokens=0), stream=True
    )
    assert isinstance(result.error, StreamInterruptedError)
    assert result.error.chunks_delivered == len(result.chunks) == 3
    assert result.outcomes == ["partial"]
    assert result.elapsed < 1.0
    assert_alive(mode, primary, secondary)


def test_10_invalid_sse_event(mode: str, primary: LoopbackServer, secondary: LoopbackServer) -> None:
    result = run(mode, fallback_plan(primary, secondary, "invalid-sse"), stream=True)
    assert_served_by_secondary(result, 3)
    assert result.outcomes[:3] == ["APIResponseValidationError"] * 3
    assert_alive(mode, primary, secondary)


def test_11_missing_done_is_never_a_success(
    mode: str, primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    result = run(mode, fallback_plan(primary, secondary, "no-done"), stream=True)
    assert isinstance(result.error, StreamInterruptedError)
    assert result.error.chunks_delivered == len(result.chunks)
    assert result.outcomes == ["partial"]
    assert_alive(mode, primary, secondary)


def test_12_context_length(mode: str, primary: LoopbackServer, secondary: LoopbackServer) -> None:
    plan = Plan(
        [
            candidate(primary, "fault:context-length", context_window=8192),
            candidate(secondary, "small", "secondary", context_window=4096),
            candidate(secondary, MODEL, "secondary", context_window=128_000),
        ],
        fallback_on=frozenset({"context_length", "server_error"}),
        prompt_tokens=9000,
    )
    result = run(mode, plan)
    assert result.error is None and result.text == ANSWER
    assert result.outcomes == ["BadRequestError", "ok"]  # exactly one attempt on the primary
    attempts = result.reply.gateway.attempts
    assert [(a.model, a.outcome) for a in attempts] == [
        ("primary/fault:context-length", "BadRequestError"),
        (f"secondary/{MODEL}", "ok"),
        ("secondary/small", "skipped"),
    ]
    assert "context window 4096" in (attempts[2].error or "")
    assert_alive(mode, primary, secondary)


def test_13_content_policy(mode: str, primary: LoopbackServer, secondary: LoopbackServer) -> None:
    result = run(mode, fallback_plan(primary, secondary, "content-policy"))
    assert type(result.error) is BadRequestError and len(chat_log(primary)) == 1
    assert len(chat_log(secondary)) == 0
    configured = fallback_plan(
        primary, secondary, "content-policy", fallback_on=frozenset({"content_filter"})
    )
    assert_served_by_secondary(run(mode, configured), 1)
    assert_alive(mode, primary, secondary)


def test_14_fallback_rejects_the_prefill(mode: str, primary: LoopbackServer) -> None:
    plan = Plan([candidate(primary, "fault:503"), candidate(primary, "fault:prefill-rejected", "other")])
    result = run(mode, plan)
    error = result.error
    assert isinstance(error, AllAttemptsFailedError)
    assert error.status_code == 400  # the most telling attempt's
    assert [(a.model, a.outcome, a.status_code) for a in error.attempts] == [
        ("primary/fault:503", "InternalServerError", 503),
        ("primary/fault:503", "InternalServerError", 503),
        ("primary/fault:503", "InternalServerError", 503),
        ("other/fault:prefill-rejected", "BadRequestError", 400),
    ]
    assert all(a.duration_s > 0 for a in error.attempts)
    assert_alive(mode, primary)


def test_15_outage_with_recovery_and_probe_discipline(mode: str, secondary: LoopbackServer) -> None:
    now = [1_000.0]
    faults = FaultHandler(clock=lambda: now[0])
    settings = BreakerSettings(window_s=60, min_calls=3, error_rate=0.5, cooldown_s=10, cooldown_factor=2)
    breakers = Breakers(MemoryBackend(), settings, clock=lambda: now[0])
    with FastServer(faults) as primary:
        plan = Plan(
            [
                candidate(primary, "fault:outage-60", name="flaky", max_retries=0),
                candidate(secondary, MODEL, "secondary"),
            ]
        )
        hits = []
        for at in [0, 0, 0, 1, 11, 12, 31, 40, 71, 72]:
            now[0] = 1_000.0 + at
            before = len(chat_log(primary))
            result = run(mode, plan, breakers=breakers)
            assert result.error is None and result.text == ANSWER
            hits.append(len(chat_log(primary)) - before)
            if at == 1:
                assert breakers.open_breakers().keys() == {"flaky"}
                assert [a.outcome for a in result.reply.gateway.attempts] == ["ok", "skipped"]
        # three failures open it; probes at +10 s, then +20 s (cooldown doubled), then +40 s
        assert hits == [1, 1, 1, 0, 1, 0, 1, 0, 1, 1]
        assert result.reply.gateway.model == "flaky"
        assert breakers.open_breakers() == {}
        assert_alive(mode, primary, secondary)


def test_16_503_persistent_with_healthy_fallback(
    mode: str, primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    result = run(mode, fallback_plan(primary, secondary, "503"))
    assert_served_by_secondary(result, 3)
    assert [a.outcome for a in result.reply.gateway.attempts] == ["InternalServerError"] * 3 + ["ok"]
    assert_alive(mode, primary, secondary)


@pytest.mark.parametrize("fault", ["stall-first", "invalid-sse-mid", "split-event"])
def test_more_stream_faults(
    mode: str, fault: str, primary: LoopbackServer, secondary: LoopbackServer
) -> None:
    plan = fallback_plan(primary, secondary, fault, timeouts=Timeouts(stream_idle_s=0.15, first_token_s=0.15))
    result = run(mode, plan, stream=True)
    if fault == "split-event":
        assert result.error is None and result.text == ANSWER and result.outcomes == ["ok"]
    else:  # invalid-sse-mid: the bad event comes after two words, inside the default buffer
        assert_served_by_secondary(result, 3)
    assert_alive(mode, primary, secondary)
