"""The blocking request loop: candidates in plan order, retries inside one, fallback between them.

Every decision (may this candidate be tried, retry or move on, what to raise) is made by
``gateway.resilience.run.RequestRun``; this module only does the I/O.

Streaming contract (see ``docs/resilience.md``):

- Chunks that carry nothing but a role, and with ``Plan.buffer_tokens = N`` the first N content
  chunks too, are held back; a failure or a stall (first-token or idle timeout) while nothing has
  reached the caller falls back transparently, to a retry or the next candidate.
- After a chunk reached the caller, a failure raises ``StreamInterruptedError`` having delivered
  exactly the chunks received: never a truncated stream that ends like a success, never a
  duplicated chunk. A missing ``[DONE]`` with unfinished choices, or a malformed event, is such a
  failure (the provider's ``end_stream``/``parse_stream_event`` raise it).
- Every attempt that ran is reported to the observer once: ``ok``, ``partial`` (with the streamed
  text, metered as estimated), ``closed`` (the caller stopped early) or the error's class name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import providers
from gateway.core.attempts import (
    Candidate,
    Observer,
    Plan,
    Sleep,
    StreamAttempt,
    StreamInfo,
    check_request,
    interrupted,
    reply_outcome,
    stream_outcome,
)
from gateway.core.errors import APIConnectionError, APIError, APITimeoutError
from gateway.core.relay import Relayed
from gateway.core.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    CompletionUsage,
    CreateEmbeddingResponse,
    EmbeddingRequest,
    GatewayInfo,
)
from gateway.resilience.breaker import Breakers
from gateway.resilience.hedge import TTFTWindow, hedge_affordable, hedge_delay
from gateway.resilience.hedge_stream import HedgeFailed
from gateway.resilience.hedge_sync import SyncOpener, hedged_stream_sync, hedged_unary
from gateway.resilience.retry import RetrySettings
from gateway.resilience.run import RETRY, STOP, RequestRun, Resilience
from gateway.transports import http as transport
from gateway.transports.sse import SSEDecoder
from providers.base import ProviderModule

__all__ = ["Executor", "ExecutorBase", "StreamAttempt"]


class ExecutorBase:
    """What both loops hold: the observer, default retry settings, breakers and the TTFT window."""

    res: Resilience
    clock: Callable[[], float]

    def _setup(
        self,
        observer: Observer,
        retry: RetrySettings,
        breakers: Breakers | None,
        clock: Callable[[], float],
    ) -> None:
        self.res = Resilience(observer, retry, breakers, TTFTWindow())
        self.clock = clock

    @property
    def observer(self) -> Observer:
        return self.res.observer

    @property
    def retry(self) -> RetrySettings:
        return self.res.retry

    @property
    def breakers(self) -> Breakers | None:
        return self.res.breakers

    def _run(self, plan: Plan, req: ChatRequest | None) -> RequestRun:
        return RequestRun(self.res, plan, req, clock=self.clock)

    def retry_delay(
        self, run: RequestRun, candidate: Candidate, retries: int, error: APIError
    ) -> float | None:
        """After a failed attempt: the wait before retrying ``candidate``, or ``None`` to move to the
        next candidate; raises the request's final error when the run must stop (both loops)."""
        move = run.after_failure(candidate, retries, error)
        if move.action == STOP:
            raise run.error() from None
        return move.delay if move.action == RETRY else None

    def _hedge_partner(self, run: RequestRun, index: int) -> tuple[Candidate, float] | None:
        """The candidate to race the first attempt against, and after how long; ``None`` for no hedge."""
        settings = run.plan.hedge
        if settings is None or self.res.ttft is None:
            return None
        second = next(iter(run.plan.candidates[index + 1 :]), None)
        if second is None or not hedge_affordable(settings, second.estimated_cost_usd):
            return None
        delay = hedge_delay(settings, self.res.ttft, run.plan.candidates[index].name)
        return None if delay is None else (second, delay)


class Executor(ExecutorBase):
    """Runs requests over one shared HTTP client (the SDK's ``httpx2.Client`` or ``httpx.Client``).

    Args:
        http: The client every attempt is sent with (its own retries, if any, are not used).
        observer: Hears of every attempt exactly once (metering, stats, telemetry).
        retry: Retry settings for candidates that carry none.
        sleep: How to wait between retries (inject a recorder in tests; shorten delays through
            ``RetrySettings``).
        breakers: Per-deployment circuit breakers, or ``None`` for none.
        clock: Monotonic seconds, for the total deadline.
    """

    def __init__(
        self,
        http: Any,
        *,
        observer: Observer,
        retry: RetrySettings,
        sleep: Sleep = time.sleep,
        breakers: Breakers | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.sleep = sleep
        self._setup(observer, retry, breakers, clock)

    # --- non-streaming ---------------------------------------------------------------------------

    def complete(
        self, req: ChatRequest, plan: Plan, *, headers: dict[str, str], timeout: Any
    ) -> ChatCompletion:
        def once(candidate: Candidate, attempt_timeout: Any) -> tuple[ChatCompletion, CompletionUsage | None]:
            module = providers.load(candidate.target.kind)
            reply = self._call_once(module, req, candidate, headers, attempt_timeout)
            return reply, reply.usage

        reply, info = self._unary(plan, req, once, timeout)
        reply._gateway = info
        return reply  # type: ignore[no-any-return]

    def _unary(
        self,
        plan: Plan,
        req: ChatRequest | None,
        once: Callable[[Candidate, Any], tuple[Any, Any]],
        timeout: Any,
    ) -> tuple[Any, GatewayInfo]:
        """The one non-streaming loop (chat, embeddings, relayed bodies): candidates, retries, fallback,
        hedging (``gateway/resilience/hedge_sync.py``: the race in threads)."""
        run = self._run(plan, req)
        for index, candidate in enumerate(plan.candidates):
            retries = 0
            while True:
                admitted = run.admit(candidate, first=retries == 0)
                if admitted is None:
                    raise run.error()
                if not admitted:
                    break

                def call(c: Candidate) -> tuple[Any, Any]:
                    return once(c, run.timeout(timeout, stream=False, sync=True))

                partner = (
                    self._hedge_partner(run, index) if plan.hedge is not None and not run.records else None
                )
                try:
                    if partner is not None:
                        winner, t0, result, usage = hedged_unary(run, call, candidate, *partner)
                    else:
                        winner, t0 = candidate, time.perf_counter()
                        try:
                            result, usage = call(candidate)
                        except APIError as exc:
                            run.finish(candidate, t0, exc)
                            raise
                except APIError as exc:
                    delay = self.retry_delay(run, candidate, retries, exc)
                    if delay is None:
                        break
                    self.sleep(delay)
                    retries += 1
                    continue
                record = run.finish(winner, t0, None, reply_outcome(result, usage))
                return result, run.info(record)
        raise run.error()

    def _call_once(
        self,
        module: ProviderModule,
        req: ChatRequest,
        candidate: Candidate,
        headers: dict[str, str],
        timeout: Any,
    ) -> ChatCompletion:
        target = candidate.target
        check_request(req, target)
        if target.kind == "local":
            return module.complete(req, target)  # type: ignore[attr-defined, no-any-return]
        spec = module.build_request(req, target)
        raw = transport.send(self.http, spec, extra_headers=headers, timeout=timeout)
        if raw.status >= 400:
            error = module.map_error(raw.status, raw.headers, raw.body, target)
            error.attach(raw.http_request, raw.http_response)
            raise error
        reply = module.parse_response(raw.status, raw.headers, raw.body, target)
        reply._http_response = raw.http_response
        if target.kind == "openai":
            reply._raw_body = raw.body
        return reply

    # --- streaming -------------------------------------------------------------------------------

    def stream(
        self, req: ChatRequest, plan: Plan, *, headers: dict[str, str], timeout: Any, holder: StreamInfo
    ) -> Iterator[ChatCompletionChunk]:
        run = self._run(plan, req)
        for index, candidate in enumerate(plan.candidates):
            module = providers.load(candidate.target.kind)
            retries = 0
            while True:
                admitted = run.admit(candidate, first=retries == 0)
                if admitted is None:
                    raise run.error()
                if not admitted:
                    break
                hedge = self._hedge_partner(run, index) if not run.records else None
                if hedge is not None:
                    try:
                        yield from hedged_stream_sync(
                            run,
                            candidate,
                            hedge[0],
                            hedge[1],
                            self._opener(req, headers, timeout, run),
                            holder,
                        )
                        return
                    except HedgeFailed as failed:
                        delay = self.retry_delay(run, candidate, retries, failed.error)
                    if delay is None:
                        break
                    self.sleep(delay)
                    retries += 1
                    continue
                attempt = StreamAttempt(candidate, time.perf_counter(), plan.buffer_tokens)
                holder.candidate = candidate
                try:
                    yield from self._stream_once(module, req, headers, timeout, attempt, holder, run)
                except APIError as exc:
                    run.finish(candidate, attempt.t0, exc, stream_outcome(attempt, exc))
                    if attempt.delivered:
                        raise interrupted(candidate.target.provider, attempt.delivered, exc) from exc
                    delay = self.retry_delay(run, candidate, retries, exc)
                    if delay is None:
                        break
                    self.sleep(delay)
                    retries += 1
                    continue
                except GeneratorExit:
                    run.finish(candidate, attempt.t0, None, stream_outcome(attempt, None, closed=True))
                    raise
                record = run.finish(candidate, attempt.t0, None, stream_outcome(attempt, None))
                holder.gateway = run.info(record)
                return
        raise run.error()

    def _opener(
        self, req: ChatRequest, headers: dict[str, str], timeout: Any, run: RequestRun
    ) -> Callable[[Candidate], SyncOpener]:
        def for_candidate(candidate: Candidate) -> SyncOpener:
            module = providers.load(candidate.target.kind)

            def open_stream(attempt: StreamAttempt, info: StreamInfo) -> Iterator[ChatCompletionChunk]:
                return self._stream_once(module, req, headers, timeout, attempt, info, run)

            return open_stream

        return for_candidate

    def _stream_once(
        self,
        module: ProviderModule,
        req: ChatRequest,
        headers: dict[str, str],
        timeout: Any,
        attempt: StreamAttempt,
        holder: StreamInfo,
        run: RequestRun,
    ) -> Iterator[ChatCompletionChunk]:
        target = attempt.candidate.target
        check_request(req, target)
        if target.kind == "local":
            for chunk in module.stream(req, target):  # type: ignore[attr-defined]
                yield from attempt.offer(chunk)
            yield from attempt.drain()
            return
        spec = module.build_request(req, target)
        http_timeout = run.timeout(timeout, stream=True, sync=True)
        with transport.open_stream(self.http, spec, extra_headers=headers, timeout=http_timeout) as response:
            if response.status_code >= 400:
                body = transport.read_error_body(response)
                error = module.map_error(response.status_code, response.headers, body, target)
                error.attach(response.request, response)
                raise error
            holder.http_response = response
            attempt.answered = True  # the upstream took the request: its prompt was read
            state = module.new_stream(req, target)
            decoder = SSEDecoder()
            watch = _Watch.of(run, attempt)
            with _deadline_guard(response, run):
                for piece in transport.iter_bytes(response):
                    if watch is not None:
                        watch.check(attempt)
                    for event in decoder.feed(piece):
                        for chunk in module.parse_stream_event(event, state):
                            yield from attempt.offer(chunk)
            for event in decoder.flush():
                for chunk in module.parse_stream_event(event, state):
                    yield from attempt.offer(chunk)
            for chunk in module.end_stream(state):
                yield from attempt.offer(chunk)
        yield from attempt.drain()

    # --- relayed bodies (a protocol the provider speaks natively) --------------------------------

    def relay(
        self,
        plan: Plan,
        body: dict[str, Any],
        path: str,
        *,
        headers: dict[str, str],
        timeout: Any,
        req: ChatRequest | None,
    ) -> tuple[transport.RawResponse, GatewayInfo]:
        def once(
            candidate: Candidate, attempt_timeout: Any
        ) -> tuple[transport.RawResponse, CompletionUsage | None]:
            target = candidate.target
            module: Any = providers.load(target.kind)
            spec = module.build_relay_request(body, target, path, stream=False)
            raw = transport.send(self.http, spec, extra_headers=headers, timeout=attempt_timeout)
            if raw.status >= 400:
                error = module.map_error(raw.status, raw.headers, raw.body, target)
                error.attach(raw.http_request, raw.http_response)
                raise error
            return raw, module.parse_relay_response(raw.status, raw.headers, raw.body, target)

        return self._unary(plan, req, once, timeout)  # type: ignore[no-any-return]

    def relay_stream(
        self,
        plan: Plan,
        body: dict[str, Any],
        path: str,
        *,
        headers: dict[str, str],
        timeout: Any,
        holder: StreamInfo,
        req: ChatRequest | None,
    ) -> Iterator[bytes]:
        run = self._run(plan, req)
        for candidate in plan.candidates:
            retries = 0
            while True:
                admitted = run.admit(candidate, first=retries == 0)
                if admitted is None:
                    raise run.error()
                if not admitted:
                    break
                relayed = Relayed(time.perf_counter())
                holder.candidate = candidate
                try:
                    attempt_timeout = run.timeout(timeout, stream=True, sync=True)
                    yield from self._relay_once(
                        candidate, body, path, headers, attempt_timeout, holder, relayed, run
                    )
                except APIError as exc:
                    run.finish(candidate, relayed.t0, exc, relayed.outcome(exc))
                    if relayed.delivered:
                        raise interrupted(candidate.target.provider, relayed.delivered, exc) from exc
                    delay = self.retry_delay(run, candidate, retries, exc)
                    if delay is None:
                        break
                    self.sleep(delay)
                    retries += 1
                    continue
                except GeneratorExit:
                    run.finish(candidate, relayed.t0, None, relayed.outcome(None, closed=True))
                    raise
                record = run.finish(candidate, relayed.t0, None, relayed.outcome(None))
                holder.gateway = run.info(record)
                return
        raise run.error()

    def _relay_once(
        self,
        candidate: Candidate,
        body: dict[str, Any],
        path: str,
        headers: dict[str, str],
        timeout: Any,
        holder: StreamInfo,
        relayed: Relayed,
        run: RequestRun | None = None,
    ) -> Iterator[bytes]:
        target = candidate.target
        module: Any = providers.load(target.kind)
        spec = module.build_relay_request(body, target, path, stream=True)
        with transport.open_stream(self.http, spec, extra_headers=headers, timeout=timeout) as response:
            if response.status_code >= 400:
                error_body = transport.read_error_body(response)
                error = module.map_error(response.status_code, response.headers, error_body, target)
                error.attach(response.request, response)
                raise error
            holder.http_response = response
            decoder = SSEDecoder()
            with _deadline_guard(response, run):
                for piece in transport.iter_bytes(response):
                    for event in decoder.feed(piece):
                        yield from relayed.take(event, module, target)
            for event in decoder.flush():
                yield from relayed.take(event, module, target)
        yield from relayed.end(target)

    # --- embeddings ------------------------------------------------------------------------------

    def embed(
        self, req: EmbeddingRequest, plan: Plan, *, headers: dict[str, str], timeout: Any
    ) -> CreateEmbeddingResponse:
        def once(
            candidate: Candidate, attempt_timeout: Any
        ) -> tuple[CreateEmbeddingResponse, CompletionUsage]:
            module = providers.load(candidate.target.kind)
            reply = self._embed_once(module, req, candidate, headers, attempt_timeout)
            return reply, embedding_usage(reply)

        reply, info = self._unary(plan, None, once, timeout)
        reply._gateway = info
        return reply  # type: ignore[no-any-return]

    def _embed_once(
        self,
        module: ProviderModule,
        req: EmbeddingRequest,
        candidate: Candidate,
        headers: dict[str, str],
        timeout: Any,
    ) -> CreateEmbeddingResponse:
        spec = module.build_embeddings_request(req, candidate.target)
        raw = transport.send(self.http, spec, extra_headers=headers, timeout=timeout)
        if raw.status >= 400:
            error = module.map_error(raw.status, raw.headers, raw.body, candidate.target)
            error.attach(raw.http_request, raw.http_response)
            raise error
        reply = module.parse_embeddings_response(raw.status, raw.headers, raw.body, candidate.target)
        if candidate.target.kind == "openai":
            reply._raw_body = raw.body
        return reply


def embedding_usage(reply: CreateEmbeddingResponse) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=reply.usage.prompt_tokens, completion_tokens=0, total_tokens=reply.usage.total_tokens
    )


@contextmanager
def _deadline_guard(response: Any, run: RequestRun | None) -> Iterator[None]:
    """Shut the socket at the total deadline (a blocking read cannot be shortened once started),
    and report the read that this ends as the timeout it is."""
    deadline = run.deadline if run is not None else None
    if deadline is None or deadline.expires_at is None:
        yield
        return
    handle = transport.WATCHDOG.arm(response, deadline.expires_at, deadline.clock)
    try:
        yield
    except APIConnectionError as exc:
        if isinstance(exc, APITimeoutError) or not deadline.expired():
            raise
        raise APITimeoutError(message="Request timed out: the total deadline passed mid-stream.") from exc
    finally:
        transport.WATCHDOG.disarm(handle)


class _Watch:
    """Between two pieces of a blocking stream: the total deadline and the first-token timeout."""

    __slots__ = ("clock", "deadline_at", "first_by")

    def __init__(self, run: RequestRun, attempt: StreamAttempt) -> None:
        timeouts = run.plan.timeouts
        self.clock = run.deadline.clock
        self.deadline_at = run.deadline.expires_at
        first = timeouts.first_token_s if timeouts is not None else None
        spent = time.perf_counter() - attempt.t0  # the first-token timeout counts from the attempt's start
        self.first_by = None if first is None else self.clock() + first - spent

    @classmethod
    def of(cls, run: RequestRun, attempt: StreamAttempt) -> _Watch | None:
        """``None`` when there is nothing to watch (no route timeouts): the fast path."""
        return None if run.plan.timeouts is None else cls(run, attempt)

    def check(self, attempt: StreamAttempt) -> None:
        now = self.clock()
        if self.deadline_at is not None and now >= self.deadline_at:
            raise APITimeoutError(message="Request timed out: the total deadline passed mid-stream.")
        if self.first_by is None:
            return
        if attempt.ttft_s is not None:
            self.first_by = None
        elif now > self.first_by:
            raise APITimeoutError(message="Request timed out: no first token in time.")
