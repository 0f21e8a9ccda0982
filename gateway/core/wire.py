"""The core's two ends: an OpenAI wire request in, an OpenAI wire response out.

``WireRequest`` is what any front door hands the core (the SDK's mounted transport today, an ASGI
server tomorrow): method, URL split into the client's own base URL and the routed path, headers,
body bytes and the caller's timeout. ``WireResponse`` is the answer: a status, headers, and bytes
(whole, or an iterator for a stream). Errors travel as HTTP too (``error_response``): the status
the openai SDK maps to its classes, the body it parses, ``x-should-retry: false`` (the core has
already retried), and ``x-switchyard-error`` naming what the gateway itself decided.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.core.errors import (
    AllAttemptsFailedError,
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    BudgetExceededError,
    GatewayError,
    StateBackendError,
)
from gateway.core.types import GatewayInfo

log = logging.getLogger("switchyard")

JSON = "application/json"
SSE = "text/event-stream"
ROUTING_HEADER_PREFIX = "x-switchyard-"


@dataclass(slots=True)
class WireRequest:
    """One request as the client sent it.

    Attributes:
        method: ``GET`` or ``POST``.
        path: The routed path relative to the client's base URL: ``chat/completions``,
            ``responses``, ``embeddings``, ``models`` or ``models/<id>``.
        base_url: The client's own endpoint (the URL minus ``path``), where bare model names go.
        query: The URL's query parameters (the client's ``default_query`` and a call's ``extra_query``).
        headers: Lower-cased names.
        body: The JSON body's bytes.
        timeout: The caller's timeout (``connect``/``read``/``write``/``pool`` seconds), or ``None``.
    """

    method: str
    path: str
    base_url: str
    query: list[tuple[str, str]]
    headers: Mapping[str, str]
    body: bytes
    timeout: Any = None


@dataclass(slots=True)
class WireResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    stream: Iterator[bytes] | AsyncIterator[bytes] | None = None
    # For the SDK's transport: a failure that the SDK raises as an exception, not a status.
    failure: str | None = None  # "connection" or "timeout"
    cause: BaseException | None = None  # the HTTP stack's own non-HTTP exception, re-raised as is


def json_response(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> WireResponse:
    body = payload if isinstance(payload, bytes) else json.dumps(payload, separators=(",", ":")).encode()
    return WireResponse(status, [("content-type", JSON), *(headers or [])], body)


def routing_headers(request_id: str, info: GatewayInfo | None) -> list[tuple[str, str]]:
    """``x-switchyard-*``: who served the reply and why (values are header-safe ASCII)."""
    headers = [("x-switchyard-id", request_id)]
    if info is None:
        return headers
    values: dict[str, object] = {
        "provider": info.provider,
        "model": info.model,
        "route": info.route,
        "attempts": len([a for a in info.attempts if a.outcome != "skipped"]) or None,
        "latency-ms": round(info.latency_s * 1000, 3) if info.latency_s is not None else None,
        "ttft-ms": round(info.ttft_s * 1000, 3) if info.ttft_s is not None else None,
        "cost-usd": info.cost_usd,
        "reason": info.reason,
        "dropped-params": ",".join(info.dropped_params) or None,
        "usage-estimated": "true" if info.usage_estimated else None,
    }
    headers += [(ROUTING_HEADER_PREFIX + k, header_safe(str(v))) for k, v in values.items() if v is not None]
    return headers


def header_safe(text: str, limit: int = 512) -> str:
    """Printable ASCII only (no CR/LF), at most ``limit`` characters."""
    text = text[:limit]
    if text.isascii() and text.isprintable():  # the common case: nothing to replace
        return text
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


def error_response(exc: BaseException, request_id: str) -> WireResponse:
    """An error as the HTTP answer the openai SDK turns back into its own exception."""
    headers = [("x-should-retry", "false"), ("x-switchyard-id", request_id)]
    if isinstance(exc, APITimeoutError):
        return _failure(504, exc, "timeout", headers)
    if isinstance(exc, APIConnectionError):
        return _failure(502, exc, "connection", headers)
    if isinstance(exc, APIStatusError):
        return _status_response(exc, headers)
    if isinstance(exc, APIError):
        # a malformed or oversized upstream answer that no fallback could replace
        body = {"message": exc.message, "type": "upstream_error", "code": "invalid_upstream_response"}
        return json_response(502, {"error": body}, [*headers, ("x-switchyard-error", "invalid_response")])
    if isinstance(exc, GatewayError):
        body = {"message": str(exc), "type": "gateway_error", "code": exc.code}
        # the state backend unreachable (a budget that fails closed): the gateway is unavailable, not broken
        status = 503 if isinstance(exc, StateBackendError) else 500
        return json_response(status, {"error": body}, [*headers, ("x-switchyard-error", "gateway")])
    log.exception("switchyard: internal error while serving a request", exc_info=exc)
    body = {
        "message": f"internal gateway error ({type(exc).__name__})",
        "type": "gateway_error",
        "code": "internal",
    }
    return json_response(500, {"error": body}, [*headers, ("x-switchyard-error", "internal")])


def _failure(status: int, exc: APIError, kind: str, headers: list[tuple[str, str]]) -> WireResponse:
    body = {"message": exc.message, "type": kind, "code": kind}
    response = json_response(status, {"error": body}, [*headers, ("x-switchyard-error", kind)])
    response.failure = kind
    if isinstance(exc.__cause__, OSError | RuntimeError):  # not the HTTP library's: the SDK decides
        response.cause = exc.__cause__
    return response


def _status_response(exc: APIStatusError, headers: list[tuple[str, str]]) -> WireResponse:
    inner: Any = exc.body if exc.body is not None else {"message": exc.message}
    if isinstance(exc, AllAttemptsFailedError):
        inner = dict(inner) if isinstance(inner, Mapping) else {"message": str(inner)}
        inner["attempts"] = [a.model_dump() for a in exc.attempts]
        headers.append(("x-switchyard-error", "all_attempts_failed"))
    elif _is_gateway_own(exc):
        headers.append(("x-switchyard-error", "gateway"))
        if isinstance(inner, Mapping):
            inner = {**inner, "message": exc.message}
        if isinstance(exc, BudgetExceededError):
            inner = {
                **inner,
                "budget": exc.budget,
                "reset_at": exc.reset_at,
                "retry_after_s": exc.retry_after_s,
            }
    if isinstance(inner, Mapping):
        message = inner.get("message")
        # the SDK writes "Error code: N - <message>" itself
        text = _PREFIX.sub("", message if isinstance(message, str) and message else exc.message)
        inner = {**inner, "message": text or f"the upstream answered {exc.status_code} without a message"}
    retry_after = exc.headers.get("retry-after") if exc.headers else None
    if retry_after is not None:
        headers.append(("retry-after", retry_after))
    request_id = exc.request_id
    if request_id:
        headers.append(("x-request-id", request_id))
    if exc.raw_body is not None and not isinstance(exc, AllAttemptsFailedError):
        # the caller's own protocol: the upstream's document, every field kept
        return WireResponse(exc.status_code, [("content-type", _content_type(exc)), *headers], exc.raw_body)
    payload = {"error": inner} if isinstance(inner, Mapping) and "error" not in inner else inner
    return json_response(
        exc.status_code, payload if isinstance(payload, Mapping) else {"error": payload}, headers
    )


def _content_type(exc: APIStatusError) -> str:
    value = exc.response.headers.get("content-type") if exc.response is not None else None
    return str(value) if value else JSON


_PREFIX = re.compile(r"^Error code: \d+(?: - |$)")


def _is_gateway_own(exc: APIStatusError) -> bool:
    """Raised by the gateway (budget, no route, unsupported parameter, bad request), not relayed."""
    return exc.response is None and (isinstance(exc, BudgetExceededError) or exc.request is None)


def sse_event(data: str | bytes, event: str | None = None) -> bytes:
    raw = data if isinstance(data, bytes) else data.encode()
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + raw + b"\n\n"


def sse_error(exc: BaseException, code: str) -> bytes:
    """A failure after content reached the caller: an SSE ``error`` the SDK raises as ``APIError``."""
    message = exc.message if isinstance(exc, APIError) else f"internal gateway error ({type(exc).__name__})"
    error: dict[str, Any] = {"message": message, "type": "stream_error", "code": code}
    delivered = getattr(exc, "chunks_delivered", None)
    if delivered is not None:
        error["chunks_delivered"] = delivered
    return sse_event(json.dumps({"error": error}))
