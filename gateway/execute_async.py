"""The asyncio request loop (the twin of ``execute.py``, line for line): candidates in plan order, retries inside one, fallback between them.

Streaming contract: chunks that carry nothing but a role are held back until the first chunk with
content; a failure before that point falls back transparently. After it, the iterator raises
``StreamInterruptedError`` having delivered exactly the chunks it received: never a truncated stream
that ends like a success, never a duplicated chunk. Every attempt that ran is reported to the
observer once, with its usage (reported, or counted from what streamed and marked estimated).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
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
    StreamInfo,
    check_request,
    final_error,
    gateway_info,
    interrupted,
    may_fall_back,
)
from gateway.errors import APIError
from gateway.execute import ExecutorBase, StreamAttempt
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


class AsyncExecutor(ExecutorBase):
    """Runs requests over one shared ``httpx.AsyncClient``."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        observer: Observer,
        retry: RetrySettings,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.http = http
        self.observer = observer
        self.retry = retry
        self.sleep = sleep

    # --- non-streaming ---------------------------------------------------------------------------

    async def complete(
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
                    reply = await self._call_once(module, req, candidate, headers, timeout)
                except APIError as exc:
                    records.append(self._failed(request_id, len(records), candidate, plan, req, t0, exc))
                    if retries < self._max_retries(candidate) and should_retry(exc):
                        await self.sleep(retry_delay(retries, error_headers(exc), self.retry))
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

    async def _call_once(
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
            return await module.acomplete(req, target)  # type: ignore[attr-defined, no-any-return]
        spec = module.build_request(req, target)
        raw = await transport.send_async(self.http, spec, extra_headers=headers, timeout=timeout)
        if raw.status >= 400:
            error = module.map_error(raw.status, raw.headers, raw.body, target)
            error.attach(raw.http_request, raw.http_response)
            raise error
        reply = module.parse_response(raw.status, raw.headers, raw.body, target)
        reply._http_response = raw.http_response
        return reply

    # --- streaming -------------------------------------------------------------------------------

    async def stream(
        self, req: ChatRequest, plan: Plan, *, headers: dict[str, str], timeout: Any, holder: StreamInfo
    ) -> AsyncIterator[ChatCompletionChunk]:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        records: list[AttemptRecord] = []
        for candidate in plan.candidates:
            module = providers.load(candidate.target.kind)
            for retries in range(self._max_retries(candidate) + 1):
                attempt = StreamAttempt(candidate, time.perf_counter())
                try:
                    async for chunk in self._stream_once(
                        module, req, candidate, headers, timeout, attempt, holder
                    ):
                        yield chunk
                except APIError as exc:
                    record = attempt.finish(self, request_id, len(records), plan, req, exc)
                    records.append(record)
                    if attempt.delivered:
                        raise interrupted(candidate.target.provider, attempt.delivered, exc) from exc
                    if retries < self._max_retries(candidate) and should_retry(exc):
                        await self.sleep(retry_delay(retries, error_headers(exc), self.retry))
                        continue
                    break
                except (GeneratorExit, asyncio.CancelledError):
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

    async def _stream_once(
        self,
        module: ProviderModule,
        req: ChatRequest,
        candidate: Candidate,
        headers: dict[str, str],
        timeout: Any,
        attempt: StreamAttempt,
        holder: StreamInfo,
    ) -> AsyncIterator[ChatCompletionChunk]:
        target = candidate.target
        check_request(req, target)
        if target.kind == "local":
            async for chunk in module.astream(req, target):  # type: ignore[attr-defined]
                for out in attempt.offer(chunk):
                    yield out
            return
        spec = module.build_request(req, target)
        async with transport.open_stream_async(
            self.http, spec, extra_headers=headers, timeout=timeout
        ) as response:
            if response.status_code >= 400:
                body = await transport.aread_error_body(response)
                error = module.map_error(response.status_code, response.headers, body, target)
                error.attach(response.request, response)
                raise error
            holder.http_response = response
            state = module.new_stream(req, target)
            decoder = SSEDecoder()
            async for piece in transport.aiter_bytes(response):
                for event in decoder.feed(piece):
                    for chunk in module.parse_stream_event(event, state):
                        for out in attempt.offer(chunk):
                            yield out
            for event in decoder.flush():
                for chunk in module.parse_stream_event(event, state):
                    for out in attempt.offer(chunk):
                        yield out
            for chunk in module.end_stream(state):
                for out in attempt.offer(chunk):
                    yield out
        for out in attempt.drain():
            yield out

    # --- embeddings ------------------------------------------------------------------------------

    async def embed(
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
                    raw = await transport.send_async(self.http, spec, extra_headers=headers, timeout=timeout)
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
                        await self.sleep(retry_delay(retries, error_headers(exc), self.retry))
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
