"""The transport Switchyard mounts in the openai SDK's HTTP client (httpx2 under openai 3.x, httpx under 2.x).

The SDK builds every request as it always does and sends it through its client. This transport
sits in front of the client's own transports (``_transport`` and each proxy mount):

- a request that carries a Switchyard core (the facade's ``_prepare_request`` puts it in the
  request's extensions) to a routed endpoint (``chat/completions``, ``responses``, ``embeddings``,
  ``models``) is answered by the core: OpenAI wire in, OpenAI wire out;
- the core's own upstream calls (extension ``switchyard: upstream``) and every other request
  (files, batches, images, audio, a plain ``openai.OpenAI`` sharing the client, …) go to the
  client's own transport unchanged, with its proxies, TLS settings and connection limits.

A connection or timeout failure that no fallback could repair is raised as the SDK's own
``APIConnectionError`` / ``APITimeoutError`` (the SDK propagates those without retrying: the core
already retried); every other failure is an HTTP answer with ``x-should-retry: false``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from functools import cache
from types import ModuleType
from typing import Any

import openai

from gateway.core.service import routed_path
from gateway.core.wire import WireRequest, WireResponse

CORE_EXTENSION = "switchyard_core"


def wire_request(request: Any, path: str) -> WireRequest:
    url = request.url
    trimmed = str(url).partition("?")[0].partition("#")[0].rstrip("/")
    base = trimmed[: len(trimmed) - len(path)]
    return WireRequest(
        method=request.method,
        path=path,
        base_url=base,
        query=list(url.params.multi_items()),
        headers=dict(request.headers.items()),
        body=request.content,
        timeout=request.extensions.get("timeout"),
    )


def _routed(request: Any) -> tuple[Any, str] | None:
    extensions = request.extensions
    if extensions.get("switchyard") == "upstream":
        return None
    core = extensions.get(CORE_EXTENSION)
    if core is None:
        return None
    path = routed_path(request.url.path)
    return (core, path) if path is not None else None


def _raise_failure(answer: WireResponse, request: Any) -> None:
    if answer.cause is not None:
        # an exception of the HTTP stack that is not an HTTP error ("Event loop is closed"): raised
        # as the SDK would have met it, so the SDK handles it as it does without Switchyard
        raise answer.cause
    message = _message(answer)
    if answer.failure == "timeout":
        raise openai.APITimeoutError(request=request)
    raise openai.APIConnectionError(message=message, request=request)


def _message(answer: WireResponse) -> str:
    import json

    try:
        return str(json.loads(answer.body)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return "Connection error."


class SwitchyardTransport:
    """Blocking: mounted over one of an ``httpx.Client``'s (or ``httpx2.Client``'s) transports."""

    def __init__(self, inner: Any, module: ModuleType) -> None:
        self.inner = inner
        self.module = module
        from gateway.transports.pool import Pool  # here, not at ``import gateway``: it brings h11
        from gateway.transports.wire11 import PoolSettings, client_allows

        settings = PoolSettings.of(inner, module)
        self._pool = Pool(settings, module) if settings is not None else None
        self._allows = client_allows

    def upstream_pool(self, client: Any) -> Any:
        """The pool the core's upstream calls use instead of the client's ``send`` (see
        ``gateway/transports/pool.py``), or ``None`` where the client's own settings must apply."""
        return self._pool if self._pool is not None and self._allows(client) else None

    def handle_request(self, request: Any) -> Any:
        routed = _routed(request)
        if routed is None:
            return self.inner.handle_request(request)
        core, path = routed
        answer = core.handle(wire_request(request, path))
        if answer is None:
            return self.inner.handle_request(request)
        if answer.failure is not None:
            _raise_failure(answer, request)
        return _response(self.module, answer, request)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        self.inner.close()

    def __enter__(self) -> SwitchyardTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncSwitchyardTransport:
    """The asyncio twin, mounted over an ``AsyncClient``'s transports."""

    def __init__(self, inner: Any, module: ModuleType) -> None:
        self.inner = inner
        self.module = module
        from gateway.transports.pool_async import AsyncPool
        from gateway.transports.wire11 import PoolSettings, client_allows

        settings = PoolSettings.of(inner, module)
        self._pool = AsyncPool(settings, module) if settings is not None else None
        self._allows = client_allows

    def upstream_pool(self, client: Any) -> Any:
        """As the blocking twin; only under asyncio (another event loop, trio, keeps the client's send)."""
        if self._pool is None or not self._allows(client):
            return None
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return None
        return self._pool

    async def handle_async_request(self, request: Any) -> Any:
        routed = _routed(request)
        if routed is None:
            return await self.inner.handle_async_request(request)
        core, path = routed
        answer = await core.handle(wire_request(request, path))
        if answer is None:
            return await self.inner.handle_async_request(request)
        if answer.failure is not None:
            _raise_failure(answer, request)
        return _response(self.module, answer, request)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        await self.inner.aclose()

    async def __aenter__(self) -> AsyncSwitchyardTransport:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _response(module: ModuleType, answer: WireResponse, request: Any) -> Any:
    if answer.stream is None:
        return module.Response(answer.status, headers=answer.headers, content=answer.body, request=request)
    stream_cls = _sync_stream(module) if isinstance(answer.stream, Iterator) else _async_stream(module)
    return module.Response(
        answer.status, headers=answer.headers, stream=stream_cls(answer.stream), request=request
    )


@cache
def _sync_stream(module: ModuleType) -> type:
    class CoreStream(module.SyncByteStream):  # type: ignore[name-defined, misc]
        """The core's SSE bytes; closing it closes the upstream stream (the caller stopped early)."""

        def __init__(self, pieces: Iterator[bytes]) -> None:
            self._pieces = pieces

        def __iter__(self) -> Iterator[bytes]:
            yield from self._pieces

        def close(self) -> None:
            close = getattr(self._pieces, "close", None)
            if close is not None:
                close()

    return CoreStream


@cache
def _async_stream(module: ModuleType) -> type:
    class AsyncCoreStream(module.AsyncByteStream):  # type: ignore[name-defined, misc]
        def __init__(self, pieces: AsyncIterator[bytes]) -> None:
            self._pieces = pieces

        async def __aiter__(self) -> AsyncIterator[bytes]:
            async for piece in self._pieces:
                yield piece

        async def aclose(self) -> None:
            aclose = getattr(self._pieces, "aclose", None)
            if aclose is not None:
                await aclose()

    return AsyncCoreStream


def mount(client: Any, module: ModuleType, *, asynchronous: bool) -> None:
    """Put Switchyard's transport in front of every transport of ``client`` (idempotent)."""
    wrapper = AsyncSwitchyardTransport if asynchronous else SwitchyardTransport
    inner = client._transport
    if not isinstance(inner, wrapper):
        client._transport = wrapper(inner, module)
    mounts = getattr(client, "_mounts", {})
    for pattern, transport in list(mounts.items()):
        if transport is not None and not isinstance(transport, wrapper):
            mounts[pattern] = wrapper(transport, module)
