"""Gemini ``GenerateContentResponse`` bodies and errors -> OpenAI shapes (one function per part type)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
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
from providers._gemini_request import SIGNATURE_MARK
from providers._translate import Malformed, arguments_json, arr, count, obj, opt_str, text, total_usage
from providers.base import Target, error_from_json_body, loads

__all__ = [
    "CandidateView",
    "completion",
    "error_in_body",
    "error_of",
    "finish_reason",
    "read_candidate",
    "response_id",
    "usage_of",
]

_FILTERED = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
    }
)


def finish_reason(reason: str | None, has_tool_calls: bool) -> FinishReason:
    """Gemini's ``finishReason`` as OpenAI's; a candidate that called functions ends in ``tool_calls``."""
    if reason in _FILTERED:
        return "content_filter"
    if reason == "MAX_TOKENS":
        return "length"
    return "tool_calls" if has_tool_calls else "stop"


def usage_of(metadata: Mapping[str, Any]) -> CompletionUsage:
    """``completion_tokens`` = candidates + thoughts; tool-use prompt tokens count as prompt."""
    where = "usageMetadata"
    prompt = count(metadata.get("promptTokenCount"), f"{where}.promptTokenCount")
    prompt += count(metadata.get("toolUsePromptTokenCount"), f"{where}.toolUsePromptTokenCount")
    thoughts = count(metadata.get("thoughtsTokenCount"), f"{where}.thoughtsTokenCount")
    output = count(metadata.get("candidatesTokenCount"), f"{where}.candidatesTokenCount") + thoughts
    cached = count(metadata.get("cachedContentTokenCount"), f"{where}.cachedContentTokenCount")
    return total_usage(prompt, output, cached=cached, reasoning=thoughts)


def response_id(body: Mapping[str, Any]) -> str:
    """The response's ``responseId``, or a stable id derived from the body when it has none."""
    rid = opt_str(body.get("responseId"), "responseId")
    if rid:
        return rid
    digest = hashlib.sha1(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    return f"chatcmpl-{digest[:24]}"


@dataclass(slots=True)
class CandidateView:
    """What one candidate (or one streamed piece of it) says, in OpenAI terms."""

    index: int
    texts: list[str]
    calls: list[ChatCompletionMessageToolCall]
    reason: str | None
    thoughts: list[str] = field(default_factory=list)


def read_candidate(raw: Any, position: int, rid: str, first_call: int) -> CandidateView:
    """Read one candidate; tool call ids are synthesized from the response id and position."""
    where = f"candidates[{position}]"
    candidate = obj(raw, where)
    index = count(candidate.get("index", position), f"{where}.index")
    content = obj(candidate.get("content") or {}, f"{where}.content")
    view = CandidateView(index, [], [], opt_str(candidate.get("finishReason"), f"{where}.finishReason"))
    for k, part in enumerate(arr(content.get("parts") or [], f"{where}.content.parts")):
        _part(obj(part, f"{where}.content.parts[{k}]"), f"{where}.content.parts[{k}]", view, rid, first_call)
    return view


def _part(part: dict[str, Any], where: str, view: CandidateView, rid: str, first_call: int) -> None:
    match part:
        case {"functionCall": call}:
            view.calls.append(
                _function_call(call, part, where, rid, view.index, first_call + len(view.calls))
            )
        case {"thought": True, "text": value}:
            view.thoughts.append(text(value, f"{where}.text"))  # a thought summary: reasoning
        case {"text": value}:
            view.texts.append(text(value, f"{where}.text"))
        case _:
            pass  # executableCode, inline media and parts newer than this module


def _function_call(
    call: Any, part: dict[str, Any], where: str, rid: str, candidate: int, position: int
) -> ChatCompletionMessageToolCall:
    call = obj(call, f"{where}.functionCall")
    name = text(call.get("name"), f"{where}.functionCall.name")
    args = obj(call.get("args") or {}, f"{where}.functionCall.args")
    given = opt_str(call.get("id"), f"{where}.functionCall.id")
    seed = f"{rid}:{candidate}:{position}:{name}"
    call_id = given or "call_" + hashlib.sha1(seed.encode()).hexdigest()[:24]
    signature = opt_str(part.get("thoughtSignature"), f"{where}.thoughtSignature")
    if signature:
        call_id += SIGNATURE_MARK + signature
    return ChatCompletionMessageToolCall(
        type="function", id=call_id, function=Function(name=name, arguments=arguments_json(args))
    )


def completion(data: Any, target: Target) -> ChatCompletion:
    """A ``GenerateContentResponse`` body as a ``ChatCompletion``."""
    body = obj(data, "body")
    if "error" in body and "candidates" not in body:
        raise error_in_body(body)
    rid = response_id(body)
    choices = []
    for position, raw in enumerate(arr(body.get("candidates") or [], "candidates")):
        view = read_candidate(raw, position, rid, 0)
        message = ChatCompletionMessage(
            role="assistant",
            content="".join(view.texts) if view.texts else None,
            tool_calls=view.calls or None,
            **_reasoning(view.thoughts),
        )
        choices.append(
            Choice(
                index=view.index, finish_reason=finish_reason(view.reason, bool(view.calls)), message=message
            )
        )
    if not choices:
        choices.append(_blocked_choice(body))
    metadata = body.get("usageMetadata")
    return ChatCompletion(
        object="chat.completion",
        id=rid,
        created=int(time.time()),
        model=opt_str(body.get("modelVersion"), "modelVersion") or target.model,
        choices=choices,
        usage=usage_of(obj(metadata, "usageMetadata")) if metadata is not None else None,
    )


def _reasoning(thoughts: list[str]) -> dict[str, Any]:
    """Thought summaries, readable as ``reasoning_content`` (not answer text)."""
    return {"reasoning_content": "".join(thoughts)} if thoughts else {}


def blocked_reason(body: Mapping[str, Any]) -> str | None:
    """``promptFeedback.blockReason`` when the prompt was blocked, else ``None``."""
    feedback = obj(body.get("promptFeedback") or {}, "promptFeedback")
    return opt_str(feedback.get("blockReason"), "promptFeedback.blockReason")


def _blocked_choice(body: Mapping[str, Any]) -> Choice:
    """A prompt blocked before generation: an empty answer that finished by ``content_filter``."""
    if blocked_reason(body) is None:
        raise Malformed("candidates", "at least one candidate or promptFeedback.blockReason", None)
    return Choice(
        index=0, finish_reason="content_filter", message=ChatCompletionMessage(role="assistant", content=None)
    )


def error_of(status: int, headers: Mapping[str, str], body: bytes) -> APIStatusError:
    """An HTTP error: the class follows the status (400 ``API_KEY_INVALID`` is a BadRequestError)."""
    return error_from_json_body(status, _with_retry_after(headers, body), body)


def error_in_body(body: Mapping[str, Any]) -> APIStatusError:
    """An ``{"error": ...}`` object inside a 200 stream or body."""
    inner = body.get("error")
    code = inner.get("code") if isinstance(inner, dict) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    raw = json.dumps(body).encode()
    return error_from_json_body(status, _with_retry_after({}, raw), raw)


def _with_retry_after(headers: Mapping[str, str], body: bytes) -> Mapping[str, str]:
    """A 429's ``RetryInfo.retryDelay`` ("30s") becomes ``retry-after`` when the headers lack one."""
    if any(name.lower() == "retry-after" for name in headers):
        return headers
    try:
        parsed = loads(body)
    except ValueError:
        return headers
    error = parsed.get("error") if isinstance(parsed, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else []:
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                continue
            return {**headers, "retry-after": str(max(0, round(seconds)))}
    return headers
