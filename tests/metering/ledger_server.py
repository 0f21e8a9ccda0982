"""A loopback OpenAI-compatible upstream that keeps a ledger of what it bills, as a provider would.

Billing rules (a provider's, made exact): a request answered with a success status is billed its
prompt; a non-streamed answer is billed its whole completion once generated, whether or not the
client is still there to read it; a stream is billed the completion text it wrote. Tokens are
counted with ``cl100k_base`` (``count_chat`` / ``count_text`` with a model name that maps there),
the tokenizer the gateway counts an unknown model's estimates with, so estimates can match exactly.

The upstream model name picks a behaviour:

- ``ok``: answers at once (a stream: one chunk per word, and usage when asked);
- ``slow-<ms>``: a non-streamed answer after ``ms`` (billed even if the client left);
- ``hold``: a stream whose headers come at once and whose first chunk waits until the client
  hangs up (billed its prompt only) or 5 s;
- ``cut-<n>``: a stream that sends ``n`` content chunks, then ends the connection cleanly without
  finishing the stream (billed its prompt and those chunks' text);
- ``bodycut``: a non-streamed answer generated in full (billed its prompt and completion) whose
  body is cut halfway: the connection closes before ``content-length`` bytes were sent.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from gateway.metering.tokens import count_chat, count_text

TOKENIZER = "ledger-model"  # any name the catalog does not know counts with cl100k_base


@dataclass
class Billed:
    model: str
    stream: bool
    prompt: int
    completion: int = 0
    outcome: str = "ok"  # "ok", "abandoned" (the client hung up first), "cut"


@dataclass
class Ledger:
    entries: list[Billed] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entry: Billed) -> Billed:
        with self.lock:
            self.entries.append(entry)
        return entry


def _words(messages: list[dict[str, Any]]) -> list[str]:
    last = str(messages[-1].get("content") or "")
    return ["Echo:", *last.split()]


class LedgerServer:
    """``with LedgerServer() as server: server.base_url, server.ledger``."""

    def __init__(self) -> None:
        self.ledger = Ledger()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer._answer(self, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> LedgerServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _answer(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        model = str(body["model"])
        words = _words(body["messages"])
        entry = self.ledger.add(
            Billed(model, bool(body.get("stream")), count_chat(body["messages"], TOKENIZER).tokens)
        )
        if not body.get("stream"):
            if model.startswith("slow-"):
                time.sleep(int(model.removeprefix("slow-")) / 1000)
            text = " ".join(words)
            entry.completion = count_text(text, TOKENIZER).tokens
            reply = {
                "id": "chatcmpl-ledger",
                "object": "chat.completion",
                "created": 1,
                "model": model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": _usage(entry),
            }
            if model == "bodycut":
                entry.outcome = "cut"
                _send_json(h, reply, cut=True)
                return
            _send_json(h, reply)
            return
        h.send_response(200)
        h.send_header("content-type", "text/event-stream")
        h.send_header("transfer-encoding", "chunked")
        h.end_headers()
        h.wfile.flush()
        if model == "hold" and _hung_up(h.connection, 5.0):
            entry.outcome = "abandoned"
            return
        limit = int(model.removeprefix("cut-")) if model.startswith("cut-") else len(words)
        written = ""
        for i, word in enumerate(words[:limit]):
            piece = word if i == 0 else " " + word
            _chunk(h, _event(model, {"content": piece}))
            written += piece
            entry.completion = count_text(written, TOKENIZER).tokens
        if model.startswith("cut-"):
            entry.outcome = "cut"
            h.wfile.write(b"0\r\n\r\n")  # the body ends cleanly, the stream does not: no finish, no [DONE]
            h.wfile.flush()
            h.close_connection = True
            return
        _chunk(h, _event(model, {}, finish="stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            _chunk(h, {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [],
                       "usage": _usage(entry)})  # fmt: skip
        h.wfile.write(_frame(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        h.wfile.flush()


def _usage(entry: Billed) -> dict[str, int]:
    return {
        "prompt_tokens": entry.prompt,
        "completion_tokens": entry.completion,
        "total_tokens": entry.prompt + entry.completion,
    }


def _event(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _frame(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _chunk(h: BaseHTTPRequestHandler, payload: dict[str, Any]) -> None:
    h.wfile.write(_frame(b"data: " + json.dumps(payload).encode() + b"\n\n"))
    h.wfile.flush()


def _send_json(h: BaseHTTPRequestHandler, reply: dict[str, Any], *, cut: bool = False) -> None:
    raw = json.dumps(reply).encode()
    try:
        h.send_response(200)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(raw)))
        h.end_headers()
        h.wfile.write(raw[: len(raw) // 2] if cut else raw)
        h.wfile.flush()
        if cut:
            h.close_connection = True
    except (BrokenPipeError, ConnectionResetError):
        h.close_connection = True  # billed all the same: the answer was generated


def _hung_up(sock: socket.socket, timeout: float) -> bool:
    """Wait until the client closes its side (``True``) or ``timeout`` passes."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        readable, _, _ = select.select([sock], [], [], 0.01)
        if readable:
            try:
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    return True
            except OSError:
                return True
    return False
