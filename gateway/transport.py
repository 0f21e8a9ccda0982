"""Sending a provider's ``HTTPRequestSpec`` over httpx, and the one place httpx errors are translated.

Most specific wins: every ``httpx`` exception becomes an ``APITimeoutError`` or an
``APIConnectionError`` here (``map_httpx_error``), always raised ``from`` the original, so nothing
above this module ever sees an httpx exception.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from gateway import _json
from gateway._redact import redact
from gateway.errors import APIConnectionError, APIError, APITimeoutError
from providers.base import HTTPRequestSpec

USER_AGENT = "switchyard/0.1"


@dataclass(slots=True)
class RawResponse:
    """What the upstream answered to a non-streaming request."""

    status: int
    headers: httpx.Headers
    body: bytes
    http_request: httpx.Request
    http_response: httpx.Response


def map_httpx_error(exc: httpx.HTTPError, request: httpx.Request | None = None) -> APIError:
    """Translate an httpx exception into the gateway's error tree."""
    if request is None:
        try:
            request = exc.request
        except RuntimeError:
            request = None
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(request)
    detail = redact(str(exc)) or type(exc).__name__
    return APIConnectionError(message=f"Connection error: {detail}", request=request)


def build_httpx_request(
    client: httpx.Client | httpx.AsyncClient,
    spec: HTTPRequestSpec,
    extra_headers: Mapping[str, str],
    timeout: Any,
) -> httpx.Request:
    headers = {"user-agent": USER_AGENT, **spec.headers, **extra_headers}
    content = _json.dumps_bytes(spec.json) if spec.json is not None else None
    if content is not None:
        headers.setdefault("content-type", "application/json")
    return client.build_request(
        spec.method,
        spec.url,
        headers={k: v for k, v in headers.items() if v is not None},
        params=dict(spec.params) or None,
        content=content,
        timeout=timeout,
    )


def send(
    client: httpx.Client, spec: HTTPRequestSpec, *, extra_headers: Mapping[str, str] = {}, timeout: Any
) -> RawResponse:
    request = build_httpx_request(client, spec, extra_headers, timeout)
    try:
        response = client.send(request)
    except httpx.HTTPError as exc:
        raise map_httpx_error(exc, request) from exc
    return RawResponse(response.status_code, response.headers, response.content, request, response)


async def send_async(
    client: httpx.AsyncClient, spec: HTTPRequestSpec, *, extra_headers: Mapping[str, str] = {}, timeout: Any
) -> RawResponse:
    request = build_httpx_request(client, spec, extra_headers, timeout)
    try:
        response = await client.send(request)
    except httpx.HTTPError as exc:
        raise map_httpx_error(exc, request) from exc
    return RawResponse(response.status_code, response.headers, response.content, request, response)


@contextmanager
def open_stream(
    client: httpx.Client, spec: HTTPRequestSpec, *, extra_headers: Mapping[str, str] = {}, timeout: Any
) -> Iterator[httpx.Response]:
    """Open a streaming response; the body is read by the caller, errors are translated here."""
    request = build_httpx_request(client, spec, extra_headers, timeout)
    try:
        response = client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise map_httpx_error(exc, request) from exc
    try:
        yield response
    finally:
        response.close()


@asynccontextmanager
async def open_stream_async(
    client: httpx.AsyncClient, spec: HTTPRequestSpec, *, extra_headers: Mapping[str, str] = {}, timeout: Any
) -> AsyncIterator[httpx.Response]:
    request = build_httpx_request(client, spec, extra_headers, timeout)
    try:
        response = await client.send(request, stream=True)
    except httpx.HTTPError as exc:
        raise map_httpx_error(exc, request) from exc
    try:
        yield response
    finally:
        await response.aclose()


def iter_bytes(response: httpx.Response) -> Iterator[bytes]:
    try:
        yield from response.iter_bytes()
    except httpx.HTTPError as exc:
        raise map_httpx_error(exc, response.request) from exc


async def aiter_bytes(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for piece in response.aiter_bytes():
            yield piece
    except httpx.HTTPError as exc:
        raise map_httpx_error(exc, response.request) from exc


def read_error_body(response: httpx.Response) -> bytes:
    try:
        return response.read()
    except httpx.HTTPError:
        return b""


async def aread_error_body(response: httpx.Response) -> bytes:
    try:
        return await response.aread()
    except httpx.HTTPError:
        return b""
