"""A tiny OpenAI-compatible server on 127.0.0.1 so the examples run offline (stdlib only).

It answers ``Echo: <last user message>`` (or ``[name] Echo: …``), streams word by word, and can be
told to fail: ``serve(fail_with=503)`` answers every request with that status and OpenAI's error body.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _reply(body: dict[str, Any], name: str) -> tuple[str, int, int]:
    last = body["messages"][-1].get("content") or ""
    text = f"[{name}] Echo: {last}" if name else f"Echo: {last}"
    prompt = sum(len(str(m.get("content") or "").split()) for m in body["messages"])
    return text, prompt, len(text.split())


@contextmanager
def serve(name: str = "", fail_with: int | None = None) -> Iterator[str]:
    """Run the server in a thread; yields its base URL (``http://127.0.0.1:PORT/v1``)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return

        def _send(self, status: int, payload: bytes, content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            if fail_with is not None:
                error = {
                    "error": {
                        "message": f"upstream {name or 'example'} is failing",
                        "type": "server_error",
                        "code": None,
                    }
                }
                self._send(fail_with, json.dumps(error).encode())
                return
            text, prompt, completion = _reply(body, name)
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            base = {"id": "chatcmpl-example", "created": 1_700_000_000, "model": body.get("model", "m")}
            if not body.get("stream"):
                message = {"role": "assistant", "content": text}
                choice = {"index": 0, "message": message, "finish_reason": "stop"}
                reply = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
                self._send(200, json.dumps(reply).encode())
                return
            words = text.split(" ")
            events = [{"role": "assistant", "content": ""}] + [
                {"content": (" " if i else "") + w} for i, w in enumerate(words)
            ]
            lines = [
                {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": d, "finish_reason": None}],
                }
                for d in events
            ]
            lines.append(
                {
                    **base,
                    "object": "chat.completion.chunk",
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                }
            )
            if (body.get("stream_options") or {}).get("include_usage"):
                lines.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
            payload = "".join(f"data: {json.dumps(x)}\n\n" for x in lines) + "data: [DONE]\n\n"
            self._send(200, payload.encode(), "text/event-stream")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
