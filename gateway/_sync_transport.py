"""The blocking twin of ``_aio_transport``: HTTP/1.1 over plain sockets for ``httpx.Client``.

Why: httpcore writes a request's head and body in two ``send`` calls and runs h11's validation
for every header; on loopback that was most of the client's time per request (profiled in
``bench/overhead.py``). This transport writes each request in one ``sendall`` and parses the
response head directly. Same scope and fallbacks as the asyncio transport: HTTP/1.1, keep-alive,
``content-length`` and chunked bodies, TLS; used only without ``http_client=`` and without a proxy.
"""

from __future__ import annotations

import io
import select
import socket
import ssl
import threading
from collections import deque
from collections.abc import Iterator

import httpx

from gateway._aio_transport import _default_port, _encode_head

_MAX_HEAD = 64 * 1024
_Origin = tuple[bytes, str, int]


class _Connection:
    __slots__ = ("sock", "reader", "reused")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader: io.BufferedReader = sock.makefile("rb", buffering=65536)  # type: ignore[assignment]
        self.reused = False

    def usable(self) -> bool:
        """Idle and still open: nothing to read (a readable idle socket means EOF or garbage)."""
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


class SocketTransport(httpx.BaseTransport):
    def __init__(self, *, verify: ssl.SSLContext | bool = True) -> None:
        self._idle: dict[_Origin, deque[_Connection]] = {}
        self._lock = threading.Lock()
        self._ssl = (
            verify
            if isinstance(verify, ssl.SSLContext)
            else (ssl.create_default_context() if verify else None)
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        scheme = request.url.raw_scheme
        origin = (scheme, request.url.host, request.url.port or _default_port(scheme))
        payload = _encode_head(request) + request.read()
        for attempt in range(2):
            conn = self._acquire(origin, timeouts)
            try:
                conn.sock.settimeout(timeouts.get("write"))
                conn.sock.sendall(payload)
                conn.sock.settimeout(timeouts.get("read"))
                status, headers = _read_head(conn, request)
            except httpx.RemoteProtocolError as exc:
                conn.close()
                if conn.reused and attempt == 0 and "without sending a response" in str(exc):
                    continue  # an idle connection the server had closed: the request never ran
                raise
            except BaseException:
                conn.close()
                raise
            stream = _ResponseStream(self, origin, conn, headers, request)
            return httpx.Response(
                status, headers=headers, stream=stream, extensions={"http_version": b"HTTP/1.1"}
            )
        raise httpx.RemoteProtocolError("server closed the connection", request=request)

    def _acquire(self, origin: _Origin, timeouts: dict[str, float | None]) -> _Connection:
        with self._lock:
            idle = self._idle.get(origin)
            while idle:
                conn = idle.pop()
                if conn.usable():
                    conn.reused = True
                    return conn
                conn.close()
        scheme, host, port = origin
        try:
            sock = socket.create_connection((host, port), timeout=timeouts.get("connect"))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == b"https" and self._ssl is not None:
                sock = self._ssl.wrap_socket(sock, server_hostname=host)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"{exc} ({host}:{port})") from exc
        return _Connection(sock)

    def _release(self, origin: _Origin, conn: _Connection) -> None:
        with self._lock:
            self._idle.setdefault(origin, deque()).append(conn)

    def close(self) -> None:
        with self._lock:
            for idle in self._idle.values():
                for conn in idle:
                    conn.close()
            self._idle.clear()


class _ResponseStream(httpx.SyncByteStream):
    def __init__(
        self,
        transport: SocketTransport,
        origin: _Origin,
        conn: _Connection,
        headers: list[tuple[bytes, bytes]],
        request: httpx.Request,
    ) -> None:
        self._transport, self._origin, self._conn, self._request = transport, origin, conn, request
        values = {k.lower(): v for k, v in headers}
        self._chunked = b"chunked" in values.get(b"transfer-encoding", b"").lower()
        length = values.get(b"content-length")
        self._length = int(length) if length is not None and not self._chunked else None
        self._keep_alive = values.get(b"connection", b"").lower() != b"close" and (
            self._chunked or self._length is not None
        )
        self._done = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body()
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out", request=self._request) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=self._request) from exc
        self._done = True

    def _body(self) -> Iterator[bytes]:
        reader = self._conn.reader
        if self._chunked:
            while True:
                line = reader.readline(_MAX_HEAD)
                if not line.endswith(b"\n"):
                    raise httpx.RemoteProtocolError(
                        "connection closed inside a chunked body", request=self._request
                    )
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while reader.readline(_MAX_HEAD) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                data = reader.read(size + 2)
                if len(data) < size + 2:
                    raise httpx.RemoteProtocolError("connection closed mid-chunk", request=self._request)
                yield data[:-2]
        elif self._length is not None:
            remaining = self._length
            while remaining:
                piece = reader.read1(min(remaining, 65536))
                if not piece:
                    raise httpx.RemoteProtocolError(
                        "connection closed before the body ended", request=self._request
                    )
                remaining -= len(piece)
                yield piece
        else:
            while piece := reader.read1(65536):
                yield piece

    def close(self) -> None:
        if self._done and self._keep_alive:
            self._transport._release(self._origin, self._conn)
        else:
            self._conn.close()


def _read_head(conn: _Connection, request: httpx.Request) -> tuple[int, list[tuple[bytes, bytes]]]:
    reader = conn.reader
    try:
        status_line = reader.readline(_MAX_HEAD)
        if not status_line:
            raise httpx.RemoteProtocolError("server disconnected without sending a response", request=request)
        lines = []
        size = len(status_line)
        while True:
            line = reader.readline(_MAX_HEAD)
            size += len(line)
            if line in (b"\r\n", b"\n"):
                break
            if not line or size > _MAX_HEAD:
                raise httpx.RemoteProtocolError("malformed or oversized response head", request=request)
            lines.append(line)
    except TimeoutError as exc:
        raise httpx.ReadTimeout("timed out", request=request) from exc
    except OSError as exc:
        raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].strip().isdigit():
        raise httpx.RemoteProtocolError(f"malformed status line {status_line[:80]!r}", request=request)
    headers = []
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep:
            raise httpx.RemoteProtocolError("malformed header line", request=request)
        headers.append((name.strip(), value.strip()))
    return int(parts[1]), headers
