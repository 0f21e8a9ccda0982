"""The pieces the sync and async request loops share: candidates, attempt records, observers.

``gateway/execute.py`` and ``gateway/execute_async.py`` run the same loop (candidates in plan order,
retries inside a candidate, fallback between them) over a blocking or an asyncio transport; every
decision they make is a pure function here or in ``gateway/resilience/``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.errors import (
    AllAttemptsFailedError,
    APIConnectionError,
    APIError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    PermissionDeniedError,
    StreamInterruptedError,
    UnsupportedParameterError,
)
from gateway.types import AttemptInfo, ChatCompletionChunk, ChatRequest, CompletionUsage, GatewayInfo
from providers.base import Target


@dataclass(frozen=True, slots=True)
class Candidate:
    """One deployment of a plan, with why the router put it there."""

    target: Target
    name: str  # the model's name in the policy or catalog ("openai/gpt-4o-mini"), or the raw model string
    reason: str = ""
    max_retries: int | None = None


@dataclass(slots=True)
class Plan:
    candidates: list[Candidate]
    route: str | None = None
    details: Any = None  # the router's full plan (scores, exclusions) when a route was used
    fallback_on: frozenset[str] = frozenset({"rate_limit", "server_error", "timeout", "connection", "auth"})


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """What one attempt did: the unit metering, stats and breakers observe."""

    request_id: str
    attempt: int
    candidate: Candidate
    route: str | None
    started: float
    duration_s: float
    ttft_s: float | None
    outcome: str  # "ok", "partial" (a stream cut after content), or the error class name
    status_code: int | None
    usage: CompletionUsage | None
    usage_estimated: bool = False
    streamed_text: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    error: BaseException | None = None


@dataclass(slots=True)
class StreamInfo:
    """Filled in by the loop when a stream ends, read by ``Stream.gateway``."""

    gateway: GatewayInfo | None = None
    http_response: Any = None  # the serving attempt's httpx.Response, for with_raw_response


class Observer(Protocol):
    """Receives every attempt (metering, live stats, breakers, telemetry)."""

    def attempt_finished(self, record: AttemptRecord) -> None: ...


class NullObserver:
    def attempt_finished(self, record: AttemptRecord) -> None:
        return None


def check_request(req: ChatRequest, target: Target) -> None:
    """Refuse, before any call, a request whose values only an OpenAI-compatible upstream may judge."""
    if req._invalid is not None and target.kind != "openai":
        message = f"Invalid request for provider {target.provider!r}: {req._invalid}"
        param = req._invalid.partition(":")[0]
        raise BadRequestError(
            message,
            body={"message": message, "type": "invalid_request_error", "param": param},
            status_code=400,
        )


def error_class(error: BaseException) -> str:
    """The fallback class of an error, as routes name them in ``fallback.on``."""
    if isinstance(error, APIStatusError):
        status = error.status_code
        if status == 429:
            return "rate_limit"
        if status in (401, 403):
            return "auth"
        if status == 408:
            return "timeout"
        if status >= 500:
            return "server_error"
        if _is_context_length(error):
            return "context_length"
        if _is_content_filter(error):
            return "content_filter"
        if isinstance(error, UnsupportedParameterError):
            return "unsupported"
        return "bad_request"
    if isinstance(error, APIConnectionError):
        return "timeout" if "timed out" in str(error).lower() else "connection"
    return "invalid_response"


def may_fall_back(error: BaseException, plan: Plan) -> bool:
    kind = error_class(error)
    if kind in ("unsupported", "invalid_response"):
        return True
    return kind in plan.fallback_on


def _is_context_length(error: APIStatusError) -> bool:
    text = f"{error.code or ''} {error.message}".lower()
    return "context_length" in text or "context length" in text or "too long" in text


def _is_content_filter(error: APIStatusError) -> bool:
    text = f"{error.code or ''} {error.type or ''} {error.message}".lower()
    return "content_filter" in text or "content policy" in text or "safety" in text


def attempt_info(record: AttemptRecord) -> AttemptInfo:
    return AttemptInfo(
        provider=record.candidate.target.provider,
        model=record.candidate.name,
        outcome=record.outcome,
        status_code=record.status_code,
        duration_s=round(record.duration_s, 6),
        error=str(record.error) if record.error is not None else None,
        used_tokens=record.usage is not None and record.usage.total_tokens > 0,
    )


def gateway_info(
    plan: Plan, served: AttemptRecord, records: Sequence[AttemptRecord], started: float
) -> GatewayInfo:
    return GatewayInfo(
        provider=served.candidate.target.provider,
        model=served.candidate.name,
        route=plan.route,
        attempts=[attempt_info(r) for r in records],
        latency_s=round(time.perf_counter() - started, 6),
        ttft_s=served.ttft_s,
        reason=served.candidate.reason or None,
        usage_estimated=served.usage_estimated,
    )


def final_error(records: Sequence[AttemptRecord], plan: Plan) -> APIError:
    """The error to raise when no attempt succeeded.

    With one candidate the caller sees that candidate's own last error, exactly as the openai SDK
    would raise it. With several, ``AllAttemptsFailedError`` lists every attempt, and its status is
    the most telling one's: an auth failure or bad request over a 5xx over a connection error.
    """
    errors = [r.error for r in records if isinstance(r.error, APIError)]
    if not errors:
        raise RuntimeError("final_error called without a failed attempt")  # a bug, not an input
    if len({r.candidate.name for r in records}) <= 1:
        return errors[-1]
    cause = max(errors, key=_tellingness)
    lines = "; ".join(f"{r.candidate.name}: {r.outcome} ({r.status_code or '-'})" for r in records)
    return AllAttemptsFailedError(
        f"All {len(records)} attempts failed: {lines}",
        attempts=[attempt_info(r) for r in records],
        cause=cause,
    )


def _tellingness(error: APIError) -> int:
    if isinstance(error, BadRequestError | AuthenticationError | PermissionDeniedError):
        return 4
    if isinstance(error, APIStatusError) and error.status_code == 429:
        return 3
    if isinstance(error, APIStatusError):
        return 2
    return 1


def is_substantive(chunk: ChatCompletionChunk) -> bool:
    """Whether a chunk carries content the caller would notice twice (not just a role)."""
    if chunk.usage is not None and not chunk.choices:
        return True
    for choice in chunk.choices:
        d = choice.delta
        if d.content or d.tool_calls or d.refusal or d.function_call or choice.finish_reason:
            return True
    return False


def chunk_text(chunk: ChatCompletionChunk) -> str:
    parts = []
    for choice in chunk.choices:
        if choice.delta.content:
            parts.append(choice.delta.content)
        for call in choice.delta.tool_calls or ():
            if call.function is not None:
                parts.append((call.function.name or "") + (call.function.arguments or ""))
    return "".join(parts)


def interrupted(provider: str, delivered: int, cause: BaseException) -> StreamInterruptedError:
    return StreamInterruptedError(
        f"{provider}: the stream failed after {delivered} chunks reached the caller: {cause}",
        provider=provider,
        chunks_delivered=delivered,
        cause=cause,
    )


Sleep = Callable[[float], None]
