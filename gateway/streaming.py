"""``Stream`` and ``AsyncStream``: what ``create(stream=True)`` returns, shaped like the openai SDK's.

Iterate for ``ChatCompletionChunk``s; use as a context manager or call ``close()`` to stop early
(the upstream sees the disconnect). ``gateway`` holds the gateway metadata once the stream ended.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any

import httpx

from gateway.attempts import StreamInfo
from gateway.types import ChatCompletionChunk, GatewayInfo


class Stream:
    def __init__(self, iterator: Iterator[ChatCompletionChunk], info: StreamInfo) -> None:
        self._iterator = iterator
        self._info = info

    def __iter__(self) -> Iterator[ChatCompletionChunk]:
        return self

    def __next__(self) -> ChatCompletionChunk:
        return next(self._iterator)

    def close(self) -> None:
        close = getattr(self._iterator, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def gateway(self) -> GatewayInfo | None:
        return self._info.gateway

    @property
    def response(self) -> httpx.Response | None:
        response: Any = self._info.http_response
        return response  # type: ignore[no-any-return]


class AsyncStream:
    def __init__(self, iterator: AsyncIterator[ChatCompletionChunk], info: StreamInfo) -> None:
        self._iterator = iterator
        self._info = info

    def __aiter__(self) -> AsyncIterator[ChatCompletionChunk]:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        return await self._iterator.__anext__()

    async def close(self) -> None:
        aclose = getattr(self._iterator, "aclose", None)
        if aclose is not None:
            await aclose()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def gateway(self) -> GatewayInfo | None:
        return self._info.gateway

    @property
    def response(self) -> httpx.Response | None:
        response: Any = self._info.http_response
        return response  # type: ignore[no-any-return]
