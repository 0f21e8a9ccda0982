"""A loopback server that speaks Anthropic's Messages API (``POST /v1/messages``), JSON and SSE.

It decodes the Anthropic request into OpenAI-shaped messages and asks ``brain.answer``, so the three
protocols answer the same conversation the same way, then encodes the answer back as Anthropic
would (content blocks, ``stop_reason``, usage; the full event sequence when streaming). Like the
real API it refuses a request without ``x-api-key``/``anthropic-version`` or ``max_tokens``, and a
``tool_result`` that does not answer a ``tool_use`` of the turn before.

Model names pick the behaviour:
- ``fixture:<name>`` replays ``shared/fixtures/anthropic/<name>.response.{json,sse}`` (or
  ``tests/fixtures/anthropic/``) with the recorded status; ``fixture:error_stream_overloaded``
  sends the recorded in-stream ``error`` event after a ``message_start``;
- ``error:<status>`` answers with Anthropic's real error body for that status (``retry-after`` on 429);
- ``stream-error:<type>`` starts a 200 stream, then sends an ``error`` event of that type.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.servers import brain
from tests.servers.http import JSONReply, Recorded, Reply, SSEReply, sse_pieces

SHARED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded" / "anthropic"
OWN = Path(__file__).resolve().parents[1] / "fixtures" / "anthropic"
JSON_OBJECT_HINT = "Respond only with a single valid JSON object"

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def handle(rec: Recorded) -> Reply:
    if rec.path != "/v1/messages":
        return error_reply(404, f"Not found: {rec.path}")
    if not rec.headers.get("x-api-key"):
        return error_reply(401, "x-api-key header is required")
    if rec.headers.get("anthropic-version") != "2023-06-01":
        return error_reply(400, "anthropic-version: header is required")
    body = rec.json() or {}
    model = str(body.get("model", ""))
    if model.startswith("fixture:"):
        return replay(model.removeprefix("fixture:"))
    if model.startswith("error:"):
        return error_reply(int(model.removeprefix("error:")))
    if "max_tokens" not in body:
        return error_reply(400, "max_tokens: Field required")
    try:
        messages = to_openai_messages(body)
    except ValueError as exc:
        return error_reply(400, str(exc))
    if model.startswith("stream-error:"):
        return _stream_error(model.removeprefix("stream-error:"))
    return answer(body, messages)


# --- Anthropic request -> OpenAI messages --------------------------------------------------------


def to_openai_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = body.get("system")
    if system:
        text = system if isinstance(system, str) else "\n\n".join(b["text"] for b in system)
        messages.append({"role": "system", "content": text})
    previous_tool_ids: set[str] = set()
    for turn in body["messages"]:
        content = turn["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if turn["role"] == "assistant":
            messages.append(_assistant(blocks))
            previous_tool_ids = {b["id"] for b in blocks if b["type"] == "tool_use"}
        else:
            messages.extend(_user(blocks, previous_tool_ids))
            previous_tool_ids = set()
    return messages


def _assistant(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    text = "".join(b["text"] for b in blocks if b["type"] == "text")
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    calls = [
        {
            "id": b["id"],
            "type": "function",
            "function": {"name": b["name"], "arguments": json.dumps(b["input"])},
        }
        for b in blocks
        if b["type"] == "tool_use"
    ]
    if calls:
        message["tool_calls"] = calls
    return message


def _user(blocks: list[dict[str, Any]], tool_ids: set[str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for block in blocks:
        match block["type"]:
            case "tool_result":
                if block["tool_use_id"] not in tool_ids:
                    raise ValueError(
                        f"messages: unexpected `tool_use_id` found in `tool_result` blocks: {block['tool_use_id']}. "
                        "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                    )
                content = block.get("content", "")
                text = content if isinstance(content, str) else brain.text_of(content)
                out.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
            case "text":
                parts.append({"type": "text", "text": block["text"]})
            case "image":
                source = block["source"]
                url = (
                    source["url"]
                    if source["type"] == "url"
                    else f"data:{source['media_type']};base64,{source['data']}"
                )
                parts.append({"type": "image_url", "image_url": {"url": url}})
            case "document":
                parts.append({"type": "text", "text": "[document]"})
            case other:
                raise ValueError(f"messages: unknown content block type {other!r}")
    if parts:
        out.append({"role": "user", "content": parts})
    return out


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, Any, bool | None]:
    tools = body.get("tools")
    if not tools:
        return None, None, None
    openai_tools = [
        {
            "type": "function",
            "function": {
                "name": t["name"],
                "description": t.get("description", ""),
                "parameters": t["input_schema"],
            },
        }
        for t in tools
    ]
    choice = body.get("tool_choice") or {"type": "auto"}
    mapped: Any = {"auto": "auto", "none": "none", "any": "required"}.get(choice["type"])
    if choice["type"] == "tool":
        mapped = {"type": "function", "function": {"name": choice["name"]}}
        openai_tools = [t for t in openai_tools if t["function"]["name"] == choice["name"]]
    parallel = False if choice.get("disable_parallel_tool_use") else None
    return openai_tools, mapped, parallel


def _response_format(body: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    fmt = (body.get("output_config") or {}).get("format")
    if fmt and fmt.get("type") == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}
    if messages and messages[0]["role"] == "system" and JSON_OBJECT_HINT in messages[0]["content"]:
        return {"type": "json_object"}
    return None


# --- answer -> Anthropic response ----------------------------------------------------------------


def answer(body: dict[str, Any], messages: list[dict[str, Any]]) -> Reply:
    tools, choice, parallel = _tools(body)
    ans = brain.answer(
        messages,
        tools=tools,
        tool_choice=choice,
        response_format=_response_format(body, messages),
        max_tokens=body["max_tokens"],
        parallel_tool_calls=parallel,
    )
    stop_reason, stop_sequence = STOP_REASONS[ans.finish_reason], None
    for sequence in body.get("stop_sequences") or []:
        if ans.text and sequence in ans.text:
            ans.text = ans.text[: ans.text.index(sequence)]
            stop_reason, stop_sequence = "stop_sequence", sequence
    msg_id = "msg_" + hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]
    usage = {
        "input_tokens": ans.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": ans.completion_tokens,
        "service_tier": "standard",
    }
    served = {"prompt": ans.prompt_tokens, "completion": ans.completion_tokens}
    headers = {"request-id": "req_" + msg_id[4:]}
    if body.get("stream"):
        events = stream_events(msg_id, body["model"], ans, stop_reason, stop_sequence, usage)
        return SSEReply(sse_pieces(events, done=False, event_names=True), headers=headers, usage=served)
    message = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content_blocks(ans),
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }
    return JSONReply(body=message, headers=headers, usage=served)


def _tool_id(call: brain.ToolCall) -> str:
    return "toolu_" + hashlib.sha1(call.id.encode()).hexdigest()[:24]


def content_blocks(ans: brain.Answer) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if ans.text:
        blocks.append({"type": "text", "text": ans.text})
    for call in ans.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": _tool_id(call), "name": call.name, "input": json.loads(call.arguments)}
        )
    return blocks


def stream_events(
    msg_id: str,
    model: str,
    ans: brain.Answer,
    stop_reason: str,
    stop_sequence: str | None,
    usage: dict[str, Any],
) -> list[dict[str, Any]]:
    start_usage = {**usage, "output_tokens": 1}
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": msg_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": start_usage,
            },
        }
    ]
    index = 0
    if ans.text:
        events.append(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
        )
        events.append({"type": "ping"})
        for word in ans.words:
            events.append(
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}}
            )
        events.append({"type": "content_block_stop", "index": 0})
        index = 1
    for call in ans.tool_calls:
        block = {"type": "tool_use", "id": _tool_id(call), "name": call.name, "input": {}}
        events.append({"type": "content_block_start", "index": index, "content_block": block})
        half = len(call.arguments) // 2
        for piece in ("", call.arguments[:half], call.arguments[half:]):
            delta = {"type": "input_json_delta", "partial_json": piece}
            events.append({"type": "content_block_delta", "index": index, "delta": delta})
        events.append({"type": "content_block_stop", "index": index})
        index += 1
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": {"output_tokens": usage["output_tokens"]},
        }
    )
    events.append({"type": "message_stop"})
    return events


def _stream_error(kind: str) -> Reply:
    start = stream_events(
        "msg_err",
        "claude",
        brain.Answer(text=None),
        "end_turn",
        None,
        {"input_tokens": 1, "output_tokens": 0},
    )[0]
    error = {
        "type": "error",
        "error": {"type": kind, "message": "Overloaded" if kind == "overloaded_error" else kind},
    }
    return SSEReply(sse_pieces([start, {"type": "ping"}, error], done=False, event_names=True))


# --- errors and replays --------------------------------------------------------------------------


def error_reply(status: int, message: str | None = None) -> JSONReply:
    kind = ERROR_TYPES.get(status, "api_error")
    request_id = f"req_error_{status}"
    body = {
        "type": "error",
        "error": {"type": kind, "message": message or f"Loopback {kind}."},
        "request_id": request_id,
    }
    headers = {"request-id": request_id}
    if status == 429:
        headers["retry-after"] = "1"
    return JSONReply(status=status, body=body, headers=headers)


def replay(name: str) -> Reply:
    """Replay a fixture: shared recordings first, then the ones written from the API reference."""
    for folder in (SHARED, OWN):
        if name == "error_stream_overloaded" and (folder / f"{name}.event_data.json").exists():
            return _replay_stream_error(folder / f"{name}.event_data.json")
        status = _status(folder, name)
        sse = folder / f"{name}.response.sse"
        if sse.exists():
            return SSEReply(
                [sse.read_bytes()], status=status, content_type="text/event-stream; charset=utf-8"
            )
        js = folder / f"{name}.response.json"
        if js.exists():
            return JSONReply(status=status, raw=js.read_bytes())
    raise FileNotFoundError(f"no Anthropic fixture named {name!r}")


def _replay_stream_error(path: Path) -> Reply:
    """The recorded in-stream error payload, framed as Anthropic documents (``event: error``)."""
    start = stream_events(
        "msg_recorded",
        "claude",
        brain.Answer(text=None),
        "end_turn",
        None,
        {"input_tokens": 1, "output_tokens": 0},
    )[0]
    pieces = sse_pieces([start, {"type": "ping"}], done=False, event_names=True)
    pieces.append(b"event: error\ndata: " + path.read_bytes().strip() + b"\n\n")
    return SSEReply(pieces)


def _status(folder: Path, name: str) -> int:
    meta = folder / f"{name}.meta.json"
    if meta.exists():
        response = json.loads(meta.read_text()).get("response") or {}
        if isinstance(response, dict) and "status" in response:
            return int(response["status"])
    return int(name.split("_")[1]) if name.startswith("error_") else 200
