"""A minimal, fast OpenAI-compatible upstream for benchmarks: asyncio, canned bodies, keep-alive.

Run it in its own process (``python -m bench.upstream PORT``) so that its CPU does not count
against the client under test. It answers any POST: JSON, or SSE when the body asks ``"stream": true``
(``CHUNKS`` content chunks, then a usage chunk when ``include_usage`` is asked, then ``[DONE]``).
A path ending in ``/responses`` gets a Responses API ``Response`` object instead, or its event
sequence (``response.created`` … ``CHUNKS`` ``response.output_text.delta`` … ``response.completed``).
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


_RESPONSE = {
    "id": "resp_bench",
    "object": "response",
    "created_at": 1_700_000_000,
    "status": "completed",
    "model": "gpt-4o-mini",
    "output": [
        {
            "type": "message",
            "id": "msg_bench",
            "role": "assistant",
            "status": "completed",
            "content": [
                {
                    "type": "output_text",
                    "text": "".join(f" w{i}" for i in range(CHUNKS)),
                    "annotations": [],
                    "logprobs": [],
                }
            ],
        }
    ],
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
    "usage": {
        "input_tokens": 12,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": CHUNKS,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 12 + CHUNKS,
    },
    "error": None,
    "incomplete_details": None,
    "instructions": None,
    "metadata": {},
    "temperature": 1.0,
    "top_p": 1.0,
    "text": {"format": {"type": "text"}},
}
RESPONSE_BODY = json.dumps(_RESPONSE).encode()


def _response_events() -> list[bytes]:
    message = _RESPONSE["output"][0]  # type: ignore[index]
    part = message["content"][0]
    started = {**_RESPONSE, "status": "in_progress", "output": [], "usage": None}
    where = {"item_id": "msg_bench", "output_index": 0, "content_index": 0}
    events: list[dict[str, object]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**message, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
        *(
            {"type": "response.output_text.delta", **where, "delta": f" w{i}", "logprobs": []}
            for i in range(CHUNKS)
        ),
        {"type": "response.output_text.done", **where, "text": part["text"], "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {"type": "response.completed", "response": _RESPONSE},
    ]
    return [
        f"event: {event['type']}\ndata: {json.dumps({**event, 'sequence_number': n})}\n\n".encode()
        for n, event in enumerate(events)
    ]


RESPONSE_EVENTS = _response_events()


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
            responses = head.split(b" ", 2)[1].split(b"?")[0].rstrip(b"/").endswith(b"/responses")
            if b'"stream":true' in body or b'"stream": true' in body:
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
                    b"x-request-id: req_bench\r\n\r\n"
                )
                if responses:
                    events = RESPONSE_EVENTS
                else:
                    events = SSE_EVENTS + ([USAGE_EVENT] if b"include_usage" in body else []) + [DONE]
                for event in events:
                    writer.write(_chunked(event))
                writer.write(b"0\r\n\r\n")
            else:
                answer = RESPONSE_BODY if responses else JSON_BODY
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-request-id: req_bench\r\n"
                    + f"content-length: {len(answer)}\r\n\r\n".encode()
                    + answer
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
