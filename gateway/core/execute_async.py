"""The asyncio request loop (the twin of ``execute.py``): candidates in plan order, retries inside one, fallback between them.

The streaming contract is ``execute.py``'s. Beyond the blocking loop, this one applies each timeout
exactly (``asyncio.timeout`` around every attempt and every wait for a stream's next piece) and
can hedge: with ``Plan.hedge`` the first attempt races the next candidate once it is slow and the
first answer wins. The loser of a non-streamed pair is left to finish in the background (the
upstream bills it anyway) and reported as ``cancelled`` with the usage it reported; the loser of a
streamed pair is cancelled (its connection closed), and metered as far as it got.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any, cast

import providers
from gateway.core.attempts import (
    Candidate,
    Observer,
    Outcome,
    Plan,
    StreamAttempt,
    StreamInfo,
    check_request,
    interrupted,
    reply_outcome,
    stream_outcome,
)
from gateway.core.errors import APIError, APITimeoutError
from gateway.core.execute import ExecutorBase, embedding_usage
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
from gateway.resilience.deadline import chunk_wait
from gateway.resilience.hedge_stream import HedgeFailed, Opener, hedged_stream
from gateway.resilience.retry import RetrySettings
from gateway.resilience.run import RequestRun
from gateway.transports import http as transport
from gateway.transports.sse import SSEDecoder
from providers.base import ProviderModule

__all__ = ["AsyncExecutor"]

Served = tuple[Candidate, float, Any, Any]  # (winner, started, result, usage)
Once = Callable[[Candidate, Any], Awaitable[tuple[Any, Any]]]


class AsyncExecutor(ExecutorBase):
    """Runs requests over one shared async HTTP client; arguments as ``Executor``'s."""

    def __init__(
        self,
        http: Any,
        *,
        observer: Observer,
        retry: RetrySettings,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        breakers: Breakers | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.http = http
        self.sleep = sleep
        self._setup(observer, retry, breakers, clock)

    # --- non-streaming ---------------------------------------------------------------------------

    async def complete(
        self, req: ChatRequest, plan: Plan, *, headers: dict[str, str], timeout: Any
    ) -> ChatCompletion:
        async def once(
            candidate: Candidate, attempt_timeout: Any
        ) -> tuple[ChatCompletion, CompletionUsage | None]:
            reply = await self._call_once(req, candidate, headers, attempt_timeout)
            return reply, reply.usage

        reply, info = await self._unary(plan, req, once, timeout)
        reply._gateway = info
        return reply  # type: ignore[no-any-return]

    async def _unary(
        self, plan: Plan, req: ChatRequest | None, once: Once, timeout: Any
    ) -> tuple[Any, GatewayInfo]:
        """The one non-streaming loop (chat, embeddings, relayed bodies): candidates, retries, fallback, hedging."""
        run = self._run(plan, req)
        for index, candidate in enumerate(plan.candidates):
            retries = 0
            while True:
                admitted = await run.aadmit(candidate, first=retries == 0)
                if admitted is None:
                    raise run.error()
                if not admitted:
                    break
                try:
                    if plan.hedge is not None and not run.records:
                        served = await self._hedged(run, once, candidate, index, timeout)
                    else:
                        served = await self._attempt(run, once, candidate, timeout)
                except APIError as exc:
                    delay = self.retry_delay(run, candidate, retries, exc)
                    if delay is None:
                        break
                    await self.sleep(delay)
                    retries += 1
                    continue
                winner, t0, result, usage = served
                record = run.finish(winner, t0, None, reply_outcome(result, usage))
                return result, run.info(record)
        raise run.error()

    async def _attempt(
        self, run: RequestRun, once: Once, candidate: Candidate, timeout: Any, contest: _Contest | None = None
    ) -> Served:
        """One attempt; a failure or a cancellation is recorded here, a success by the caller
        (a hedge loser's success here too: nobody else waits for it)."""
        t0 = time.perf_counter()
        try:
            async with asyncio.timeout(run.deadline.remaining()):
                result, usage = await once(candidate, run.timeout(timeout, stream=False, sync=False))
        except TimeoutError as exc:
            error = APITimeoutError(message="Request timed out: the total deadline passed.")
            _failed(run, candidate, t0, error, contest)
            raise error from exc
        except APIError as exc:
            _failed(run, candidate, t0, exc, contest)
            raise
        except asyncio.CancelledError:
            run.finish(candidate, t0, None, Outcome(outcome="cancelled"))
            raise
        except Exception:  # noqa: BLE001 - recorded and re-raised: a lost hedge's client may be closed under it
            if contest is None or not contest.lost:
                raise
            run.finish(candidate, t0, None, Outcome(outcome="cancelled"))
            raise
        if contest is not None and contest.lost:
            run.finish(candidate, t0, None, reply_outcome(result, usage, "cancelled"))
        return candidate, t0, result, usage

    async def _hedged(
        self, run: RequestRun, once: Once, candidate: Candidate, index: int, timeout: Any
    ) -> Served:
        """Race ``candidate`` against the next one once it is slow; the first answer wins."""
        partner = self._hedge_partner(run, index)
        if partner is None:
            return await self._attempt(run, once, candidate, timeout)
        second, delay = partner
        contests = (_Contest(), _Contest())
        primary = asyncio.create_task(self._attempt(run, once, candidate, timeout, contests[0]))
        try:
            done, _ = await asyncio.wait({primary}, timeout=delay)
        except asyncio.CancelledError:
            await _cancel(primary)
            raise
        if done or not await run.aadmit(second, first=True):
            return await primary
        hedge = asyncio.create_task(self._attempt(run, once, second, timeout, contests[1]))
        return await _first_answer(primary, hedge, contests)

    async def _call_once(
        self, req: ChatRequest, candidate: Candidate, headers: dict[str, str], timeout: Any
    ) -> ChatCompletion:
        target = candidate.target
        module = providers.load(target.kind)
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
        if target.kind == "openai":
            reply._raw_body = raw.body
        return reply

    # --- streaming -------------------------------------------------------------------------------

    async def stream(
        self, req: ChatRequest, plan: Plan, *, headers: dict[str, str], timeout: Any, holder: StreamInfo
    ) -> AsyncIterator[ChatCompletionChunk]:
        run = self._run(plan, req)
        for index, candidate in enumerate(plan.candidates):
            retries = 0
            while True:
                admitted = await run.aadmit(candidate, first=retries == 0)
                if admitted is None:
                    raise run.error()
                if not admitted:
                    break
                hedge = self._hedge_partner(run, index) if not run.records else None
                try:
                    if hedge is not None:
                        chunks = hedged_stream(
                            run,
                            candidate,
                            hedge[0],
                            hedge[1],
                            self._opener(req, headers, timeout, run),
                            holder,
                        )
                    else:
                        chunks = self._one_stream(run, req, candidate, headers, timeout, holder)
                    async with aclosing(chunks) as stream:
                        async for chunk in stream:
                            yield chunk
                    return
                except HedgeFailed as failed:
                    delay = self.retry_delay(run, candidate, retries, failed.error)
                if delay is None:
                    break
                await self.sleep(delay)
                retries += 1
                continue
        raise run.error()

    async def _one_stream(
        self,
        run: RequestRun,
        req: ChatRequest,
        candidate: Candidate,
        headers: dict[str, str],
        timeout: Any,
        holder: StreamInfo,
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        """One attempt, recorded here; a failure before any chunk is ``HedgeFailed`` for the loop."""
        module = providers.load(candidate.target.kind)
        attempt = StreamAttempt(candidate, time.perf_counter(), run.plan.buffer_tokens)
        holder.candidate = candidate
        try:
            async with aclosing(
                self._stream_once(module, req, headers, timeout, attempt, holder, run)
            ) as chunks:
                async for chunk in chunks:
                    yield chunk
        except APIError as exc:
            run.finish(candidate, attempt.t0, exc, stream_outcome(attempt, exc))
            if attempt.delivered:
                raise interrupted(candidate.target.provider, attempt.delivered, exc) from exc
            raise HedgeFailed(exc) from exc
        except (GeneratorExit, asyncio.CancelledError):
            run.finish(candidate, attempt.t0, None, stream_outcome(attempt, None, closed=True))
            raise
        record = run.finish(candidate, attempt.t0, None, stream_outcome(attempt, None))
        holder.gateway = run.info(record)

    def _opener(
        self, req: ChatRequest, headers: dict[str, str], timeout: Any, run: RequestRun
    ) -> Callable[[Candidate], Opener]:
        def for_candidate(candidate: Candidate) -> Opener:
            module = providers.load(candidate.target.kind)

            def open_stream(
                attempt: StreamAttempt, info: StreamInfo
            ) -> AsyncGenerator[ChatCompletionChunk, None]:
                return self._stream_once(module, req, headers, timeout, attempt, info, run)

            return open_stream

        return for_candidate

    async def _stream_once(
        self,
        module: ProviderModule,
        req: ChatRequest,
        headers: dict[str, str],
        timeout: Any,
        attempt: StreamAttempt,
        holder: StreamInfo,
        run: RequestRun,
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        target = attempt.candidate.target
        check_request(req, target)
        if target.kind == "local":
            async for chunk in module.astream(req, target):  # type: ignore[attr-defined]
                for out in attempt.offer(chunk):
                    yield out
            for out in attempt.drain():
                yield out
            return
        spec = module.build_request(req, target)
        http_timeout = run.timeout(timeout, stream=True, sync=False)
        try:
            async with asyncio.timeout(_first_wait(run, attempt)):
                opened = transport.open_stream_async(
                    self.http, spec, extra_headers=headers, timeout=http_timeout
                )
                response = await opened.__aenter__()
        except TimeoutError as exc:
            raise _timed_out(run, attempt) from exc
        try:
            if response.status_code >= 400:
                body = await transport.aread_error_body(response)
                error = module.map_error(response.status_code, response.headers, body, target)
                error.attach(response.request, response)
                raise error
            holder.http_response = response
            attempt.answered = True  # the upstream took the request: its prompt was read
            async with aclosing(_chunks(module, req, response, run, attempt)) as chunks:
                async for out in chunks:
                    yield out
        finally:
            await opened.__aexit__(None, None, None)
        for out in attempt.drain():
            yield out

    # --- relayed bodies (a protocol the provider speaks natively) --------------------------------

    async def relay(
        self,
        plan: Plan,
        body: dict[str, Any],
        path: str,
        *,
        headers: dict[str, str],
        timeout: Any,
        req: ChatRequest | None,
    ) -> tuple[transport.RawResponse, GatewayInfo]:
        async def once(
            candidate: Candidate, attempt_timeout: Any
        ) -> tuple[transport.RawResponse, CompletionUsage | None]:
            target = candidate.target
            module: Any = providers.load(target.kind)
            spec = module.build_relay_request(body, target, path, stream=False)
            raw = await transport.send_async(self.http, spec, extra_headers=headers, timeout=attempt_timeout)
            if raw.status >= 400:
                error = module.map_error(raw.status, raw.headers, raw.body, target)
                error.attach(raw.http_request, raw.http_response)
                raise error
            return raw, module.parse_relay_response(raw.status, raw.headers, raw.body, target)

        return await self._unary(plan, req, once, timeout)  # type: ignore[no-any-return]

    async def relay_stream(
        self,
        plan: Plan,
        body: dict[str, Any],
        path: str,
        *,
        headers: dict[str, str],
        timeout: Any,
        holder: StreamInfo,
        req: ChatRequest | None,
    ) -> AsyncIterator[bytes]:
        run = self._run(plan, req)
        for candidate in plan.candidates:
            retries = 0
            while True:
                admitted = await run.aadmit(candidate, first=retries == 0)
                if admitted is None:
                    raise run.error()
                if not admitted:
                    break
                relayed = Relayed(time.perf_counter())
                holder.candidate = candidate
                try:
                    attempt_timeout = run.timeout(timeout, stream=True, sync=False)
                    async with aclosing(
                        self._relay_once(candidate, body, path, headers, attempt_timeout, holder, relayed)  # type: ignore[type-var]
                    ) as pieces:
                        async for piece in pieces:
                            yield piece
                except APIError as exc:
                    run.finish(candidate, relayed.t0, exc, relayed.outcome(exc))
                    if relayed.delivered:
                        raise interrupted(candidate.target.provider, relayed.delivered, exc) from exc
                    delay = self.retry_delay(run, candidate, retries, exc)
                    if delay is None:
                        break
                    await self.sleep(delay)
                    retries += 1
                    continue
                except (GeneratorExit, asyncio.CancelledError):
                    run.finish(candidate, relayed.t0, None, relayed.outcome(None, closed=True))
                    raise
                record = run.finish(candidate, relayed.t0, None, relayed.outcome(None))
                holder.gateway = run.info(record)
                return
        raise run.error()

    async def _relay_once(
        self,
        candidate: Candidate,
        body: dict[str, Any],
        path: str,
        headers: dict[str, str],
        timeout: Any,
        holder: StreamInfo,
        relayed: Relayed,
    ) -> AsyncIterator[bytes]:
        target = candidate.target
        module: Any = providers.load(target.kind)
        spec = module.build_relay_request(body, target, path, stream=True)
        async with transport.open_stream_async(
            self.http, spec, extra_headers=headers, timeout=timeout
        ) as response:
            if response.status_code >= 400:
                error_body = await transport.aread_error_body(response)
                error = module.map_error(response.status_code, response.headers, error_body, target)
                error.attach(response.request, response)
                raise error
            holder.http_response = response
            decoder = SSEDecoder()
            async for piece in transport.aiter_bytes(response):
                for event in decoder.feed(piece):
                    for out in relayed.take(event, module, target):
                        yield out
            for event in decoder.flush():
                for out in relayed.take(event, module, target):
                    yield out
        for out in relayed.end(target):
            yield out

    # --- embeddings ------------------------------------------------------------------------------

    async def embed(
        self, req: EmbeddingRequest, plan: Plan, *, headers: dict[str, str], timeout: Any
    ) -> CreateEmbeddingResponse:
        async def once(
            candidate: Candidate, attempt_timeout: Any
        ) -> tuple[CreateEmbeddingResponse, CompletionUsage]:
            module = providers.load(candidate.target.kind)
            reply = await self._embed_once(module, req, candidate, headers, attempt_timeout)
            return reply, embedding_usage(reply)

        reply, info = await self._unary(plan, None, once, timeout)
        reply._gateway = info
        return reply  # type: ignore[no-any-return]

    async def _embed_once(
        self,
        module: ProviderModule,
        req: EmbeddingRequest,
        candidate: Candidate,
        headers: dict[str, str],
        timeout: Any,
    ) -> CreateEmbeddingResponse:
        spec = module.build_embeddings_request(req, candidate.target)
        raw = await transport.send_async(self.http, spec, extra_headers=headers, timeout=timeout)
        if raw.status >= 400:
            error = module.map_error(raw.status, raw.headers, raw.body, candidate.target)
            error.attach(raw.http_request, raw.http_response)
            raise error
        reply = module.parse_embeddings_response(raw.status, raw.headers, raw.body, candidate.target)
        if candidate.target.kind == "openai":
            reply._raw_body = raw.body
        return reply


async def _chunks(
    module: ProviderModule,
    req: ChatRequest,
    response: Any,
    run: RequestRun,
    attempt: StreamAttempt,
) -> AsyncGenerator[ChatCompletionChunk, None]:
    """Parse a stream's body into chunks, offered to the attempt (which holds back what it must)."""
    state = module.new_stream(req, attempt.candidate.target)
    decoder = SSEDecoder()
    async with aclosing(_pieces(response, run, attempt)) as pieces:
        async for piece in pieces:
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


async def _pieces(response: Any, run: RequestRun, attempt: StreamAttempt) -> AsyncGenerator[bytes, None]:
    """The body's pieces, each awaited no longer than the first-token, idle or total timeout allows."""
    async with aclosing(cast(AsyncGenerator[bytes, None], transport.aiter_bytes(response))) as source:
        iterator = source.__aiter__()
        while True:
            try:
                async with asyncio.timeout(_next_wait(run, attempt)):
                    piece = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError as exc:
                raise _timed_out(run, attempt) from exc
            yield piece


def _first_wait(run: RequestRun, attempt: StreamAttempt) -> float | None:
    return _next_wait(run, attempt)


def _next_wait(run: RequestRun, attempt: StreamAttempt) -> float | None:
    return chunk_wait(
        run.plan.timeouts,
        run.deadline,
        has_content=attempt.has_content,
        started=attempt.t0,
        now=time.perf_counter(),
    )


def _timed_out(run: RequestRun, attempt: StreamAttempt) -> APITimeoutError:
    if run.deadline.expired():
        return APITimeoutError(message="Request timed out: the total deadline passed.")
    if attempt.has_content:
        return APITimeoutError(message="Request timed out: the stream went idle.")
    return APITimeoutError(message="Request timed out: no first token in time.")


class _Contest:
    """One side of a hedged pair; ``lost`` once the other side's answer won."""

    __slots__ = ("lost",)

    def __init__(self) -> None:
        self.lost = False


# Hedge losers still running: the upstream bills a non-streamed answer whether or not anyone reads
# it, so the loser is left to finish (within its timeouts) and metered with the usage it reports.
_LOSERS: set[asyncio.Task[Served]] = set()


def _failed(
    run: RequestRun, candidate: Candidate, t0: float, error: APIError, contest: _Contest | None
) -> None:
    """A lost hedge's failure is ``cancelled`` (the client may have closed under it): no breaker hears it."""
    if contest is not None and contest.lost:
        run.finish(candidate, t0, None, Outcome(outcome="cancelled"))
    else:
        run.finish(candidate, t0, error)


def _let_finish(task: asyncio.Task[Served], contest: _Contest) -> None:
    contest.lost = True
    _LOSERS.add(task)
    task.add_done_callback(_loser_done)


def _loser_done(task: asyncio.Task[Served]) -> None:
    _LOSERS.discard(task)
    if not task.cancelled():
        task.exception()  # recorded by the attempt itself; retrieved so asyncio does not warn


async def _first_answer(
    primary: asyncio.Task[Served], hedge: asyncio.Task[Served], contests: tuple[_Contest, _Contest]
) -> Served:
    """The first successful of two attempts; the other finishes unread in the background and is
    recorded as ``cancelled`` with its usage. Both failing raises the primary's error."""
    pending = {primary, hedge}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if not task.cancelled() and task.exception() is None:
                    for other in pending:
                        _let_finish(other, contests[0] if other is primary else contests[1])
                    return task.result()
    except asyncio.CancelledError:
        for task in (primary, hedge):
            await _cancel(task)
        raise
    return primary.result()  # raises the primary's error


async def _cancel(task: asyncio.Task[Any]) -> None:
    if task.done():
        return
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, APIError):
        return
