"""A minimal, fast OpenAI-compatible upstream for benchmarks: asyncio, canned bodies, keep-alive.

Run it in its own process (``python -m bench.upstream PORT``) so that its CPU does not count
against the client under test. It answers any POST: JSON, or SSE when the body asks ``"stream": true``
(``CHUNKS`` content chunks, then a usage chunk when ``include_usage`` is asked, then ``[DONE]``).
"""

from __future__ import annotations

import asyncio
import json
import sys

CHUNKS = 20
_COMPLETION = {
    "id": "chatcmpl-bench",
    "object": "chat.completion",
    "created": 1_700_000_000,
    "model": "gpt-4o-mini",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Hello from the loopback upstream.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
    "system_fingerprint": "fp_bench",
}
JSON_BODY = json.dumps(_COMPLETION).encode()


def _chunk(delta: dict[str, object], finish: str | None = None, usage: object = None) -> bytes:
    payload = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage is not None:
        payload = {**payload, "choices": [], "usage": usage}
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


SSE_EVENTS = (
    [_chunk({"role": "assistant", "content": ""})]
    + [_chunk({"content": f" w{i}"}) for i in range(CHUNKS)]
    + [_chunk({}, "stop")]
)
USAGE_EVENT = _chunk(
    {}, usage={"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 12 + CHUNKS}
)
DONE = b"data: [DONE]\n\n"


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            if b'"stream":true' in body or b'"stream": true' in body:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
                    b"x-request-id: req_bench\r\n\r\n"
                )
                events = SSE_EVENTS + ([USAGE_EVENT] if b"include_usage" in body else []) + [DONE]
                for event in events:
                    writer.write(_chunked(event))
                writer.write(b"0\r\n\r\n")
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_bench\r\n"
                    + f"content-length: {len(JSON_BODY)}\r\n\r\n".encode()
                    + JSON_BODY
                )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", port, backlog=1024)
    print(f"ready {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
