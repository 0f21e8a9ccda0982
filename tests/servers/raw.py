"""A loopback server that answers with exact bytes: broken framing, size bombs, dropped connections.

``LoopbackServer`` (``http.py``) can only send what ``http.server`` frames correctly; this one lets a
test write the answer byte for byte. ``answer(request) -> RawAnswer`` is called for every request
(read up to its ``content-length`` body); the answer's bytes are written as they are, then the
connection is closed or kept for the next request. ``requests`` lists everything received, so a
test can count exactly what reached the upstream (including a smuggled second request).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RawRequest:
    """One request as received: its head parsed leniently, its body, and where it arrived."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: int  # 0 for the first accepted connection, and so on
    index: int  # 0 for the first request on its connection


@dataclass(frozen=True, slots=True)
class RawAnswer:
    """Bytes to write (``None``: write nothing); then close unless ``keep_open``."""

    data: bytes | Iterable[bytes] | None = None
    keep_open: bool = False


Answer = Callable[[RawRequest], RawAnswer]


def response(status: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    """A response head and body, exactly as given (no header is added)."""
    head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    return head.encode("latin-1") + body


@dataclass
class RawServer:
    """Serve ``answer`` on 127.0.0.1, on a free port, one thread per connection."""

    answer: Answer
    requests: list[RawRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def __enter__(self) -> RawServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                number, self._connections = self._connections, self._connections + 1
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        buffer = b""
        with conn:
            for index in range(1_000):
                request, buffer = _read_request(conn, buffer, number, index)
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                reply = self.answer(request)
                chunks = [reply.data] if isinstance(reply.data, bytes) else list(reply.data or [])
                try:
                    for chunk in chunks:
                        conn.sendall(chunk)
                except OSError:
                    return  # the client stopped reading (a refused oversized body)
                if not reply.keep_open:
                    conn.shutdown(socket.SHUT_RDWR)
                    return


def _read_request(
    conn: socket.socket, buffer: bytes, number: int, index: int
) -> tuple[RawRequest | None, bytes]:
    while b"\r\n\r\n" not in buffer:
        try:
            data = conn.recv(65536)
        except OSError:
            return None, b""
        if not data:
            return None, b""
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, *_ = [*lines[0].split(" "), "", ""]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    while len(rest) < length:
        data = conn.recv(65536)
        if not data:
            break
        rest += data
    request = RawRequest(method, path, headers, rest[:length], number, index)
    return request, rest[length:]
