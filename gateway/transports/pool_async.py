"""The asyncio twin of ``pool.py``: the same decisions (``wire11``), awaited.

Connections belong to the event loop that opened them: one found idle from another loop (a client
used under two ``asyncio.run`` calls) is closed, never reused, so "Event loop is closed" cannot
reach a caller. No pool scan per request: an origin's idle connections are a stack.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import AsyncIterator
from contextlib import nullcontext
from types import ModuleType
from typing import Any

import h11

from gateway.core.errors import APITimeoutError
from gateway.transports import wire11
from gateway.transports.wire11 import FAILURES, Origin, PoolSettings, Target, Timeouts


def _within(seconds: float | None) -> Any:
    return nullcontext() if seconds is None else asyncio.timeout(seconds)


class _Conn:
    __slots__ = ("reader", "writer", "h11", "origin", "idle_since", "loop")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, origin: Origin) -> None:
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)
        self.origin = origin
        self.idle_since = 0.0
        self.loop = asyncio.get_running_loop()

    def alive(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Idle, on this loop, not closed by the server, nothing unasked-for waiting to be read."""
        return (
            self.loop is loop
            and not self.writer.is_closing()
            and not self.reader.at_eof()
            and not self.reader._buffer  # type: ignore[attr-defined]
        )

    def close(self) -> None:
        try:
            self.writer.close()
        except RuntimeError:  # its loop is gone; the socket goes with the transport
            pass


class AsyncPool:
    def __init__(self, settings: PoolSettings, module: ModuleType) -> None:
        self.settings = settings
        self.module = module
        self._conns = wire11.IdleConnections(settings)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def _acquire(self, origin: Origin, t: Timeouts) -> _Conn:
        loop = asyncio.get_running_loop()
        deadline = None if t.pool is None else loop.time() + t.pool
        conns = self._conns
        while True:
            conn: _Conn | None = conns.take(origin, lambda c: c.alive(loop))
            if conn is not None:
                return conn
            if conns.count < self.settings.max_connections:
                conns.count += 1
                break
            if conns.evict_other():
                continue
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                async with _within(None if deadline is None else max(0.0, deadline - loop.time())):
                    await waiter
            except TimeoutError:
                raise APITimeoutError(None) from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        try:
            return await self._connect(origin, t)
        except BaseException:
            self._forget()
            raise

    async def _connect(self, origin: Origin, t: Timeouts) -> _Conn:
        tls = self.settings.ssl_context if origin.scheme == "https" else None
        async with _within(t.connect):
            reader, writer = await asyncio.open_connection(
                origin.host,
                origin.port,
                ssl=tls,
                server_hostname=origin.host if tls is not None else None,
                limit=wire11.READ_SIZE,
            )
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Conn(reader, writer, origin)

    def _forget(self) -> None:
        self._conns.count -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done() and not waiter.get_loop().is_closed():
                waiter.set_result(None)
                return

    def release(self, conn: _Conn, *, reuse: bool) -> None:
        if reuse and wire11.reusable(conn.h11) and not self._closed:
            conn.h11.start_next_cycle()
            if self._conns.keep(conn):
                self._wake()
                return
        conn.close()
        self._forget()

    async def aclose(self) -> None:
        self._closed = True
        self._conns.close_all()

    async def open(self, t: Target, timeout: Any) -> AsyncPooledResponse:
        timeouts = Timeouts.of(timeout)
        lazy = wire11.LazyRequest(self.module, t)
        try:
            conn = await self._acquire(t.origin, timeouts)
        except FAILURES as exc:
            raise wire11.mapped(exc, lazy.get()) from None  # the detail is in the message
        try:
            conn.writer.write(wire11.request_bytes(conn.h11, t))
            async with _within(timeouts.write):
                await conn.writer.drain()
            while (head := wire11.head_of(conn.h11)) is None:
                async with _within(timeouts.read):
                    conn.h11.receive_data(await conn.reader.read(wire11.READ_SIZE))
            headers = list(head.headers)
            decoder = wire11.Decoder(wire11.encoding_of(headers), self.module)
        except BaseException as exc:
            conn.close()
            self._forget()
            if isinstance(exc, FAILURES):
                raise wire11.mapped(exc, lazy.get()) from None  # the detail is in the message
            raise
        return AsyncPooledResponse(self, conn, head.status_code, headers, lazy, decoder, timeouts.read)


class AsyncPooledResponse(wire11.PooledBase):
    """An upstream response read through the asyncio pool."""

    def __init__(
        self,
        pool: AsyncPool,
        conn: _Conn,
        status: int,
        raw_headers: list[tuple[bytes, bytes]],
        lazy: wire11.LazyRequest,
        decoder: wire11.Decoder,
        read: float | None,
    ) -> None:
        super().__init__(
            pool.module, status, raw_headers, lazy, decoder, conn.writer.get_extra_info("socket")
        )
        self._pool = pool
        self._conn: _Conn | None = conn
        self._read = read

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        try:
            while True:
                step = wire11.body_step(conn.h11, self._decoder)
                if step is None:
                    async with _within(self._read):
                        conn.h11.receive_data(await conn.reader.read(wire11.READ_SIZE))
                    continue
                pieces, done = step
                for piece in pieces:
                    yield piece
                if done:
                    break
        except FAILURES as exc:
            self._drop()
            raise wire11.mapped(exc, self.request) from None  # the detail is in the message
        except BaseException:
            self._drop()
            raise
        self._conn = None
        self._pool.release(conn, reuse=True)

    async def aclose(self) -> None:
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
            self._pool._forget()
