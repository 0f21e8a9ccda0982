"""``gateway.info(obj)``: what Switchyard did for any reply, sync or async, streamed or not.

It takes whatever the SDK returned: a parsed reply (``ChatCompletion``, ``Response``,
``ParsedChatCompletion``, an embeddings page, …), a ``Stream``/``AsyncStream``, a stream helper's
stream, a ``with_raw_response`` / ``with_streaming_response`` response, or an ``httpx`` response.
It answers a ``GatewayInfo`` (provider, upstream model, route, attempts, latency, time to first
token, cost, reason, dropped parameters), or ``None`` for a reply Switchyard did not route. A
stream's information is complete once the stream has ended; before that it names the provider,
model and route that are serving it.
"""

from __future__ import annotations

from typing import Any

from gateway.core import info as registry
from gateway.core.types import GatewayInfo

__all__ = ["info", "remember_reply"]

_ID = "x-switchyard-id"


def remember_reply(reply: Any, response: Any) -> None:
    """Tie a parsed reply to its routing information (the SDK's parse hook calls this)."""
    request_id = response.headers.get(_ID)
    if request_id is None or reply is None:
        return
    try:
        object.__setattr__(reply, "_switchyard_id", request_id)
    except (AttributeError, TypeError):
        pass  # an object that takes no attributes (a str, a Stream's slots): reached through its response


def info(obj: Any) -> GatewayInfo | None:
    """The routing information of ``obj`` (see the module docstring for what ``obj`` may be)."""
    request_id = _id_of(obj, 0)
    headers = _headers_of(obj, 0)
    if request_id is None and headers is not None:
        request_id = headers.get(_ID)
    if request_id is None:
        return None
    found = registry.recall(request_id)
    if found is not None:
        return found
    return _from_headers(headers) if headers is not None else None


_INNER = ("response", "http_response", "_raw_stream", "_response", "_stream")


def _id_of(obj: Any, depth: int) -> str | None:
    if obj is None or depth > 4:
        return None
    found = getattr(obj, "_switchyard_id", None)
    if isinstance(found, str):
        return found
    for name in _INNER:
        inner = getattr(obj, name, None)
        if inner is not None and inner is not obj:
            found = _id_of(inner, depth + 1)
            if found is not None:
                return found
    return None


def _headers_of(obj: Any, depth: int) -> Any:
    """The first ``x-switchyard-id``-carrying headers reachable from ``obj``."""
    if obj is None or depth > 4:
        return None
    headers = getattr(obj, "headers", None)
    if headers is not None and not callable(headers) and hasattr(headers, "get") and headers.get(_ID):
        return headers
    for name in _INNER:
        inner = getattr(obj, name, None)
        if inner is not None and inner is not obj:
            found = _headers_of(inner, depth + 1)
            if found is not None:
                return found
    return None


def _from_headers(headers: Any) -> GatewayInfo | None:
    provider, model = headers.get("x-switchyard-provider"), headers.get("x-switchyard-model")
    if provider is None or model is None:
        return None
    latency = headers.get("x-switchyard-latency-ms")
    ttft = headers.get("x-switchyard-ttft-ms")
    dropped = headers.get("x-switchyard-dropped-params")
    return GatewayInfo(
        provider=provider,
        model=model,
        route=headers.get("x-switchyard-route"),
        latency_s=float(latency) / 1000 if latency else None,
        ttft_s=float(ttft) / 1000 if ttft else None,
        cost_usd=headers.get("x-switchyard-cost-usd"),
        reason=headers.get("x-switchyard-reason"),
        dropped_params=dropped.split(",") if dropped else [],
        usage_estimated=headers.get("x-switchyard-usage-estimated") == "true",
    )
