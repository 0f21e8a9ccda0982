"""``POST responses``: the Responses API for every provider.

A plan whose every candidate speaks the Responses API natively (OpenAI, Azure, the client's own
endpoint) gets the body relayed as written: stateful features, built-in tools and reasoning
summaries included, usage metered from the answer. Any other plan (Anthropic, Gemini, the local
engine, other OpenAI-compatible hosts, or a route that mixes them) is translated through the chat
schema by the Responses dialect (``gateway/ingress/responses.py``): function tools, structured
output, reasoning effort, usage, the streaming event vocabulary. A stateful feature
(``previous_response_id``, ``store``, ``background``, ``conversation``, a stored ``prompt``) on such
a plan is a 400 naming the feature, never silently ignored.

The blocking and asyncio handlers share every decision (``_Request``); they differ in how they wait.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.core import info as info_registry
from gateway.core.attempts import AttemptRecord, Candidate, StreamInfo
from gateway.core.errors import APIError
from gateway.core.service import reply_headers, settle_async
from gateway.core.wire import WireRequest, WireResponse, json_response
from gateway.ingress import chat as chat_dialect
from gateway.ingress import responses as dialect

if TYPE_CHECKING:
    from gateway.core.service import AsyncCore, Core, CoreBase, Prepared

NATIVE_PROVIDERS = frozenset({"openai", "azure"})


@dataclass(slots=True)
class _Request:
    body: dict[str, Any]
    ctx: dialect.ResponsesContext
    prepared: Prepared
    native: bool


def _read(core: CoreBase, w: WireRequest, request_id: str) -> _Request:
    from gateway.core.service import Prepared, _bearer, _require_client_key

    body = chat_dialect.json_object(w.body)
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise chat_dialect.bad_request("model: expected a non-empty string", param="model")
    chat_body, ctx = dialect.chat_body_from_responses(body, stateful_ok=True)
    req = chat_dialect.chat_request(chat_body)
    plan = core.planner.plan(req.model, req, core.client_config(w))
    _require_client_key(plan, w)
    native = all(_native(c, w) for c in plan.candidates)
    if not native and ctx.stateful:
        provider = next(c.target.provider for c in plan.candidates if not _native(c, w))
        dialect.chat_body_from_responses(
            body, stateful_ok=False, provider=provider
        )  # raises, naming the feature
    prepared = Prepared(request_id, req, plan, core.forwarded_headers(w), w.timeout, _bearer(w))
    core.hold(prepared)
    return _Request(body, ctx, prepared, native)


def _native(candidate: Candidate, w: WireRequest) -> bool:
    target = candidate.target
    if target.kind != "openai":
        return False
    return (
        target.provider in NATIVE_PROVIDERS
        or target.base_url.rstrip("/") == w.base_url.rstrip("/")  # the client's own endpoint
        or bool(target.options.get("azure"))
    )


def _relayed_reply(core: CoreBase, r: _Request, raw: Any, info: Any) -> WireResponse:
    info_registry.remember(r.prepared.request_id, info)
    return json_response(200, raw.body, reply_headers(r.prepared.request_id, info, raw.http_response))


def _translated_reply(core: CoreBase, r: _Request, reply: Any) -> WireResponse:
    info = core.annotate(reply, r.prepared)
    info_registry.remember(r.prepared.request_id, info)
    payload = json.dumps(dialect.response_from_chat(reply, r.ctx), separators=(",", ":")).encode()
    return json_response(200, payload, reply_headers(r.prepared.request_id, info, reply._http_response))


def _encode_stream(r: _Request, first: Any, chunks: Iterator[Any]) -> Iterator[bytes]:
    encoder = dialect.ResponsesStreamEncoder(r.ctx)
    try:
        yield encoder.start()
        if first is not None:
            yield encoder.feed(first)
            for chunk in chunks:
                yield encoder.feed(chunk)
        yield encoder.finish()
    except APIError as exc:
        yield encoder.error(exc.message, "stream_interrupted")


async def _aencode_stream(r: _Request, first: Any, chunks: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    encoder = dialect.ResponsesStreamEncoder(r.ctx)
    try:
        yield encoder.start()
        if first is not None:
            yield encoder.feed(first)
            async for chunk in chunks:
                yield encoder.feed(chunk)
        yield encoder.finish()
    except APIError as exc:
        yield encoder.error(exc.message, "stream_interrupted")


def handle_responses(core: Core, w: WireRequest, request_id: str) -> WireResponse:
    from gateway.core.service import _collecting

    r = _read(core, w, request_id)
    p = r.prepared
    try:
        admission = core.admit(p)
    finally:
        p.release()
    if r.body.get("stream"):
        return _stream(core, r, admission)
    records: list[AttemptRecord] = []
    try:
        with _collecting(records if admission is not None else None):
            if r.native:
                raw, info = core.executor.relay(
                    p.plan, r.body, "responses", headers=p.headers, timeout=p.timeout, req=p.req
                )
                return _relayed_reply(core, r, raw, info)
            reply = core.executor.complete(p.req, p.plan, headers=p.headers, timeout=p.timeout)
    finally:
        if admission is not None:
            admission.settle(records)
    return _translated_reply(core, r, reply)


def _stream(core: Core, r: _Request, admission: Any) -> WireResponse:
    from gateway.core.annotate import guarded_stream
    from gateway.core.service import _first

    p, holder = r.prepared, StreamInfo()
    pieces: Iterator[Any]
    if r.native:
        pieces = core.executor.relay_stream(
            p.plan, r.body, "responses", headers=p.headers, timeout=p.timeout, holder=holder, req=p.req
        )
    else:
        pieces = core.executor.stream(p.req, p.plan, headers=p.headers, timeout=p.timeout, holder=holder)
    if admission is not None:
        pieces = guarded_stream(pieces, admission)
    first = _first(pieces)
    body = _relay_body(first, pieces) if r.native else _encode_stream(r, first, pieces)  # type: ignore[arg-type]
    return WireResponse(200, core.stream_head(p, holder), stream=_finishing(core, p, holder, body, pieces))


def _relay_body(first: bytes | None, pieces: Iterator[bytes]) -> Iterator[bytes]:
    from gateway.core.wire import sse_error

    try:
        if first is not None:
            yield first
            yield from pieces
    except APIError as exc:
        yield sse_error(exc, "stream_interrupted")


def _finishing(
    core: CoreBase, p: Prepared, holder: StreamInfo, body: Iterator[bytes], pieces: Any
) -> Iterator[bytes]:
    try:
        yield from body
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
        core.stream_done(p, holder)


async def ahandle_responses(core: AsyncCore, w: WireRequest, request_id: str) -> WireResponse:
    from gateway.core.service import _collecting

    r = _read(core, w, request_id)
    p = r.prepared
    try:
        admission = await core.aadmit(p)
    finally:
        p.release()
    if r.body.get("stream"):
        return await _astream(core, r, admission)
    records: list[AttemptRecord] = []
    try:
        with _collecting(records if admission is not None else None):
            if r.native:
                raw, info = await core.executor.relay(
                    p.plan, r.body, "responses", headers=p.headers, timeout=p.timeout, req=p.req
                )
                return _relayed_reply(core, r, raw, info)
            reply = await core.executor.complete(p.req, p.plan, headers=p.headers, timeout=p.timeout)
    finally:
        if admission is not None:
            await settle_async(admission, records)
    return _translated_reply(core, r, reply)


async def _astream(core: AsyncCore, r: _Request, admission: Any) -> WireResponse:
    from gateway.core.annotate import guarded_async_stream
    from gateway.core.service import _afirst

    p, holder = r.prepared, StreamInfo()
    pieces: AsyncIterator[Any]
    if r.native:
        pieces = core.executor.relay_stream(
            p.plan, r.body, "responses", headers=p.headers, timeout=p.timeout, holder=holder, req=p.req
        )
    else:
        pieces = core.executor.stream(p.req, p.plan, headers=p.headers, timeout=p.timeout, holder=holder)
    if admission is not None:
        pieces = guarded_async_stream(pieces, admission)
    first = await _afirst(pieces)
    body = _arelay_body(first, pieces) if r.native else _aencode_stream(r, first, pieces)  # type: ignore[arg-type]
    return WireResponse(200, core.stream_head(p, holder), stream=_afinishing(core, p, holder, body, pieces))


async def _arelay_body(first: bytes | None, pieces: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    from gateway.core.wire import sse_error

    try:
        if first is not None:
            yield first
            async for piece in pieces:
                yield piece
    except APIError as exc:
        yield sse_error(exc, "stream_interrupted")


async def _afinishing(
    core: CoreBase, p: Prepared, holder: StreamInfo, body: AsyncIterator[bytes], pieces: Any
) -> AsyncIterator[bytes]:
    try:
        async for piece in body:
            yield piece
    finally:
        aclose = getattr(body, "aclose", None)
        if aclose is not None:
            await aclose()
        aclose = getattr(pieces, "aclose", None)
        if aclose is not None:
            await aclose()
        core.stream_done(p, holder)
