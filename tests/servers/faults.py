"""A fault-injecting OpenAI-compatible upstream: faults chosen by model name or an ``x-fault`` header.

``FaultHandler`` answers healthy requests like ``openai_server.handle`` (so tokens are the brain's
word counts) and otherwise injects the fault named by the ``x-fault`` header, or by a model named
``fault:<name>``. Streaming faults have a non-streaming equivalent so the same fault list drives
both kinds of request.

| fault                      | what the upstream does                                                     |
| -------------------------- | -------------------------------------------------------------------------- |
| ``429-retry-after``        | 429 with ``retry-after-ms`` (``retry_after_ms``)                            |
| ``429``                    | 429 without any retry header                                               |
| ``500``, ``503``, ``529``  | that status, every time                                                    |
| ``once-500``               | 500 the first time a key is seen, then healthy (key: ``x-fault-key``)      |
| ``outage-<s>``             | 503 for ``s`` seconds (by ``clock``) from a key's first request, then healthy |
| ``reset``                  | closes the socket before any header                                        |
| ``hang``                   | accepts, never answers                                                     |
| ``slow-first-token-<ms>``  | headers at once, the first piece after ``ms`` (non-streaming: the body)   |
| ``slow-<ms>``              | the whole answer after ``ms``, written in pieces (sees a disconnect)       |
| ``trickle-<ms>``           | a stream whose pieces come ``ms`` apart                                    |
| ``cut-after-<n>``          | closes the socket after ``n`` pieces (the role chunk is piece 1)          |
| ``stall-mid``, ``stall-first`` | stops sending after 3 pieces / 1 piece, keeps the socket open       |
| ``invalid-sse``            | a malformed event right after the role chunk                               |
| ``invalid-sse-mid``        | a malformed event after two content chunks                                 |
| ``no-done``                | the body ends without ``[DONE]`` or a finish reason (truncated)            |
| ``split-event``            | healthy, but every event split across two or three TCP writes              |
| ``context-length``, ``content-policy``, ``prefill-rejected``, ``auth`` | OpenAI's 400/401 bodies |
| ``status-<code>-<body>-<ra>`` | ``code`` with a body of ``json``/``text``/``empty``/``html``, ``ra``/``nora`` |
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.servers import openai_server
from tests.servers.http import Handler, Hang, JSONReply, LoopbackServer, Recorded, Reply, Reset, SSEReply

STALL_S = 5.0
HANG_S = 5.0

_BODIES = {
    "context-length": (
        400,
        "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.",
        "invalid_request_error",
        "context_length_exceeded",
    ),
    "content-policy": (
        400,
        "Your request was rejected as a result of our safety system (content policy).",
        "invalid_request_error",
        "content_policy_violation",
    ),
    "prefill-rejected": (
        400,
        "This model does not support assistant message prefill.",
        "invalid_request_error",
        None,
    ),
    "auth": (401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
}


class FastServer(LoopbackServer):
    """A ``LoopbackServer`` whose connections set ``TCP_NODELAY``, with a deep accept backlog.

    The base server writes headers and body separately; with Nagle's algorithm and the client's
    delayed ACK each answer then waits about 40 ms, which would dominate a battery of thousands of
    requests. Its listen backlog of 5 would also leave a burst of 64 connections waiting to be
    accepted long enough to time out before the upstream ever logged them.
    """

    def __init__(self, handler: Handler) -> None:
        super().__init__(handler)
        self._server.socket.listen(1024)
        accept = self._server.get_request

        def get_request() -> tuple[socket.socket, Any]:
            conn, address = accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return conn, address

        self._server.get_request = get_request  # type: ignore[method-assign]


class FaultHandler:
    """The handler of a ``LoopbackServer``; ``calls`` counts requests per fault name."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, retry_after_ms: int = 20) -> None:
        self.clock = clock
        self.retry_after_ms = retry_after_ms
        self.seen: dict[str, int] = {}
        self.outages: dict[str, float] = {}
        self._lock = threading.Lock()

    def __call__(self, rec: Recorded) -> Reply:
        try:
            body = rec.json() or {}
        except ValueError:
            return Reset()  # a body cut short: the client gave up while it was being read
        if not body and rec.method == "POST":
            return Reset()
        fault = fault_name(rec, body)
        if fault is None:
            return openai_server.handle(rec)
        return self.inject(fault, rec, body)

    def inject(self, fault: str, rec: Recorded, body: dict[str, Any]) -> Reply:
        stream = bool(body.get("stream"))
        if fault.startswith("status-"):
            return status_reply(fault)
        if fault in _BODIES:
            return error_body(*_BODIES[fault])
        simple = self._simple(fault)
        if simple is not None:
            return simple
        if fault in ("once-500",) or fault.startswith("outage-"):
            return self._keyed(fault, rec, body)
        healthy = openai_server.chat(body)
        if stream and isinstance(healthy, SSEReply):
            return stream_fault(fault, healthy)
        if isinstance(healthy, JSONReply):
            return json_fault(fault, healthy)
        raise ValueError(f"unknown fault {fault!r}")

    def _simple(self, fault: str) -> Reply | None:
        if fault == "429-retry-after":
            return error_body(
                429, "Rate limit reached.", "requests", "rate_limit_exceeded", ra_ms=self.retry_after_ms
            )
        if fault == "429":
            return error_body(429, "Rate limit reached.", "requests", "rate_limit_exceeded")
        if fault in ("500", "502", "503", "504", "529"):
            return error_body(int(fault), "The server had an error.", "server_error", None)
        if fault == "reset":
            return Reset()
        if fault == "hang":
            return Hang(HANG_S)
        return None

    def _keyed(self, fault: str, rec: Recorded, body: dict[str, Any]) -> Reply:
        key = rec.headers.get("x-fault-key") or _body_key(body)
        now = self.clock()
        with self._lock:
            count = self.seen.get(key, 0)
            self.seen[key] = count + 1
            if fault.startswith("outage-"):
                start = self.outages.setdefault(key, now)
                failing = now < start + float(fault.removeprefix("outage-"))
            else:
                failing = count == 0
        if failing:
            return error_body(
                503 if fault.startswith("outage-") else 500, "The server had an error.", "server_error", None
            )
        return openai_server.chat(body)


def fault_name(rec: Recorded, body: dict[str, Any]) -> str | None:
    header = rec.headers.get("x-fault")
    if header:
        return header.removeprefix("fault:")
    model = str(body.get("model", ""))
    return model.removeprefix("fault:") if model.startswith("fault:") else None


def error_body(
    status: int, message: str, kind: str, code: str | None, *, ra_ms: int | None = None
) -> JSONReply:
    payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    headers = {"x-request-id": f"req_fault_{status}"}
    if ra_ms is not None:
        headers["retry-after-ms"] = str(ra_ms)
    return JSONReply(status=status, body=payload, headers=headers)


def status_reply(fault: str) -> JSONReply:
    """``status-<code>-<json|text|empty|html>-<ra|nora>``: the status × body matrix."""
    _, code, kind, ra = fault.split("-")
    status = int(code)
    raw = {
        "json": json.dumps(
            {"error": {"message": f"Matrix {status}.", "type": "server_error", "param": None, "code": None}}
        ).encode(),
        "text": f"upstream says {status}".encode(),
        "empty": b"",
        "html": f"<html><head><title>{status}</title></head><body><h1>{status} Error</h1></body></html>".encode(),
    }[kind]
    content_type = {"json": "application/json", "html": "text/html"}.get(kind, "text/plain")
    headers = {"content-type": content_type}
    if ra == "ra":
        headers["retry-after"] = "0.001"
    return JSONReply(status=status, raw=raw, headers=headers)


def stream_fault(fault: str, reply: SSEReply) -> SSEReply:
    """A healthy stream (role, words, finish, ``[DONE]``), broken as ``fault`` says."""
    pieces = list(reply.pieces)
    if fault.startswith("cut-after-"):
        reply.cut_after = int(fault.removeprefix("cut-after-"))
    elif fault in ("stall-mid", "stall-first"):
        reply.stall_after, reply.stall_s = (3 if fault == "stall-mid" else 1), STALL_S
    elif fault.startswith("slow-"):
        reply.first_delay_s = int(fault.rsplit("-", 1)[1]) / 1000
    elif fault.startswith("trickle-"):
        reply.delay_s = int(fault.removeprefix("trickle-")) / 1000
    elif fault == "invalid-sse":
        reply.pieces = pieces[:1] + [b"data: {not json\n\n"] + pieces[1:]
    elif fault == "invalid-sse-mid":
        reply.pieces = pieces[:3] + [b"data: {not json\n\n"] + pieces[3:]
    elif fault == "no-done":
        reply.pieces = pieces[:-2]  # neither the finish chunk nor [DONE]
    elif fault == "split-event":
        reply.pieces = split_pieces(pieces)
    else:
        raise ValueError(f"unknown stream fault {fault!r}")
    if fault != "split-event" and not fault.startswith(("slow", "trickle")):
        reply.usage = {}
    return reply


def json_fault(fault: str, reply: JSONReply) -> Reply:
    """The non-streaming equivalent of a stream fault."""
    raw = json.dumps(reply.body).encode()
    if fault.startswith("slow-"):
        delay = int(fault.rsplit("-", 1)[1]) / 1000
        return _json_in_pieces(raw, reply, first_delay_s=delay, delay_s=0.005)
    if fault == "split-event":
        return _json_in_pieces(raw, reply)
    if fault.startswith("stall-"):
        return Hang(STALL_S)
    if fault.startswith(("cut-after-", "no-done", "invalid-sse")):
        return JSONReply(status=200, raw=raw[: len(raw) // 2], headers=reply.headers)  # a truncated body
    raise ValueError(f"unknown fault {fault!r}")


def _json_in_pieces(
    raw: bytes, reply: JSONReply, *, first_delay_s: float = 0.0, delay_s: float = 0.0
) -> SSEReply:
    step = max(1, len(raw) // 8)
    pieces = [raw[i : i + step] for i in range(0, len(raw), step)]
    return SSEReply(
        pieces,
        headers=reply.headers,
        usage=reply.usage,
        first_delay_s=first_delay_s,
        delay_s=delay_s,
        content_type="application/json",
    )


def split_pieces(pieces: list[bytes]) -> list[bytes]:
    """Split every event across TCP writes: in the middle of its JSON, and before its blank line."""
    out: list[bytes] = []
    for piece in pieces:
        body, end = piece[:-2], piece[-2:]
        half = max(1, len(body) // 2)
        out.extend([body[:half], body[half:], end])
    return out


def _body_key(body: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(body.get("messages"), sort_keys=True).encode()).hexdigest()[:16]
