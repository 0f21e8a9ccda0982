"""Deadlines: the total deadline covers retries, sleeps and fallbacks, and ends within D + 50 ms."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gateway.core.attempts import Plan
from gateway.core.errors import APITimeoutError, StreamInterruptedError
from gateway.resilience.deadline import Deadline, Timeouts, attempt_timeout
from gateway.resilience.retry import RetrySettings
from tests.resilience.conftest import candidate, chat_log, run
from tests.servers.http import LoopbackServer

D = 0.4
SLACK = 0.05


def plan_for(primary: LoopbackServer, *faults: str, **timeouts: float) -> Plan:
    return Plan(
        [candidate(primary, f"fault:{f}", f"p{i}") for i, f in enumerate(faults)],
        timeouts=Timeouts(total_s=D, **timeouts),
    )


@pytest.mark.parametrize(
    ("kinds", "stream"),
    [
        (("hang",), False),
        (("hang", "hang"), False),
        (("hang",), True),
        (("slow-first-token-3000",), True),
        (("stall-first", "hang"), True),
    ],
)
def test_deadline_ends_the_request(
    mode: str, primary: LoopbackServer, kinds: tuple[str, ...], stream: bool
) -> None:
    result = run(mode, plan_for(primary, *kinds), stream=stream)
    assert result.error is not None
    assert D - 0.01 <= result.elapsed <= D + SLACK, result.elapsed
    cause = getattr(result.error, "cause", result.error)
    assert isinstance(cause, APITimeoutError)


def test_deadline_mid_stream_interrupts(mode: str, primary: LoopbackServer) -> None:
    plan = replace(plan_for(primary, "stall-mid"), buffer_tokens=0)  # two words reach the caller
    result = run(mode, plan, stream=True)
    assert isinstance(result.error, StreamInterruptedError)
    assert result.elapsed <= D + SLACK


def test_deadline_inside_the_stream_buffer_is_a_timeout(mode: str, primary: LoopbackServer) -> None:
    result = run(mode, plan_for(primary, "stall-mid"), stream=True)  # the default buffer holds both words
    assert type(result.error) is APITimeoutError and result.chunks == []
    assert result.elapsed <= D + SLACK


async def test_trickling_stream_is_cut_at_the_deadline(primary: LoopbackServer) -> None:
    from tests.resilience.conftest import run_async

    result = await run_async(replace(plan_for(primary, "trickle-150"), buffer_tokens=0), stream=True)
    assert isinstance(result.error, StreamInterruptedError)
    assert D - 0.01 <= result.elapsed <= D + SLACK


def test_backoff_that_would_outlast_the_deadline_is_not_slept(mode: str, primary: LoopbackServer) -> None:
    slow_backoff = RetrySettings(initial_delay=5.0, max_delay=5.0)
    plan = Plan([candidate(primary, "fault:503", retry=slow_backoff)], timeouts=Timeouts(total_s=D))
    result = run(mode, plan)
    assert result.error is not None and result.error.status_code == 503  # type: ignore[attr-defined]
    assert result.elapsed < 0.2 and len(chat_log(primary)) == 1


def test_no_settings_keeps_the_callers_timeout() -> None:
    assert attempt_timeout(12.5, None, Deadline(None), stream=False, sync=True) == 12.5
    assert attempt_timeout(None, None, Deadline(None), stream=True, sync=False) is None


def test_timeouts_capped_by_the_deadline() -> None:
    now = [100.0]
    deadline = Deadline(2.0, clock=lambda: now[0])
    now[0] = 101.5
    got = attempt_timeout(600.0, Timeouts(connect_s=5.0, first_token_s=3.0), deadline, stream=True, sync=True)
    assert got == {"connect": 0.5, "read": 0.5, "write": 0.5, "pool": 0.5}


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"connect_s": -1.0}, "connect_s"),
        ({"total_s": float("nan")}, "total_s"),
        ({"total_s": 1.0, "connect_s": 5.0}, "total_s"),
    ],
)
def test_impossible_timeouts(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Timeouts(**kwargs)


def test_a_deadline_already_over_raises_a_timeout(mode: str, primary: LoopbackServer) -> None:
    from gateway.core.attempts import Plan

    ticks = iter([0.0, 10.0, 10.0, 10.0, 10.0])
    from gateway.resilience.run import RequestRun, Resilience

    run_ = RequestRun(
        Resilience(observer=None, retry=RetrySettings()),
        Plan([candidate(primary, "m")], timeouts=Timeouts(total_s=1.0)),
        None,
        clock=lambda: next(ticks),
    )  # type: ignore[arg-type]
    assert run_.admit(run_.plan.candidates[0], first=True) is None
    assert isinstance(run_.error(), APITimeoutError)
    assert chat_log(primary) == [] and mode in ("sync", "async")


class _TrickleThenStall:
    """A stream whose pieces come 120 ms apart, then stop (socket open): the slow-loris shape."""

    def __call__(self, rec: Any) -> Any:
        from tests.servers.http import SSEReply, sse_pieces

        words = [
            {
                "id": "c",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "delta": {"content": f"w{i} "}, "finish_reason": None}],
            }
            for i in range(20)
        ]
        return SSEReply(pieces=sse_pieces(words), delay_s=0.12, stall_after=3, stall_s=5.0)


@pytest.mark.parametrize("buffer", [0, 8])
def test_a_stream_that_trickles_then_stalls_ends_at_the_deadline(mode: str, buffer: int) -> None:
    """A stall that begins late must not get a whole read timeout past the deadline (sync included)."""
    with LoopbackServer(_TrickleThenStall()) as server:
        plan = Plan([candidate(server, "m")], timeouts=Timeouts(total_s=D), buffer_tokens=buffer)
        result = run(mode, plan, stream=True)
    assert result.error is not None
    assert D - 0.01 <= result.elapsed <= D + SLACK, result.elapsed
