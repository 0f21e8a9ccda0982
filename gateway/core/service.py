"""The request core: OpenAI wire in, OpenAI wire out; plan -> admit -> attempt -> settle.

```
WireRequest --ingress dialect--> internal request
   plan     Planner.plan (the router for ``route:NAME``; the client's own endpoint for a bare name)
   admit    the policy's budgets and rate limits (Guard.admit) before any upstream call
   attempt  the executor's loop (retries, fallback, hedging, deadlines, the streaming contract)
   settle   budgets settled with what every attempt consumed; the observer metered each attempt
internal reply --dialect--> WireResponse (JSON, or SSE as it streams), x-switchyard-* headers
```

``Core`` (blocking) and ``AsyncCore`` share every decision through ``CoreBase``: how a request is
read and planned, which headers go upstream, how replies and errors are written. They differ only
in how they wait. The async core never blocks its loop on the guard (state backends are called in
a worker thread).
"""

from __future__ import annotations

import contextvars
import itertools
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.core import info as info_registry
from gateway.core.attempts import STREAM_METERING, AttemptRecord, Plan, StreamInfo, StreamMetering
from gateway.core.errors import APIError, AuthenticationError
from gateway.core.plan import Planner, estimate_prompt_tokens
from gateway.core.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    CreateEmbeddingResponse,
    EmbeddingRequest,
    GatewayInfo,
)
from gateway.core.wire import (
    SSE,
    WireRequest,
    WireResponse,
    error_response,
    json_response,
    routing_headers,
    sse_error,
)
from gateway.ingress import chat as chat_dialect
from gateway.targets import ClientConfig
from gateway.transports.http import check_headers

__all__ = ["AsyncCore", "Core", "CoreBase", "NO_KEY", "routed_path"]

# The key the SDK facades send when the application gave none (OPENAI_API_KEY unset): another
# provider or a policy may still serve the request; the client's own endpoint refuses it clearly.
NO_KEY = "sk-switchyard-no-key"

ROUTED = ("chat/completions", "responses", "embeddings", "models")

# Headers the openai SDK sets itself: they go to the client's own endpoint, never to other providers.
_SDK_HEADERS = frozenset(
    {
        "authorization",
        "api-key",
        "openai-organization",
        "openai-project",
        "user-agent",
        "accept",
        "accept-encoding",
        "content-type",
        "content-length",
        "host",
        "connection",
        "transfer-encoding",
        "idempotency-key",
        "openai-version",
    }
)
_HOP_BY_HOP = frozenset({"host", "content-length", "connection", "transfer-encoding", "accept-encoding"})

_ids = itertools.count()
_PREFIX = os.urandom(4).hex()


def routed_path(path: str) -> str | None:
    """The routed endpoint ``path`` ends with (``chat/completions``, ``models/<id>``, …), or ``None``."""
    trimmed = path.rstrip("/")
    for name in ROUTED:
        if trimmed.endswith("/" + name):
            return name
    head, _, last = trimmed.rpartition("/")
    if head.endswith("/models") and last:
        return f"models/{last}"
    return None


def new_request_id() -> str:
    return f"sy-{_PREFIX}-{next(_ids):x}"


@dataclass(slots=True)
class Prepared:
    """A chat request read, planned and ready to attempt."""

    request_id: str
    req: ChatRequest
    plan: Plan
    headers: dict[str, str]
    timeout: Any
    subject_key: str | None
    held: Any = None  # (in-flight counter, candidate): the plan's first candidate, counted from planning
    shadowed: bool = False  # a shadow copy was sent: its answer is captured beside this one

    def release(self) -> None:
        """Hand the in-flight count to the first attempt (or drop it: the request ended before one)."""
        if self.held is not None:
            counter, candidate = self.held
            self.held = None
            counter.release(candidate)


class CoreBase:
    """What both cores share: reading, planning, header forwarding, replies and errors.

    Args:
        planner: Plans requests (the policy's routes, the built-in hosts, the client's endpoint).
        runtime: The policy's runtime (guard, meter, prices), or ``None`` without a policy.
    """

    def __init__(self, planner: Planner, runtime: Any = None) -> None:
        self.planner = planner
        self.runtime = runtime
        self.guard = runtime.guard if runtime is not None else None
        self.shadows: Any = None  # gateway.core.shadow.Shadows, made by the first routed request

    # --- reading and planning --------------------------------------------------------------------

    def client_config(self, w: WireRequest) -> ClientConfig:
        """The caller's own endpoint, as the request itself names it (URL, key, org headers)."""
        headers = {k: v for k, v in w.headers.items() if k not in _HOP_BY_HOP}
        if headers.get("authorization") == f"Bearer {NO_KEY}":
            del headers["authorization"]
        return ClientConfig(
            api_key=None, base_url=w.base_url, default_headers=headers, default_query=dict(w.query)
        )

    def forwarded_headers(self, w: WireRequest) -> dict[str, str]:
        """The caller's own headers (``default_headers``, ``extra_headers``), for every provider."""
        return {
            k: v for k, v in w.headers.items() if k not in _SDK_HEADERS and not k.startswith("x-stainless")
        }

    def prepare_chat(self, w: WireRequest, request_id: str) -> Prepared:
        req = chat_dialect.chat_request(chat_dialect.json_object(w.body))
        client = self.client_config(w)
        plan = self.planner.plan(req.model, req, client)
        _require_client_key(plan, w)
        prepared = Prepared(request_id, req, plan, self.forwarded_headers(w), w.timeout, _bearer(w))
        self.hold(prepared)
        return prepared

    def hold(self, p: Prepared) -> None:
        """Count a routed request in flight on its first candidate from the moment it is planned, so
        that requests planned meanwhile (while budgets are checked) see it (``balance: least_busy``).
        ``Prepared.release`` hands the count over just before the first attempt counts itself."""
        counter = self.runtime.observer if self.runtime is not None else None
        if p.plan.route is None or len(p.plan.candidates) < 2 or not hasattr(counter, "release"):
            return
        first = p.plan.candidates[0]
        counter.attempt_started(first)  # type: ignore[union-attr]
        p.held = (counter, first)

    def shadow(self, p: Prepared) -> None:
        """An admitted routed request: maybe a copy to the route's ``shadow`` model, in the background."""
        if self.runtime is None or p.plan.route is None:
            return
        if self.shadows is None:
            from gateway.core.shadow import Shadows

            self.shadows = Shadows()
        p.shadowed = self.shadows.maybe_copy(self, p)

    def prepare_embeddings(self, w: WireRequest) -> tuple[EmbeddingRequest, Plan]:
        req = chat_dialect.embedding_request(chat_dialect.json_object(w.body))
        plan = self.planner.plan(req.model, None, self.client_config(w))
        _require_client_key(plan, w)
        return req, plan

    def admit(self, p: Prepared) -> Any:
        """Reserve the policy's budgets and charge its rate limits (blocking); ``None`` without any."""
        if self.guard is None:
            return None
        admission, p.plan = self.guard.admit(p.req, p.plan, *self.admission_subject(p))
        return admission

    def admission_subject(self, p: Prepared) -> tuple[Any, int]:
        """Who the request is charged to, and its estimated prompt tokens."""
        from gateway.budgets import Subject
        from gateway.metering.records import api_key_id

        metadata = p.req.metadata or {}
        subject = Subject(
            team=metadata.get("team", ""),
            key=api_key_id(p.subject_key),
            route=p.plan.route or "",
            user=p.req.user or "",
        )
        tokens = p.plan.prompt_tokens if p.plan.prompt_tokens is not None else estimate_prompt_tokens(p.req)
        return subject, tokens

    def meter_stream(self, p: Prepared) -> StreamMetering | None:
        """With a policy, every stream is metered: ask its upstream for usage, count what it never said."""
        if self.runtime is None:
            return None  # no meter: the upstream gets exactly the caller's request
        from gateway.metering.streams import ask_for_usage, stream_metering

        metering = stream_metering(p.req)
        ask_for_usage(p.req)
        return metering

    # --- writing ---------------------------------------------------------------------------------

    def reply(self, p: Prepared, reply: ChatCompletion) -> WireResponse:
        info = self.annotate(reply, p)
        info_registry.remember(p.request_id, info)
        headers = reply_headers(p.request_id, info, reply._http_response)
        upstream_id = _upstream_request_id(reply._http_response)
        capture = getattr(self.runtime, "capture", None)
        if capture is not None:  # the route's capture: section (gateway/capture)
            capture.record(p.request_id, p.plan.route, p.req, reply, upstream_id, force=p.shadowed)
        return json_response(200, chat_dialect.reply_bytes(reply), headers)

    def embeddings_reply(self, request_id: str, reply: CreateEmbeddingResponse) -> WireResponse:
        info_registry.remember(request_id, reply._gateway)
        body = reply._raw_body or reply.model_dump_json().encode()
        return json_response(200, body, routing_headers(request_id, reply._gateway))

    def annotate(self, reply: Any, p: Prepared) -> GatewayInfo | None:
        """Complete the routing information: the serving attempt's cost, and dropped parameters."""
        from gateway.core.annotate import annotate

        annotate(reply, p.plan, p.req, self.runtime.meter.prices if self.runtime is not None else None)
        info: GatewayInfo | None = reply._gateway
        return info

    def stream_head(self, p: Prepared, holder: StreamInfo) -> list[tuple[str, str]]:
        headers = [("content-type", SSE), ("cache-control", "no-cache")]
        candidate = holder.candidate
        if candidate is not None:
            partial = GatewayInfo(
                provider=candidate.target.provider,
                model=candidate.name,
                route=p.plan.route,
                reason=candidate.reason or None,
            )
            return headers + reply_headers(p.request_id, partial, holder.http_response)
        return headers + reply_headers(p.request_id, None, holder.http_response)

    @staticmethod
    def sse_chunk(chunk: ChatCompletionChunk, capture: Any) -> bytes:
        """One chunk as the caller's SSE event, added to the stream's capture on the way."""
        if capture is not None:
            capture.add(chunk)
        return chat_dialect.chunk_bytes(chunk)

    @staticmethod
    def sse_done(holder: StreamInfo, capture: Any) -> bytes:
        """A clean end: the capture keeps its example, the caller gets ``[DONE]``."""
        if capture is not None:
            capture.finish(holder.gateway, _upstream_request_id(holder.http_response))
        return b"data: [DONE]\n\n"

    def stream_capture(self, p: Prepared) -> Any:
        """The route's capture of this stream (``gateway/capture``), or ``None``."""
        capture = getattr(self.runtime, "capture", None)
        return (
            capture.stream(p.request_id, p.plan.route, p.req, force=p.shadowed)
            if capture is not None
            else None
        )

    def stream_done(self, p: Prepared, holder: StreamInfo) -> None:
        info_registry.remember(p.request_id, holder.gateway)

    def models(self, w: WireRequest, request_id: str) -> WireResponse | None:
        """``GET models`` with a policy: its routes and models; ``None`` passes it to the client's endpoint."""
        policy = self.planner.policy
        if policy is None:
            return None
        names = [f"route:{name}" for name in policy.routes] + list(policy.models)
        if w.path == "models":
            data = [_model_entry(name) for name in names]
            return json_response(200, {"object": "list", "data": data}, routing_headers(request_id, None))
        wanted = w.path.removeprefix("models/")
        if wanted in names:
            return json_response(200, _model_entry(wanted), routing_headers(request_id, None))
        return None


class Core(CoreBase):
    """The blocking core: ``handle`` answers one wire request."""

    def __init__(self, planner: Planner, executor: Any, runtime: Any = None) -> None:
        super().__init__(planner, runtime)
        self.executor = executor

    def handle(self, w: WireRequest) -> WireResponse | None:
        """The answer, or ``None`` when the request is not the core's (pass it through)."""
        request_id = new_request_id()
        try:
            check_headers(w.headers)  # before any attempt: nothing is sent, retried or metered
            if w.path.startswith("models"):
                return self.models(w, request_id)
            if w.method != "POST":
                return None
            if w.path == "chat/completions":
                return self._chat(w, request_id)
            if w.path == "embeddings":
                return self._embeddings(w, request_id)
            if w.path == "responses":
                from gateway.core.responses import handle_responses

                return handle_responses(self, w, request_id)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an HTTP answer
            return error_response(exc, request_id)
        return None

    def _chat(self, w: WireRequest, request_id: str) -> WireResponse:
        p = self.prepare_chat(w, request_id)
        try:
            admission = self.admit(p)
        finally:
            p.release()  # the first attempt counts itself from here
        self.shadow(p)
        if p.req.stream:
            return self._stream(p, admission)
        records: list[AttemptRecord] = []
        try:
            with _collecting(records if admission is not None else None):
                reply = self.executor.complete(p.req, p.plan, headers=p.headers, timeout=p.timeout)
        finally:
            if admission is not None:
                admission.settle(records)
        return self.reply(p, reply)

    def _stream(self, p: Prepared, admission: Any) -> WireResponse:
        holder = StreamInfo()
        metering = self.meter_stream(p)
        chunks = self.executor.stream(p.req, p.plan, headers=p.headers, timeout=p.timeout, holder=holder)
        if admission is not None:
            from gateway.core.annotate import guarded_stream

            chunks = guarded_stream(chunks, admission)
        token = STREAM_METERING.set(metering)  # read by the attempts, which start in _first
        try:
            first = _first(chunks)  # an error before any content is the answer's status
        finally:
            STREAM_METERING.reset(token)
        return WireResponse(200, self.stream_head(p, holder), stream=self._sse(p, holder, first, chunks))

    def _sse(
        self,
        p: Prepared,
        holder: StreamInfo,
        first: ChatCompletionChunk | None,
        chunks: Iterator[ChatCompletionChunk],
    ) -> Iterator[bytes]:
        capture = self.stream_capture(p)
        try:
            if first is not None:
                yield self.sse_chunk(first, capture)
                for chunk in chunks:
                    yield self.sse_chunk(chunk, capture)
            yield self.sse_done(holder, capture)
        except APIError as exc:
            yield sse_error(exc, "stream_interrupted")
        except Exception as exc:  # noqa: BLE001 - reported in the stream, never a clean end
            yield sse_error(exc, "internal")
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
            self.stream_done(p, holder)

    def _embeddings(self, w: WireRequest, request_id: str) -> WireResponse:
        req, plan = self.prepare_embeddings(w)
        reply = self.executor.embed(req, plan, headers=self.forwarded_headers(w), timeout=w.timeout)
        return self.embeddings_reply(request_id, reply)


class AsyncCore(CoreBase):
    """The asyncio core: the same decisions, awaited."""

    def __init__(self, planner: Planner, executor: Any, runtime: Any = None) -> None:
        super().__init__(planner, runtime)
        self.executor = executor

    async def handle(self, w: WireRequest) -> WireResponse | None:
        request_id = new_request_id()
        try:
            check_headers(w.headers)
            if w.path.startswith("models"):
                return self.models(w, request_id)
            if w.method != "POST":
                return None
            if w.path == "chat/completions":
                return await self._chat(w, request_id)
            if w.path == "embeddings":
                return await self._embeddings(w, request_id)
            if w.path == "responses":
                from gateway.core.responses import ahandle_responses

                return await ahandle_responses(self, w, request_id)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an HTTP answer
            return error_response(exc, request_id)
        return None

    async def aadmit(self, p: Prepared) -> Any:
        if self.guard is None:
            return None
        if not self.guard.blocks():
            return self.admit(p)
        # Awaited (redis.asyncio for Redis; gateway/guard.py), never blocking the loop.
        admission, p.plan = await self.guard.aadmit(p.req, p.plan, *self.admission_subject(p))
        return admission

    async def _chat(self, w: WireRequest, request_id: str) -> WireResponse:
        p = self.prepare_chat(w, request_id)
        try:
            admission = await self.aadmit(p)
        finally:
            p.release()  # no await until the first attempt counts itself
        self.shadow(p)
        if p.req.stream:
            return await self._stream(p, admission)
        records: list[AttemptRecord] = []
        try:
            with _collecting(records if admission is not None else None):
                reply = await self.executor.complete(p.req, p.plan, headers=p.headers, timeout=p.timeout)
        finally:
            if admission is not None:
                await settle_async(admission, records)
        return self.reply(p, reply)

    async def _stream(self, p: Prepared, admission: Any) -> WireResponse:
        holder = StreamInfo()
        metering = self.meter_stream(p)
        chunks = self.executor.stream(p.req, p.plan, headers=p.headers, timeout=p.timeout, holder=holder)
        if admission is not None:
            from gateway.core.annotate import guarded_async_stream

            chunks = guarded_async_stream(chunks, admission)
        token = STREAM_METERING.set(metering)  # read by the attempts, which start in _afirst
        try:
            first = await _afirst(chunks)
        finally:
            STREAM_METERING.reset(token)
        return WireResponse(200, self.stream_head(p, holder), stream=self._sse(p, holder, first, chunks))

    async def _sse(
        self,
        p: Prepared,
        holder: StreamInfo,
        first: ChatCompletionChunk | None,
        chunks: AsyncIterator[ChatCompletionChunk],
    ) -> AsyncIterator[bytes]:
        capture = self.stream_capture(p)
        try:
            if first is not None:
                yield self.sse_chunk(first, capture)
                async for chunk in chunks:
                    yield self.sse_chunk(chunk, capture)
            yield self.sse_done(holder, capture)
        except APIError as exc:
            yield sse_error(exc, "stream_interrupted")
        except Exception as exc:  # noqa: BLE001 - reported in the stream, never a clean end
            yield sse_error(exc, "internal")
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
            self.stream_done(p, holder)

    async def _embeddings(self, w: WireRequest, request_id: str) -> WireResponse:
        req, plan = self.prepare_embeddings(w)
        reply = await self.executor.embed(req, plan, headers=self.forwarded_headers(w), timeout=w.timeout)
        return self.embeddings_reply(request_id, reply)


class _collecting:
    """Collect this request's attempt records for the budget settlement (``CURRENT_ATTEMPTS``)."""

    __slots__ = ("records", "token")

    def __init__(self, records: list[AttemptRecord] | None) -> None:
        self.records = records
        self.token: contextvars.Token[Any] | None = None

    def __enter__(self) -> None:
        if self.records is not None:
            from gateway.guard import CURRENT_ATTEMPTS

            self.token = CURRENT_ATTEMPTS.set(self.records)

    def __exit__(self, *exc: object) -> None:
        if self.token is not None:
            from gateway.guard import CURRENT_ATTEMPTS

            CURRENT_ATTEMPTS.reset(self.token)


def _first(chunks: Iterator[ChatCompletionChunk]) -> ChatCompletionChunk | None:
    try:
        return next(chunks)
    except StopIteration:
        return None


async def _afirst(chunks: AsyncIterator[ChatCompletionChunk]) -> ChatCompletionChunk | None:
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return None


def _bearer(w: WireRequest) -> str | None:
    value = w.headers.get("authorization", "")
    key = value.removeprefix("Bearer ").strip() if value.startswith("Bearer ") else None
    return None if key == NO_KEY else key


async def settle_async(admission: Any, records: list[AttemptRecord]) -> None:
    """Settle an async request's holds: in a worker thread where that may wait on I/O."""
    if admission.guard.blocks():
        await admission.asettle(records)  # awaited, never blocking the loop (gateway/guard.py)
    else:
        admission.settle(records)


def _require_client_key(plan: Plan, w: WireRequest) -> None:
    """A bare model goes to the client's own endpoint, which needs the client's key."""
    for candidate in plan.candidates:
        headers = candidate.target.headers
        if candidate.target.kind == "openai" and candidate.target.base_url == w.base_url:
            if w.headers.get("authorization") == f"Bearer {NO_KEY}" and "api-key" not in headers:
                message = (
                    f"model {candidate.name!r} goes to the client's own endpoint ({w.base_url}), and the client "
                    "has no API key: pass api_key= or set OPENAI_API_KEY (or name another provider, e.g. 'anthropic/...')"
                )
                body = {"message": message, "type": "invalid_request_error", "code": "missing_api_key"}
                raise AuthenticationError(message, body=body, status_code=401)


def reply_headers(request_id: str, info: GatewayInfo | None, upstream: Any) -> list[tuple[str, str]]:
    """``x-switchyard-*`` for ``info``, and the upstream's request id as ``x-request-id``."""
    headers = routing_headers(request_id, info)
    upstream_id = _upstream_request_id(upstream)
    if upstream_id:
        headers.append(("x-request-id", upstream_id))
    return headers


def _upstream_request_id(response: Any) -> str | None:
    if response is None:
        return None
    headers: Mapping[str, str] = response.headers
    return headers.get("x-request-id") or headers.get("request-id")


def _model_entry(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "switchyard"}
