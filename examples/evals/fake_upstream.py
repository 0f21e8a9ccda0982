"""A tiny OpenAI-compatible "closed model" server for the eval example (stdlib only).

It serves two models by name, with known answers to the bundled quiz:

- ``big`` answers every question right, slowly (50 ms), and grades answers when asked to judge;
- ``small`` answers fast (10 ms) and gets five of the ten questions wrong (its tool call included).

Token counts are word counts, so the gateway can price every call.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RIGHT = {
    "capital of France": "Paris",
    "17 * 3": "17 * 3 = 51",
    "prime number": "B",
    "largest planet": "Jupiter is the largest planet.",
    "order id": "ORD-12345",
    "JSON object": '{"name": "Ada", "age": 36}',
    "word 'yes'": "Yes.",
    "pi to two decimals": "3.14",
    "sky is blue": "Sunlight scatters off air molecules (Rayleigh scattering), and blue light scatters most.",
}
SMALL_WRONG = {
    "prime number": "A",
    "order id": "12345",
    "JSON object": '{"name": "Ada", "age": "thirty-six"}',
    "sky is blue": "Because the sea reflects onto it.",
}
LATENCY_S = {"big": 0.05, "small": 0.01}


def _text(message: dict[str, Any]) -> str:
    content = message.get("content") or ""
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)


def _judge(prompt: str) -> str:
    reference = re.search(r"Reference answer: (.*)", prompt)
    answer = prompt.rpartition("Answer to grade:")[2]
    right = reference is not None and reference.group(1).strip().lower() in answer.lower()
    return json.dumps(
        {"score": 1 if right else 0, "reason": "mentions the reference" if right else "misses it"}
    )


def answer(model: str, body: dict[str, Any]) -> dict[str, Any]:
    """The assistant message ``model`` sends for this request."""
    question = _text(body["messages"][-1])
    if "Answer to grade:" in question:
        return {"role": "assistant", "content": _judge(question)}
    if body.get("tools"):
        city = "Paris" if model == "big" else "paris, france"
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
        }
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    for key, right in RIGHT.items():
        if key in question:
            text = SMALL_WRONG.get(key, right) if model == "small" else right
            return {"role": "assistant", "content": text}
    return {"role": "assistant", "content": "I am not sure."}


def _words(value: Any) -> int:
    return len(json.dumps(value).split())


@contextmanager
def serve() -> Iterator[str]:
    """Run the server in a thread; yields its base URL (``http://127.0.0.1:PORT/v1``)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
            model = str(body.get("model", "small"))
            time.sleep(LATENCY_S.get(model, 0.0))
            message = answer(model, body)
            prompt, completion = _words(body["messages"]), max(1, _words(message))
            reply = {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            }
            payload = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
