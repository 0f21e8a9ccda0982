"""The blocking request loop: candidates in plan order, retries inside one, fallback between them.

Streaming contract: chunks that carry nothing but a role are held back until the first chunk with
content; a failure before that point falls back transparently. After it, the iterator raises
``StreamInterruptedError`` having delivered exactly the chunks it received: never a truncated stream
that ends like a success, never a duplicated chunk. Every attempt that ran is reported to the
observer once, with its usage (reported, or counted from what streamed and marked estimated).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

import providers
from gateway import transport
from gateway._sse import SSEDecoder
from gateway.attempts import (
    AttemptRecord,
    Candidate,
    Observer,
    Plan,
    Sleep,
    StreamInfo,
    check_request,
    chunk_text,
    final_error,
    gateway_info,
    interrupted,
    is_substantive,
    may_fall_back,
)
from gateway.errors import APIError, APIStatusError
from gateway.resilience.retry import RetrySettings, error_headers, retry_delay, should_retry
from gateway.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    CompletionUsage,
    CreateEmbeddingResponse,
    EmbeddingRequest,
)
from providers.base import ProviderModule


class ExecutorBase:
    """Bookkeeping both loops share: attempt records, reported once each to the observer."""

    observer: Observer
    retry: RetrySettings

    def _max_retries(self, candidate: Candidate) -> int:
        return candidate.max_retries if candidate.max_retries is not None else self.retry.max_retries

    def _failed(
        self,
        request_id: str,
        attempt: int,
        candidate: Candidate,
        plan: Plan,
        req: ChatRequest | None,
        t0: float,
        exc: APIError,
    ) -> AttemptRecord:
        status = exc.status_code if isinstance(exc, APIStatusError) else None
        return self._record(
            request_id, attempt, candidate, plan, req, t0, type(exc).__name__, status, None, exc
        )

    def _record(
        self,
        request_id: str,
        attempt: int,
        candidate: Candidate,
        plan: Plan,
        req: ChatRequest | None,
        t0: float,
        outcome: str,
        status: int | None,
        usage: CompletionUsage | None,
        error: BaseException | None = None,
        *,
        ttft_s: float | None = None,
        streamed_text: str = "",
        estimated: bool = False,
    ) -> AttemptRecord:
        record = AttemptRecord(
            request_id=request_id,
            attempt=attempt,
            candidate=candidate,
            route=plan.route,
            started=t0,
            duration_s=time.perf_counter() - t0,
            ttft_s=ttft_s,
            outcome=outcome,
            status_code=status if status is not None else (200 if error is None else None),
            usage=usage,
            usage_estimated=estimated,
            streamed_text=streamed_text,
            metadata=dict(req.metadata or {}) if req is not None else {},
            user=req.user if req is not None else None,
            error=error,
        )
        self.observer.attempt_finished(record)
        return record


class Executor(ExecutorBase):
    """Runs requests over one shared ``httpx.Client``."""

    def __init__(
        self, http: httpx.Client, *, observer: Observer, retry: RetrySettings, sleep: Sleep = time.sleep
    ) -> None:
        self.http = http
        self.observer = observer
        self.retry = retry
        self.sleep = sleep

    # --- non-streaming ---------------------------------------------------------------------------

    def complete(
        self, req: ChatRequest, plan: Plan, *, headers: dict[str, str], timeout: Any
    ) -> ChatCompletion:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        records: list[AttemptRecord] = []
        for candidate in plan.candidates:
            module = providers.load(candidate.target.kind)
            for retries in range(self._max_retries(candidate) + 1):
                t0 = time.perf_counter()
                try:
                    reply = self._call_once(module, req, candidate, headers, timeout)
                except APIError as exc:
                    records.append(self._failed(request_id, len(records), candidate, plan, req, t0, exc))
                    if retries < self._max_retries(candidate) and should_retry(exc):
                        self.sleep(retry_delay(retries, error_headers(exc), self.retry))
                        continue
                    break
                record = self._record(
                    request_id, len(records), candidate, plan, req, t0, "ok", None, reply.usage
                )
                records.append(record)
                reply._gateway = gateway_info(plan, record, records, started)
                return reply
            if not may_fall_back(records[-1].error or Exception(), plan):
                break
        raise final_error(records, plan)

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
        return reply

    # --- streaming -------------------------------------------------------------------------------

    def stream(
        self, req: ChatRequest, plan: Plan, *, headers: dict[str, str], timeout: Any, holder: StreamInfo
    ) -> Iterator[ChatCompletionChunk]:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        records: list[AttemptRecord] = []
        for candidate in plan.candidates:
            module = providers.load(candidate.target.kind)
            for retries in range(self._max_retries(candidate) + 1):
                attempt = StreamAttempt(candidate, time.perf_counter())
                try:
                    for chunk in self._stream_once(module, req, candidate, headers, timeout, attempt, holder):
                        yield chunk
                except APIError as exc:
                    record = attempt.finish(self, request_id, len(records), plan, req, exc)
                    records.append(record)
                    if attempt.delivered:
                        raise interrupted(candidate.target.provider, attempt.delivered, exc) from exc
                    if retries < self._max_retries(candidate) and should_retry(exc):
                        self.sleep(retry_delay(retries, error_headers(exc), self.retry))
                        continue
                    break
                except GeneratorExit:
                    records.append(
                        attempt.finish(self, request_id, len(records), plan, req, None, closed=True)
                    )
                    raise
                record = attempt.finish(self, request_id, len(records), plan, req, None)
                records.append(record)
                holder.gateway = gateway_info(plan, record, records, started)
                return
            if not may_fall_back(records[-1].error or Exception(), plan):
                break
        raise final_error(records, plan)

    def _stream_once(
        self,
        module: ProviderModule,
        req: ChatRequest,
        candidate: Candidate,
        headers: dict[str, str],
        timeout: Any,
        attempt: StreamAttempt,
        holder: StreamInfo,
    ) -> Iterator[ChatCompletionChunk]:
        target = candidate.target
        check_request(req, target)
        if target.kind == "local":
            for chunk in module.stream(req, target):  # type: ignore[attr-defined]
                yield from attempt.offer(chunk)
            return
        spec = module.build_request(req, target)
        with transport.open_stream(self.http, spec, extra_headers=headers, timeout=timeout) as response:
            if response.status_code >= 400:
                body = transport.read_error_body(response)
                error = module.map_error(response.status_code, response.headers, body, target)
                error.attach(response.request, response)
                raise error
            holder.http_response = response
            state = module.new_stream(req, target)
            decoder = SSEDecoder()
            for piece in transport.iter_bytes(response):
                for event in decoder.feed(piece):
                    for chunk in module.parse_stream_event(event, state):
                        yield from attempt.offer(chunk)
            for event in decoder.flush():
                for chunk in module.parse_stream_event(event, state):
                    yield from attempt.offer(chunk)
            for chunk in module.end_stream(state):
                yield from attempt.offer(chunk)
        yield from attempt.drain()

    # --- embeddings ------------------------------------------------------------------------------

    def embed(
        self, req: EmbeddingRequest, plan: Plan, *, headers: dict[str, str], timeout: Any
    ) -> CreateEmbeddingResponse:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        records: list[AttemptRecord] = []
        for candidate in plan.candidates:
            module = providers.load(candidate.target.kind)
            for retries in range(self._max_retries(candidate) + 1):
                t0 = time.perf_counter()
                try:
                    spec = module.build_embeddings_request(req, candidate.target)
                    raw = transport.send(self.http, spec, extra_headers=headers, timeout=timeout)
                    if raw.status >= 400:
                        error = module.map_error(raw.status, raw.headers, raw.body, candidate.target)
                        error.attach(raw.http_request, raw.http_response)
                        raise error
                    reply = module.parse_embeddings_response(
                        raw.status, raw.headers, raw.body, candidate.target
                    )
                except APIError as exc:
                    records.append(self._failed(request_id, len(records), candidate, plan, None, t0, exc))
                    if retries < self._max_retries(candidate) and should_retry(exc):
                        self.sleep(retry_delay(retries, error_headers(exc), self.retry))
                        continue
                    break
                usage = CompletionUsage(
                    prompt_tokens=reply.usage.prompt_tokens,
                    completion_tokens=0,
                    total_tokens=reply.usage.total_tokens,
                )
                record = self._record(request_id, len(records), candidate, plan, None, t0, "ok", None, usage)
                records.append(record)
                reply._gateway = gateway_info(plan, record, records, started)
                return reply
            if not may_fall_back(records[-1].error or Exception(), plan):
                break
        raise final_error(records, plan)


class StreamAttempt:
    """One streaming attempt: holds role-only chunks back, counts what reached the caller."""

    def __init__(self, candidate: Candidate, t0: float) -> None:
        self.candidate = candidate
        self.t0 = t0
        self.held: list[ChatCompletionChunk] = []
        self.delivered = 0
        self.ttft_s: float | None = None
        self.usage: CompletionUsage | None = None
        self.text: list[str] = []

    def offer(self, chunk: ChatCompletionChunk) -> Iterator[ChatCompletionChunk]:
        if chunk.usage is not None:
            self.usage = chunk.usage
        if not self.delivered and not is_substantive(chunk):
            self.held.append(chunk)
            return
        if self.ttft_s is None:
            self.ttft_s = time.perf_counter() - self.t0
        self.text.append(chunk_text(chunk))
        for held in self.held:
            self.delivered += 1
            yield held
        self.held.clear()
        self.delivered += 1
        yield chunk

    def drain(self) -> Iterator[ChatCompletionChunk]:
        for held in self.held:
            self.delivered += 1
            yield held
        self.held.clear()

    def finish(
        self,
        executor: ExecutorBase,
        request_id: str,
        attempt: int,
        plan: Plan,
        req: ChatRequest,
        error: APIError | None,
        *,
        closed: bool = False,
    ) -> AttemptRecord:
        status = error.status_code if isinstance(error, APIStatusError) else None
        if error is None:
            outcome = "closed" if closed else "ok"
        elif self.delivered:
            outcome = "partial"
        else:
            outcome = type(error).__name__
        return executor._record(
            request_id,
            attempt,
            self.candidate,
            plan,
            req,
            self.t0,
            outcome,
            status,
            self.usage,
            error,
            ttft_s=self.ttft_s,
            streamed_text="".join(self.text),
            estimated=self.usage is None and bool(self.text),
        )
