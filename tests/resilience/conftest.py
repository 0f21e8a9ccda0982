"""Fixtures for the fault battery: a faulty primary, a healthy secondary, and one runner for both loops.

Tests build ``Plan``s directly (the executor's input) and run them through the blocking or the asyncio
executor; retry sleeps are shortened through ``RetrySettings``, never by patching.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from gateway.core.attempts import AttemptRecord, Candidate, Plan, StreamInfo
from gateway.core.errors import APIError
from gateway.core.execute import Executor
from gateway.core.execute_async import AsyncExecutor
from gateway.core.types import ChatCompletionChunk, ChatRequest
from gateway.resilience.breaker import Breakers
from gateway.resilience.retry import RetrySettings
from providers.base import Target
from tests.servers import openai_server
from tests.servers.faults import FastServer, FaultHandler
from tests.servers.http import LoopbackServer, Recorded

FAST = RetrySettings(initial_delay=0.001, max_delay=0.004)
PROMPT = "tell me about switchyards and breakers"
ANSWER = "Echo: " + PROMPT


class Records(list[AttemptRecord]):
    """An observer that keeps every attempt record."""

    def attempt_finished(self, record: AttemptRecord) -> None:
        self.append(record)


def target(server: LoopbackServer, model: str, provider: str = "primary") -> Target:
    return Target(
        provider=provider, kind="openai", base_url=server.base_url + "/v1", model=model, api_key="sk-test"
    )


def candidate(server: LoopbackServer, model: str, provider: str = "primary", **kw: Any) -> Candidate:
    return Candidate(target(server, model, provider), kw.pop("name", f"{provider}/{model}"), **kw)


def request(*, stream: bool = False, prompt: str = PROMPT, **extra: Any) -> ChatRequest:
    body: dict[str, Any] = {"model": "route", "messages": [{"role": "user", "content": prompt}], **extra}
    if stream:
        body["stream"] = True
    return ChatRequest.model_validate(body)


@dataclass
class Result:
    reply: Any = None
    error: APIError | None = None
    chunks: list[ChatCompletionChunk] = field(default_factory=list)
    records: list[AttemptRecord] = field(default_factory=list)
    elapsed: float = 0.0
    info: StreamInfo | None = None

    @property
    def text(self) -> str:
        if self.reply is not None and not self.chunks:
            return str(self.reply.choices[0].message.content)
        return "".join(c.choices[0].delta.content or "" for c in self.chunks if c.choices)

    @property
    def outcomes(self) -> list[str]:
        return [r.outcome for r in self.records]


def run_sync(
    plan: Plan,
    *,
    stream: bool = False,
    breakers: Breakers | None = None,
    timeout: Any = 5.0,
    headers: dict[str, str] | None = None,
    req: ChatRequest | None = None,
    http: httpx.Client | None = None,
) -> Result:
    """``http``: a client the caller keeps open (a hedge loser still running uses it); else one of
    its own, closed as soon as the answer is in."""
    records = Records()
    result = Result(records=records)
    req = req or request(stream=stream)
    with contextlib.nullcontext(http) if http is not None else httpx.Client() as http:
        ex = Executor(http, observer=records, retry=FAST, breakers=breakers)
        t0 = time.monotonic()
        try:
            if stream:
                result.info = StreamInfo()
                for chunk in ex.stream(req, plan, headers=headers or {}, timeout=timeout, holder=result.info):
                    result.chunks.append(chunk)
            else:
                result.reply = ex.complete(req, plan, headers=headers or {}, timeout=timeout)
        except APIError as exc:
            result.error = exc
        result.elapsed = time.monotonic() - t0
    return result


async def run_async(
    plan: Plan,
    *,
    stream: bool = False,
    breakers: Breakers | None = None,
    timeout: Any = 5.0,
    headers: dict[str, str] | None = None,
    req: ChatRequest | None = None,
    http: httpx.AsyncClient | None = None,
) -> Result:
    records = Records()
    result = Result(records=records)
    req = req or request(stream=stream)
    own = http is None
    client = http or httpx.AsyncClient()
    executor = AsyncExecutor(client, observer=records, retry=FAST, breakers=breakers)
    t0 = time.monotonic()
    try:
        if stream:
            result.info = StreamInfo()
            async for chunk in executor.stream(
                req, plan, headers=headers or {}, timeout=timeout, holder=result.info
            ):
                result.chunks.append(chunk)
        else:
            result.reply = await executor.complete(req, plan, headers=headers or {}, timeout=timeout)
    except APIError as exc:
        result.error = exc
    finally:
        if own:
            await client.aclose()
    result.elapsed = time.monotonic() - t0
    return result


def run(mode: str, plan: Plan, **kw: Any) -> Result:
    if mode == "sync":
        return run_sync(plan, **kw)
    return asyncio.run(run_async(plan, **kw))


def chat_log(server: LoopbackServer) -> list[Recorded]:
    return [r for r in server.log if r.path.endswith("/chat/completions")]


@pytest.fixture
def faults() -> FaultHandler:
    return FaultHandler()


@pytest.fixture
def primary(faults: FaultHandler) -> Iterator[LoopbackServer]:
    with FastServer(faults) as server:
        yield server


@pytest.fixture
def secondary() -> Iterator[LoopbackServer]:
    with FastServer(openai_server.handle) as server:
        yield server


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)
