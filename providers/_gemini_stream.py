"""Gemini ``streamGenerateContent?alt=sse`` events -> OpenAI chat-completion chunks.

Each event is a whole ``GenerateContentResponse`` holding the next piece of every candidate and the
usage so far (cumulative). A candidate gets a role chunk when first seen, then content and tool-call
chunks (a function call arrives whole: id, name and arguments in one delta), then a finish chunk.
Usage is delivered once, in a final ``choices: []`` chunk, when the stream ends and the caller asked
for ``include_usage``. Gemini's stream has no terminator, so the end of the body is complete only when
every candidate that started has finished (or the prompt was blocked).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gateway.core.errors import APIResponseValidationError
from gateway.core.types import (
    ChatCompletionChunk,
    ChatRequest,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceDeltaToolCallFunction,
    ChunkChoice,
    CompletionUsage,
    FinishReason,
)
from providers._gemini_response import (
    CandidateView,
    blocked_reason,
    error_in_body,
    finish_reason,
    read_candidate,
    response_id,
    usage_of,
)
from providers._translate import arr, obj, opt_str
from providers.base import StreamState, Target

__all__ = ["GeminiStreamState", "final_usage", "finish", "on_event"]


@dataclass(slots=True)
class GeminiStreamState(StreamState):
    """What the parser remembers between events of one stream."""

    target: Target
    want_usage: bool
    created: int = field(default_factory=lambda: int(time.time()))
    done: bool = False
    id: str = ""
    model: str = ""
    usage: dict[str, Any] | None = None
    started: set[int] = field(default_factory=set)
    finished: set[int] = field(default_factory=set)
    tool_calls: dict[int, int] = field(default_factory=dict)  # candidate -> tool calls so far
    blocked: bool = False

    @classmethod
    def for_request(cls, req: ChatRequest, target: Target) -> GeminiStreamState:
        return cls(target=target, want_usage=req.wants_usage_in_stream)


def on_event(data: Any, state: GeminiStreamState) -> list[ChatCompletionChunk]:
    """Translate one ``GenerateContentResponse`` piece of a stream."""
    body = obj(data, "event")
    if "error" in body and "candidates" not in body:
        raise error_in_body(body)
    if not state.id:
        state.id = response_id(body)
        state.model = opt_str(body.get("modelVersion"), "modelVersion") or state.target.model
    if body.get("usageMetadata") is not None:
        state.usage = obj(body["usageMetadata"], "usageMetadata")
    chunks: list[ChatCompletionChunk] = []
    candidates = arr(body.get("candidates") or [], "candidates")
    for position, raw in enumerate(candidates):
        first = state.tool_calls.get(position, 0)
        chunks.extend(_candidate(read_candidate(raw, position, state.id, first), state))
    if not candidates and blocked_reason(body) is not None and not state.blocked:
        chunks.extend(_blocked(state))
    return chunks


def _chunk(
    state: GeminiStreamState, index: int, delta: ChoiceDelta, finish_reason: FinishReason | None = None
) -> ChatCompletionChunk:
    return ChatCompletionChunk(
        object="chat.completion.chunk",
        id=state.id,
        created=state.created,
        model=state.model,
        choices=[ChunkChoice(index=index, delta=delta, finish_reason=finish_reason)],
    )


def _candidate(view: CandidateView, state: GeminiStreamState) -> list[ChatCompletionChunk]:
    index = view.index
    if index in state.finished:
        return []  # a trailing piece after the finish (Gemini repeats usage-only pieces)
    chunks = []
    if index not in state.started:
        state.started.add(index)
        chunks.append(_chunk(state, index, ChoiceDelta(role="assistant", content="")))
    thoughts = "".join(view.thoughts)
    if thoughts:
        chunks.append(_chunk(state, index, ChoiceDelta.model_validate({"reasoning_content": thoughts})))
    content = "".join(view.texts)
    if content:
        chunks.append(_chunk(state, index, ChoiceDelta(content=content)))
    for call in view.calls:
        position = state.tool_calls.get(index, 0)
        state.tool_calls[index] = position + 1
        delta = ChoiceDeltaToolCall(
            index=position,
            id=call.id,
            type="function",
            function=ChoiceDeltaToolCallFunction(name=call.function.name, arguments=call.function.arguments),
        )
        chunks.append(_chunk(state, index, ChoiceDelta(tool_calls=[delta])))
    if view.reason is not None:
        state.finished.add(index)
        reason = finish_reason(view.reason, state.tool_calls.get(index, 0) > 0)
        chunks.append(_chunk(state, index, ChoiceDelta(), reason))
    return chunks


def _blocked(state: GeminiStreamState) -> list[ChatCompletionChunk]:
    state.blocked = True
    state.started.add(0)
    state.finished.add(0)
    return [
        _chunk(state, 0, ChoiceDelta(role="assistant", content="")),
        _chunk(state, 0, ChoiceDelta(), "content_filter"),
    ]


def final_usage(state: GeminiStreamState) -> CompletionUsage | None:
    """The usage of the whole stream so far, whether or not the caller asked for a usage chunk."""
    return usage_of(state.usage) if state.usage is not None else None


def finish(state: GeminiStreamState) -> list[ChatCompletionChunk]:
    """The body ended: check that every candidate finished, then deliver usage once."""
    if not state.started or not state.started <= state.finished:
        raise APIResponseValidationError(
            f"{state.target.provider}: the stream ended before every candidate had a finishReason "
            "(the response is incomplete)",
            body=None,
        )
    state.done = True
    if not state.want_usage or state.usage is None:
        return []
    usage = usage_of(state.usage)
    return [
        ChatCompletionChunk(
            object="chat.completion.chunk",
            id=state.id,
            created=state.created,
            model=state.model,
            choices=[],
            usage=usage,
        )
    ]
