"""The core's own keep-alive pool for upstream calls (blocking): h11 frames, sockets carry.

Why not the HTTP client's ``send``: a routed request already went through the SDK's client once;
sending the upstream call through it again cost ~250 µs a request (a second ``Request`` with its
URL parse and header merge, the auth/redirect/hook layers, httpcore's pool). This pool does only
what the upstream leg needs, with the client's own TLS context and connection limits
(``wire11.PoolSettings``), and only where the client has nothing that would change the request
(``wire11.client_allows``); otherwise the client sends as before.

What it owes the attempt loop: one send per call, never a silent re-send (an idle connection is
checked before reuse; one that dies after the request went out is that attempt's error); framing
errors, socket and TLS failures and timeouts raised as ``APIConnectionError``/``APITimeoutError``;
the body decoded in bounded steps so that caps count decompressed bytes.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import h11

from gateway.core.errors import APITimeoutError
from gateway.transports import wire11
from gateway.transports.wire11 import FAILURES, Origin, PoolSettings, Target, Timeouts


class _Conn:
    __slots__ = ("sock", "h11", "origin", "idle_since")

    def __init__(self, sock: socket.socket, origin: Origin) -> None:
        self.sock = sock
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=64 * 1024)
        self.origin = origin
        self.idle_since = 0.0

    def alive(self) -> bool:
        """An idle connection the server has not closed: nothing to read on it (a close, or bytes
        nobody asked for, both make it unusable). ``poll``, not ``select``: no limit on the fd."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return False
        try:
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            return not poller.poll(0)
        except (OSError, ValueError):
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Pool:
    def __init__(self, settings: PoolSettings, module: ModuleType) -> None:
        self.settings = settings
        self.module = module
        self._conns = wire11.IdleConnections(settings)  # guarded by _cond
        self._cond = threading.Condition()
        self._closed = False

    # --- connections ---------------------------------------------------------------------------

    def _acquire(self, origin: Origin, t: Timeouts) -> _Conn:
        deadline = None if t.pool is None else time.monotonic() + t.pool
        conns = self._conns
        with self._cond:
            while True:
                conn: _Conn | None = conns.take(origin, _Conn.alive)
                if conn is not None:
                    return conn
                if conns.count < self.settings.max_connections:
                    conns.count += 1
                    break
                if not conns.evict_other():
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise APITimeoutError(None)
                    self._cond.wait(remaining)
        try:
            return self._connect(origin, t)
        except BaseException:
            self._forget()
            raise

    def _connect(self, origin: Origin, t: Timeouts) -> _Conn:
        sock = socket.create_connection((origin.host, origin.port), timeout=t.connect)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if origin.scheme == "https":
                sock = self.settings.ssl_context.wrap_socket(sock, server_hostname=origin.host)
        except BaseException:
            sock.close()
            raise
        return _Conn(sock, origin)

    def _forget(self) -> None:
        with self._cond:
            self._conns.count -= 1
            self._cond.notify()

    def release(self, conn: _Conn, *, reuse: bool) -> None:
        if reuse and wire11.reusable(conn.h11) and not self._closed:
            conn.h11.start_next_cycle()
            with self._cond:
                if self._conns.keep(conn):
                    self._cond.notify()
                    return
        conn.close()
        self._forget()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._conns.close_all()
            self._cond.notify_all()

    # --- one exchange --------------------------------------------------------------------------

    def open(self, t: Target, timeout: Any) -> PooledResponse:
        """Send the request and read the response head; the body is read from the response."""
        timeouts = Timeouts.of(timeout)
        lazy = wire11.LazyRequest(self.module, t)
        try:
            conn = self._acquire(t.origin, timeouts)
        except FAILURES as exc:
            raise wire11.mapped(exc, lazy.get()) from None  # the detail is in the message
        try:
            conn.sock.settimeout(timeouts.write)
            conn.sock.sendall(wire11.request_bytes(conn.h11, t))
            conn.sock.settimeout(timeouts.read)
            while (head := wire11.head_of(conn.h11)) is None:
                conn.h11.receive_data(conn.sock.recv(wire11.READ_SIZE))
            headers = list(head.headers)  # names lowercased by h11
            decoder = wire11.Decoder(wire11.encoding_of(headers), self.module)
        except BaseException as exc:
            conn.close()
            self._forget()
            if isinstance(exc, FAILURES):
                raise wire11.mapped(exc, lazy.get()) from None  # the detail is in the message
            raise
        return PooledResponse(self, conn, head.status_code, headers, lazy, decoder)


class PooledResponse(wire11.PooledBase):
    """An upstream response read through the blocking pool."""

    def __init__(
        self,
        pool: Pool,
        conn: _Conn,
        status: int,
        raw_headers: list[tuple[bytes, bytes]],
        lazy: wire11.LazyRequest,
        decoder: wire11.Decoder,
    ) -> None:
        super().__init__(pool.module, status, raw_headers, lazy, decoder, conn.sock)
        self._pool = pool
        self._conn: _Conn | None = conn

    def iter_bytes(self) -> Iterator[bytes]:
        conn = self._conn
        if conn is None:
            return
        try:
            while True:
                step = wire11.body_step(conn.h11, self._decoder)
                if step is None:
                    conn.h11.receive_data(conn.sock.recv(wire11.READ_SIZE))
                    continue
                pieces, done = step
                yield from pieces
                if done:
                    break
        except FAILURES as exc:
            self._drop()
            raise wire11.mapped(exc, self.request) from None  # the detail is in the message
        self._conn = None
        self._pool.release(conn, reuse=True)

    def close(self) -> None:
        self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.release(conn, reuse=False)
