"""A small HTTP/1.1 loopback server for tests: keep-alive, chunked SSE, scripted faults, an attempt log.

Each provider's fake (``openai_server.py``, ``anthropic_server.py``, ``gemini_server.py``) is a
function from a ``Recorded`` request to a ``Reply``; this module speaks HTTP for all of them. Faults
are replies too: ``Reset`` closes the socket before any header, ``Hang`` accepts and never answers,
an ``SSE`` reply can stall, cut itself short or split one event across TCP writes.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Recorded:
    """One request as the server saw it, with when it arrived and what was answered."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    started: float
    status: int | None = None
    finished: float | None = None
    served_tokens: dict[str, int] = field(default_factory=dict)  # what a reply claimed in usage
    outcome: str = "pending"  # "ok", "error", "reset", "hang", "cut", "disconnected"

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class JSONReply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # exact bytes instead of ``json.dumps(body)``
    usage: dict[str, int] = field(default_factory=dict)


@dataclass
class SSEReply:
    """A ``text/event-stream`` body sent as ``pieces`` (each one TCP write), with optional faults."""

    pieces: list[bytes]
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before each piece
    first_delay_s: float = 0.0  # before the first piece (slow first token)
    stall_after: int | None = None  # stop sending (but keep the socket) after this many pieces
    stall_s: float = 30.0
    cut_after: int | None = None  # close the socket after this many pieces
    usage: dict[str, int] = field(default_factory=dict)
    content_type: str = "text/event-stream"


@dataclass
class Reset:
    """Close the connection before sending anything."""


@dataclass
class Hang:
    """Accept the request and never answer (until the server stops or ``seconds`` pass)."""

    seconds: float = 30.0


Reply = JSONReply | SSEReply | Reset | Hang
Handler = Callable[[Recorded], Reply]


def sse_pieces(payloads: Iterable[Any], *, done: bool = True, event_names: bool = False) -> list[bytes]:
    """Encode payloads as SSE events, one piece each (``[DONE]`` last unless ``done=False``)."""
    pieces = []
    for payload in payloads:
        if event_names and isinstance(payload, dict) and "type" in payload:
            pieces.append(f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode())
        else:
            data = payload if isinstance(payload, str) else json.dumps(payload)
            pieces.append(f"data: {data}\n\n".encode())
    if done:
        pieces.append(b"data: [DONE]\n\n")
    return pieces


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (a closed stream, a cancelled hedge) is normal traffic here.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError | OSError):
            super().handle_error(request, client_address)


class LoopbackServer:
    """Serve ``handler`` on 127.0.0.1 on a free port, in a thread.

    ``log`` lists every request with its timestamps and outcome; ``connections`` counts accepted TCP
    connections (so tests can check that streams reuse them).
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.log: list[Recorded] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        outer = self

        class _RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes: without this, Nagle's algorithm and
                # the client's delayed ACK add ~40 ms to every reply.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with outer._lock:
                    outer.connections += 1

            def log_message(self, format: str, *args: Any) -> None:
                return  # keep test output clean

            def do_POST(self) -> None:
                outer._serve(self)

            do_GET = do_POST
            do_DELETE = do_POST

        self._server = _Server(("127.0.0.1", 0), _RequestHandler)
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LoopbackServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset_log(self) -> None:
        with self._lock:
            self.log.clear()

    # --- serving ---------------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length") or 0)
        body = h.rfile.read(length) if length else b""
        parts = urlsplit(h.path)
        rec = Recorded(
            method=h.command,
            path=parts.path,
            query=parse_qs(parts.query),
            headers={k.lower(): v for k, v in h.headers.items()},
            body=body,
            started=time.monotonic(),
        )
        with self._lock:
            self.log.append(rec)
        reply = self.handler(rec)
        try:
            self._send(h, rec, reply)
        except (BrokenPipeError, ConnectionResetError):
            rec.outcome = "disconnected"
        rec.finished = time.monotonic()

    def _send(self, h: BaseHTTPRequestHandler, rec: Recorded, reply: Reply) -> None:
        if isinstance(reply, Reset):
            rec.outcome = "reset"
            _abort(h)
            return
        if isinstance(reply, Hang):
            rec.outcome = "hang"
            self._stopping.wait(reply.seconds)
            _abort(h)
            return
        if isinstance(reply, JSONReply):
            raw = reply.raw if reply.raw is not None else json.dumps(reply.body).encode()
            h.send_response(reply.status)
            headers = {"content-type": "application/json", **reply.headers}
            for name, value in headers.items():
                h.send_header(name, value)
            h.send_header("content-length", str(len(raw)))
            h.end_headers()
            h.wfile.write(raw)
            h.wfile.flush()
            rec.status = reply.status
            rec.served_tokens = dict(reply.usage)
            rec.outcome = "ok" if reply.status < 400 else "error"
            return
        self._send_sse(h, rec, reply)

    def _send_sse(self, h: BaseHTTPRequestHandler, rec: Recorded, reply: SSEReply) -> None:
        h.send_response(reply.status)
        h.send_header("content-type", reply.content_type)
        for name, value in reply.headers.items():
            h.send_header(name, value)
        h.send_header("transfer-encoding", "chunked")
        h.end_headers()
        h.wfile.flush()
        rec.status = reply.status
        if reply.first_delay_s and self._stopping.wait(reply.first_delay_s):
            return
        for i, piece in enumerate(reply.pieces):
            if reply.cut_after is not None and i >= reply.cut_after:
                rec.outcome = "cut"
                _abort(h)
                return
            if reply.stall_after is not None and i >= reply.stall_after:
                rec.outcome = "stall"
                self._stopping.wait(reply.stall_s)
                _abort(h)
                return
            if reply.delay_s and i and self._stopping.wait(reply.delay_s):
                return
            h.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            h.wfile.flush()
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()
        rec.served_tokens = dict(reply.usage)
        rec.outcome = "ok"


def _abort(h: BaseHTTPRequestHandler) -> None:
    """Close the socket at once (RST when possible) and stop the keep-alive loop."""
    h.close_connection = True
    try:
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        h.connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
