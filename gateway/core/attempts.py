"""The pieces the sync and async request loops share: candidates, plans, attempt records, observers.

``gateway/execute.py`` and ``gateway/execute_async.py`` run the same loop (candidates in plan order,
retries inside a candidate, fallback between them) over a blocking or an asyncio transport; every
decision they make is a pure function here or in ``gateway/resilience/``.

A ``Plan`` carries the route's resilience settings; every one of them defaults to today's openai SDK
behaviour (two retries with the SDK's backoff, the client's httpx timeout, no hedge, no buffering).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core.errors import (
    AllAttemptsFailedError,
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    PermissionDeniedError,
    StreamInterruptedError,
    UnsupportedParameterError,
)
from gateway.core.types import AttemptInfo, ChatCompletionChunk, ChatRequest, CompletionUsage, GatewayInfo
from gateway.resilience.deadline import Timeouts
from gateway.resilience.hedge import HedgeSettings
from gateway.resilience.retry import RetrySettings
from providers.base import Target

FALLBACK_CLASSES = frozenset(
    {"rate_limit", "server_error", "timeout", "connection", "context_length", "content_filter", "auth"}
)
DEFAULT_FALLBACK_ON = frozenset({"rate_limit", "server_error", "timeout", "connection", "auth"})
# Hold a stream's first 4 content chunks, so a cut among them falls back transparently; the cost is
# the first chunk reaching the caller 4 upstream chunk gaps later (about 80 ms at 50 tokens/s;
# docs/resilience.md). Direct models (no route) forward at once, as the openai SDK does.
DEFAULT_BUFFER_TOKENS = 4


@dataclass(frozen=True, slots=True)
class Candidate:
    """One deployment of a plan, with why the router put it there.

    Attributes:
        target: Where and how to call it.
        name: The model's name in the policy or catalog (``"openai/gpt-4o-mini"``), or the raw model
            string. Breakers, live statistics and ``reply.gateway.model`` use this name.
        reason: Why the router chose it (shown in ``reply.gateway.reason``).
        max_retries: Retries inside this candidate; ``None`` takes ``retry.max_retries``.
        retry: Backoff settings for this candidate; ``None`` takes the executor's (the client's).
        context_window: The model's window in tokens, when known: after a context-length error only
            candidates whose window fits are tried.
        estimated_cost_usd: What one call is expected to cost, for the hedge's extra-cost cap.
    """

    target: Target
    name: str
    reason: str = ""
    max_retries: int | None = None
    retry: RetrySettings | None = None
    context_window: int | None = None
    estimated_cost_usd: float | None = None


@dataclass(slots=True)
class Plan:
    """The candidates to try in order, and the route's resilience settings.

    Attributes:
        candidates: Deployments in the order to try them.
        route: The route's name, or ``None`` for a direct model.
        details: The router's full plan (scores, exclusions) when a route was used.
        fallback_on: Error classes (``error_class``) that move on to the next candidate:
            ``rate_limit``, ``server_error``, ``timeout``, ``connection``, ``context_length``,
            ``content_filter``, ``auth``. A malformed upstream answer always falls back.
        timeouts: Connect, read, first-token, stream-idle and total timeouts; ``None`` keeps the
            client's (or the call's) httpx timeout as it is.
        hedge: Opt-in hedged requests (asyncio client only).
        buffer_tokens: Hold the first N content chunks of a stream before forwarding any, so a
            failure inside them still falls back transparently (``DEFAULT_BUFFER_TOKENS``, 4; 0
            forwards the first chunk as soon as it arrives).
        prompt_tokens: The prompt's estimated size, to pick candidates whose window fits after a
            context-length error.
        max_candidates: At most this many candidates are called (a route's ``fallback.max_attempts``);
            skipped candidates do not count. ``None`` tries them all.
        policy_revision: The digest of the policy the plan was made under (``policy_revision``), which
            every attempt's record carries; ``None`` without a policy.
        output_ceilings: The completion tokens admission assumed per candidate name (``Guard.admit``:
            ``max_tokens``, else the reservation's estimate): what an answer whose body was cut after a
            success status is charged (``gateway/metering/cut_body.py``); ``None`` without a guard.
    """

    candidates: list[Candidate]
    route: str | None = None
    details: Any = None
    fallback_on: frozenset[str] = DEFAULT_FALLBACK_ON
    timeouts: Timeouts | None = None
    hedge: HedgeSettings | None = None
    buffer_tokens: int = DEFAULT_BUFFER_TOKENS
    prompt_tokens: int | None = None
    max_candidates: int | None = None
    policy_revision: str | None = None
    output_ceilings: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        unknown = set(self.fallback_on) - FALLBACK_CLASSES
        if unknown:
            raise ValueError(
                f"Plan.fallback_on: unknown classes {sorted(unknown)}; use {sorted(FALLBACK_CLASSES)}"
            )
        if self.buffer_tokens < 0:
            raise ValueError(f"Plan.buffer_tokens must be >= 0, got {self.buffer_tokens}")
        if self.max_candidates is not None and self.max_candidates < 1:
            raise ValueError(f"Plan.max_candidates must be >= 1, got {self.max_candidates}")


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
    # What the upstream said it answered with (telemetry's gen_ai.response.*), when it answered.
    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: tuple[str, ...] = ()
    # The request's sampling parameters that were set (telemetry's gen_ai.request.*).
    request_params: dict[str, Any] = field(default_factory=dict)
    # For opt-in content capture only: the request's messages (shared, never copied) and a
    # non-streamed reply's text (a stream's is ``streamed_text``).
    request_messages: list[dict[str, Any]] | None = field(default=None, repr=False, compare=False)
    reply_text: str = field(default="", repr=False, compare=False)
    policy_revision: str | None = None  # the plan's: which version of a hot-reloaded policy served it


def request_parameters(req: ChatRequest | None) -> dict[str, Any]:
    """The sampling parameters ``req`` set, by their GenAI convention names (``gen_ai.request.<name>``)."""
    if req is None:
        return {}
    stop = req.stop
    values: dict[str, Any] = {
        "max_tokens": req.max_output_tokens,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "frequency_penalty": req.frequency_penalty,
        "presence_penalty": req.presence_penalty,
        "seed": req.seed,
        "stop_sequences": [stop] if isinstance(stop, str) else (list(stop) if stop else None),
        "choice.count": req.n if req.n not in (None, 1) else None,
    }
    return {name: value for name, value in values.items() if value is not None}


def reply_outcome(reply: Any, usage: CompletionUsage | None, outcome: str | None = None) -> Outcome:
    """An attempt's outcome from its parsed reply: usage, and the reply's id, model and finish reasons."""
    choices = getattr(reply, "choices", None) or ()
    return Outcome(
        usage=usage,
        outcome=outcome,
        response_id=getattr(reply, "id", None) if isinstance(getattr(reply, "id", None), str) else None,
        response_model=getattr(reply, "model", None)
        if isinstance(getattr(reply, "model", None), str)
        else None,
        finish_reasons=tuple(str(c.finish_reason) for c in choices if getattr(c, "finish_reason", None)),
        reply_text="".join(_message_text(c) for c in choices),
    )


def _message_text(choice: Any) -> str:
    content = getattr(getattr(choice, "message", None), "content", None)
    return content if isinstance(content, str) else ""


@dataclass(slots=True)
class StreamInfo:
    """Filled in by the loop when a stream ends, read by ``Stream.gateway``."""

    gateway: GatewayInfo | None = None
    http_response: Any = None  # the serving attempt's upstream response (its headers, request id)
    candidate: Candidate | None = None  # the candidate being attempted (the server of the first chunk)


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
    """The fallback class of an error, as routes name them in ``fallback.on``.

    ``rate_limit`` (429), ``auth`` (401/403), ``timeout`` (408 and client timeouts),
    ``server_error`` (5xx, 529), ``context_length`` (a 400 about the window, or 413),
    ``content_filter`` (a 400 about the content policy), ``connection``, ``invalid_response`` (a
    malformed answer), ``unsupported`` (a parameter the provider cannot express), ``bad_request``.
    """
    if isinstance(error, APIStatusError):
        return _status_class(error)
    if isinstance(error, APITimeoutError):
        return "timeout"
    if isinstance(error, APIConnectionError):
        return "timeout" if "timed out" in str(error).lower() else "connection"
    return "invalid_response"


def _status_class(error: APIStatusError) -> str:
    status = error.status_code
    if status == 429:
        return "rate_limit"
    if status in (401, 403):
        return "auth"
    if status == 408:
        return "timeout"
    if status >= 500:
        return "server_error"
    if status == 413 or _is_context_length(error):
        return "context_length"
    if _is_content_filter(error):
        return "content_filter"
    if isinstance(error, UnsupportedParameterError):
        return "unsupported"
    return "bad_request"


def may_fall_back(error: BaseException, plan: Plan) -> bool:
    """Whether ``error`` on one candidate moves the request on to the next one.

    A parameter the provider cannot express, a malformed answer and refused credentials (401/403:
    a misconfigured deployment, reported loudly) always move on; the rest as ``plan.fallback_on`` says.
    """
    kind = error_class(error)
    if kind in ("unsupported", "invalid_response", "auth"):
        return True
    return kind in plan.fallback_on


_DEPLOYMENT_FAULTS = frozenset(
    {"rate_limit", "server_error", "timeout", "connection", "invalid_response", "auth"}
)


def is_deployment_fault(error: BaseException) -> bool:
    """Whether an error counts against the deployment's circuit breaker (a bad request does not)."""
    return error_class(error) in _DEPLOYMENT_FAULTS


def _is_context_length(error: APIStatusError) -> bool:
    text = f"{error.code or ''} {error.message}".lower()
    return "context_length" in text or "context length" in text or "too long" in text


def _is_content_filter(error: APIStatusError) -> bool:
    text = f"{error.code or ''} {error.type or ''} {error.message}".lower()
    return any(word in text for word in ("content_filter", "content_policy", "content policy", "safety"))


@dataclass(frozen=True, slots=True)
class Skip:
    """A candidate the loop did not call, and why (an open breaker, a window too small, …)."""

    candidate: Candidate
    reason: str


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


def skip_info(skip: Skip) -> AttemptInfo:
    return AttemptInfo(
        provider=skip.candidate.target.provider,
        model=skip.candidate.name,
        outcome="skipped",
        duration_s=0.0,
        error=skip.reason,
    )


def gateway_info(
    plan: Plan,
    served: AttemptRecord,
    records: Sequence[AttemptRecord],
    started: float,
    skipped: Sequence[Skip] = (),
) -> GatewayInfo:
    return GatewayInfo(
        provider=served.candidate.target.provider,
        model=served.candidate.name,
        route=plan.route,
        attempts=[attempt_info(r) for r in records] + [skip_info(s) for s in skipped],
        latency_s=round(time.perf_counter() - started, 6),
        ttft_s=served.ttft_s,
        reason=served.candidate.reason or None,
        usage_estimated=served.usage_estimated,
    )


def final_error(records: Sequence[AttemptRecord], plan: Plan, skipped: Sequence[Skip] = ()) -> APIError:
    """The error to raise when no attempt succeeded.

    With one candidate the caller sees that candidate's own last error, exactly as the openai SDK
    would raise it. With several, ``AllAttemptsFailedError`` lists every attempt (candidate,
    outcome, status, duration) and every skipped candidate, and its status is the most telling
    one's: an auth failure or bad request over a 429 over a 5xx over a connection error.
    """
    errors = [r.error for r in records if isinstance(r.error, APIError)]
    if not errors:
        if not skipped:
            raise RuntimeError("final_error called without a failed attempt")  # a bug, not an input
        errors = [_nothing_tried(skipped)]
        if len(plan.candidates) == 1:
            return errors[0]
    elif len({r.candidate.name for r in records}) <= 1 and not skipped:
        return errors[-1]
    cause = max(errors, key=_tellingness)
    lines = [
        f"{r.candidate.name}: {r.outcome} ({r.status_code or '-'}, {r.duration_s:.3f}s)" for r in records
    ] + [f"{s.candidate.name}: skipped ({s.reason})" for s in skipped]
    return AllAttemptsFailedError(
        f"All {len(records)} attempts failed: {'; '.join(lines)}",
        attempts=[attempt_info(r) for r in records] + [skip_info(s) for s in skipped],
        cause=cause,
    )


def _nothing_tried(skipped: Sequence[Skip]) -> APIStatusError:
    reasons = "; ".join(f"{s.candidate.name}: {s.reason}" for s in skipped)
    message = f"No candidate could be tried: {reasons}"
    body = {"message": message, "type": "server_error", "code": "no_candidate_available"}
    return InternalServerError(message, body=body, status_code=503)


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


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt's record says beyond its error: usage, timing, the text streamed."""

    usage: CompletionUsage | None = None
    ttft_s: float | None = None
    streamed_text: str = ""
    estimated: bool = False
    outcome: str | None = None  # forced: "partial", "closed" or "cancelled"
    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: tuple[str, ...] = ()
    reply_text: str = ""


@dataclass(frozen=True, slots=True)
class StreamMetering:
    """How the core meters a stream, set for the stream's attempts in ``STREAM_METERING``.

    The core asks every upstream for the stream's usage (``stream_options.include_usage``); when the
    caller did not ask for it, its attempts keep the usage chunk (``choices: []``) and the chunks'
    ``usage: null`` fields from the caller, who sees the stream the SDK would see without the gateway.

    Attributes:
        caller_wants_usage: The caller asked for ``stream_options.include_usage`` itself.
        prompt_tokens: The prompt's size as a candidate's tokenizer counts it: the prompt of a stream
            whose upstream never reported usage (cut, or closed by the caller), marked estimated.
    """

    caller_wants_usage: bool
    prompt_tokens: Callable[[Candidate], int]


STREAM_METERING: ContextVar[StreamMetering | None] = ContextVar("switchyard_stream_metering", default=None)


def stream_outcome(attempt: StreamAttempt, error: BaseException | None, *, closed: bool = False) -> Outcome:
    """The fields of a streaming attempt's record: ``partial`` when it failed after content was delivered.

    A metered stream (``STREAM_METERING``) that got an answer but never its usage (cut, closed early,
    cancelled as a hedge loser, or an upstream that ignores ``include_usage``) is counted: the prompt
    by the candidate's tokenizer, the completion from the text that arrived; the usage is marked
    estimated. An answer is a success status from the upstream, even before any chunk: it read the
    prompt.
    """
    forced = None
    if closed:
        forced = "closed"
    elif error is not None and attempt.delivered:
        forced = "partial"
    text = "".join(attempt.text)
    usage, estimated = attempt.usage, attempt.usage is None and bool(attempt.text)
    if usage is None and attempt.metering is not None and (attempt.received or attempt.answered):
        usage, estimated = _estimated_usage(attempt.metering, attempt.candidate, text), True
    return Outcome(
        usage=usage,
        ttft_s=attempt.ttft_s,
        streamed_text=text,
        estimated=estimated,
        outcome=forced,
        response_id=attempt.response_id,
        response_model=attempt.response_model,
        finish_reasons=tuple(attempt.finish_reasons),
    )


def _estimated_usage(metering: StreamMetering, candidate: Candidate, text: str) -> CompletionUsage:
    from gateway.metering.tokens import count_text

    prompt = metering.prompt_tokens(candidate)
    completion = count_text(text, candidate.name).tokens if text else 0
    return CompletionUsage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


_NULL_USAGE = re.compile(rb'(,\s*"usage"\s*:\s*null(?=\s*[,}]))|("usage"\s*:\s*null\s*,\s*)')


def without_usage(chunk: ChatCompletionChunk) -> ChatCompletionChunk:
    """``chunk`` as the caller sees it when only the gateway asked for usage: no ``usage`` field."""
    if "usage" not in chunk.model_fields_set:
        return chunk
    raw = chunk._raw_body
    if chunk.usage is None and raw is not None:
        stripped, count = _NULL_USAGE.subn(b"", raw, count=1)
        if count:
            chunk._raw_body = stripped
            chunk.model_fields_set.discard("usage")
            return chunk
    copy = chunk.model_copy(update={"usage": None})
    copy.model_fields_set.discard("usage")
    copy._raw_body = None
    return copy


def interrupted(provider: str, delivered: int, cause: BaseException) -> StreamInterruptedError:
    return StreamInterruptedError(
        f"{provider}: the stream failed after {delivered} chunks reached the caller: {cause}",
        provider=provider,
        chunks_delivered=delivered,
        cause=cause,
    )


Sleep = Callable[[float], None]


class StreamAttempt:
    """One streaming attempt: holds chunks back until they are safe to forward, counts what was delivered.

    Role-only chunks are always held until the first chunk with content. With ``buffer`` > 0 the
    first ``buffer`` content chunks are held too, so a failure among them still falls back
    transparently; ``drain()`` releases whatever is held when the stream ends well.
    """

    __slots__ = (
        "answered",
        "buffer",
        "candidate",
        "content_chunks",
        "delivered",
        "finish_reasons",
        "held",
        "metering",
        "received",
        "response_id",
        "response_model",
        "t0",
        "text",
        "ttft_s",
        "usage",
    )

    def __init__(self, candidate: Candidate, t0: float, buffer: int = 0) -> None:
        self.candidate = candidate
        self.t0 = t0
        self.buffer = buffer
        self.held: list[ChatCompletionChunk] = []
        self.delivered = 0
        self.content_chunks = 0
        self.ttft_s: float | None = None
        self.usage: CompletionUsage | None = None
        self.text: list[str] = []
        self.metering = STREAM_METERING.get()
        self.received = 0  # chunks that arrived from upstream: it answered, so the prompt was read
        self.answered = False  # the upstream accepted the request (a success status), chunks or not
        self.response_id: str | None = None
        self.response_model: str | None = None
        self.finish_reasons: list[str] = []

    @property
    def has_content(self) -> bool:
        """Whether content arrived from upstream (delivered or still buffered)."""
        return self.ttft_s is not None

    def offer(self, chunk: ChatCompletionChunk) -> Iterator[ChatCompletionChunk]:
        self.received += 1
        if self.response_id is None and chunk.id:
            self.response_id = chunk.id
        if chunk.model:
            self.response_model = chunk.model
        self.finish_reasons += [str(c.finish_reason) for c in chunk.choices if c.finish_reason]
        if chunk.usage is not None:
            self.usage = chunk.usage
        if self.metering is not None and not self.metering.caller_wants_usage:
            if chunk.usage is not None and not chunk.choices:
                return  # the usage chunk only the gateway asked for
            chunk = without_usage(chunk)
        substantive = is_substantive(chunk)
        if substantive and self.ttft_s is None:
            self.ttft_s = time.perf_counter() - self.t0
        if substantive:
            self.content_chunks += 1
            self.text.append(chunk_text(chunk))
        if not self.delivered and (not substantive or self.content_chunks <= self.buffer):
            self.held.append(chunk)
            return
        yield from self.drain()
        self.delivered += 1
        yield chunk

    def drain(self) -> Iterator[ChatCompletionChunk]:
        while self.held:
            held = self.held.pop(0)
            self.delivered += 1
            yield held
