"""Anthropic Messages response and error bodies -> OpenAI shapes (one function per block type)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from gateway.core.errors import APIStatusError
from gateway.core.types import (
    ChatCompletion,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    Choice,
    CompletionUsage,
    FinishReason,
    Function,
)
from providers._translate import arguments_json, arr, count, obj, opt_str, text, total_usage
from providers.base import Target, error_from_json_body, loads

__all__ = ["ERROR_STATUS", "completion", "error_of", "event_error", "finish_reason", "usage_of"]

_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    # The server paused a long server-tool turn; the caller continues by sending the turn back.
    "pause_turn": "stop",
}

# Anthropic's error types and the HTTP status each comes with (used for errors inside a stream).
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def finish_reason(stop_reason: str | None) -> FinishReason:
    """Anthropic's ``stop_reason`` as OpenAI's ``finish_reason`` (unknown future values: ``stop``)."""
    return _FINISH.get(stop_reason or "end_turn", "stop")


def usage_of(usage: Mapping[str, Any], where: str) -> CompletionUsage:
    """``prompt_tokens`` counts every input token, cached or not, as OpenAI's does."""
    fresh = count(usage.get("input_tokens"), f"{where}.input_tokens")
    read = count(usage.get("cache_read_input_tokens"), f"{where}.cache_read_input_tokens")
    written = count(usage.get("cache_creation_input_tokens"), f"{where}.cache_creation_input_tokens")
    output = count(usage.get("output_tokens"), f"{where}.output_tokens")
    split = obj(usage.get("cache_creation") or {}, f"{where}.cache_creation")
    five_minutes = count(
        split.get("ephemeral_5m_input_tokens"), f"{where}.cache_creation.ephemeral_5m_input_tokens"
    )
    one_hour = count(
        split.get("ephemeral_1h_input_tokens"), f"{where}.cache_creation.ephemeral_1h_input_tokens"
    )
    written = max(written, five_minutes + one_hour)  # the total, when only the split was sent
    result = total_usage(fresh + read + written, output, cached=read, reasoning=None)
    # Cache writes are billed apart (1.25x input for 5 minutes, 2x for 1 hour): keep them visible.
    details = result.prompt_tokens_details
    if details is not None and written:
        details.cache_write_tokens = written
        if one_hour:
            details.cache_write_1h_tokens = one_hour
    return result


def completion(data: Any, target: Target) -> ChatCompletion:
    """A Messages API response body as a ``ChatCompletion``."""
    message = obj(data, "body")
    if message.get("type") == "error":
        raise event_error(message)
    texts: list[str] = []
    calls: list[ChatCompletionMessageToolCall] = []
    thinking: list[dict[str, Any]] = []
    for i, raw in enumerate(arr(message.get("content"), "content")):
        block = obj(raw, f"content[{i}]")
        match block.get("type"):
            case "text":
                texts.append(text(block.get("text"), f"content[{i}].text"))
            case "tool_use":
                calls.append(_tool_call(block, f"content[{i}]"))
            case "thinking" | "redacted_thinking":
                thinking.append(block)
            case _:
                pass  # server_tool_use and its results are not part of the OpenAI message
    stop = opt_str(message.get("stop_reason"), "stop_reason")
    return ChatCompletion(
        object="chat.completion",
        id=text(message.get("id"), "id"),
        created=int(time.time()),
        model=opt_str(message.get("model"), "model") or target.model,
        choices=[
            Choice(
                index=0,
                finish_reason=finish_reason(stop),
                message=ChatCompletionMessage(
                    role="assistant",
                    content="".join(texts) if texts else None,
                    tool_calls=calls or None,
                    **_reasoning(thinking),
                ),
            )
        ],
        usage=usage_of(obj(message.get("usage") or {}, "usage"), "usage"),
    )


def _reasoning(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """Thinking blocks, kept on the message (as ``reasoning_content`` to read and ``thinking_blocks``
    to send back: Anthropic wants them again before the tool results of a thinking turn)."""
    if not blocks:
        return {}
    readable = [str(b.get("thinking", "")) for b in blocks if b.get("type") == "thinking"]
    return {"reasoning_content": "".join(readable), "thinking_blocks": blocks}


def _tool_call(block: dict[str, Any], where: str) -> ChatCompletionMessageToolCall:
    return ChatCompletionMessageToolCall(
        type="function",
        id=text(block.get("id"), f"{where}.id"),
        function=Function(
            name=text(block.get("name"), f"{where}.name"),
            arguments=arguments_json(obj(block.get("input") or {}, f"{where}.input")),
        ),
    )


def error_of(status: int, headers: Mapping[str, str], body: bytes) -> APIStatusError:
    """An HTTP error: the class follows the status; the body's ``request_id`` fills in ``request_id``."""
    return error_from_json_body(status, _with_request_id(headers, body), body)


def event_error(data: dict[str, Any]) -> APIStatusError:
    """An ``error`` event inside a 200 stream, raised as the error its HTTP status would have been."""
    inner = data.get("error")
    kind = inner.get("type") if isinstance(inner, dict) else None
    status = ERROR_STATUS.get(kind if isinstance(kind, str) else "", 500)
    raw = json.dumps(data).encode()
    return error_from_json_body(status, _with_request_id({}, raw), raw)


def _with_request_id(headers: Mapping[str, str], body: bytes) -> Mapping[str, str]:
    if any(name.lower() in ("request-id", "x-request-id") for name in headers):
        return headers
    try:
        parsed = loads(body)
    except ValueError:
        return headers
    request_id = parsed.get("request_id") if isinstance(parsed, dict) else None
    if not isinstance(request_id, str):
        return headers
    return {**headers, "request-id": request_id}
