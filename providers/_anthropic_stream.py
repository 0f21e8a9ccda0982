"""Anthropic Messages stream events -> OpenAI chat-completion chunks, one function per event type.

The chunk sequence follows OpenAI's: a role chunk first, content and tool-call deltas (tool calls
numbered 0, 1, ... counting tool_use blocks only, so text or server-tool blocks between them do not
shift the ``index``), one finish chunk, then a usage chunk with ``choices: []`` when the caller asked
for ``stream_options.include_usage``. Thinking text streams as ``delta.reasoning_content`` (the name
DeepSeek and others use); server-tool blocks are not part of the OpenAI message and produce no chunk.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

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
from providers._anthropic_response import event_error, finish_reason, usage_of
from providers._translate import Malformed, arguments_json, count, obj, opt_str, text
from providers.base import StreamState, Target

__all__ = ["AnthropicStreamState", "final_usage", "on_event"]


@dataclass(slots=True)
class AnthropicStreamState(StreamState):
    """What the parser remembers between events of one stream."""

    target: Target
    want_usage: bool
    created: int = field(default_factory=lambda: int(time.time()))
    done: bool = False
    started: bool = False
    finished: bool = False
    id: str = ""
    model: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    blocks: dict[int, str] = field(default_factory=dict)  # block index -> "text" | "tool" | "other"
    tool_index: dict[int, int] = field(default_factory=dict)  # block index -> OpenAI tool-call index
    tool_input: dict[int, Any] = field(default_factory=dict)  # input given whole at block start
    tool_streamed: set[int] = field(default_factory=set)  # tool blocks that got argument text

    @classmethod
    def for_request(cls, req: ChatRequest, target: Target) -> AnthropicStreamState:
        return cls(target=target, want_usage=req.wants_usage_in_stream)


_NEEDS_START = frozenset(
    {"content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}
)


def on_event(data: dict[str, Any], state: AnthropicStreamState) -> list[ChatCompletionChunk]:
    """Translate one decoded stream event; dispatches on its ``type``."""
    kind = data.get("type")
    if kind in _NEEDS_START and not state.started:
        raise Malformed("event", "message_start first", data)
    match kind:
        case "message_start":
            return _message_start(data, state)
        case "content_block_start":
            return _block_start(data, state)
        case "content_block_delta":
            return _block_delta(data, state)
        case "content_block_stop":
            return _block_stop(data, state)
        case "message_delta":
            return _message_delta(data, state)
        case "message_stop":
            return _message_stop(state)
        case "error":
            raise event_error(data)  # e.g. overloaded_error -> OverloadedError (529) in a 200 stream
        case _:
            return []  # ping, and event types newer than this module


def _chunk(
    state: AnthropicStreamState, delta: ChoiceDelta, finish: FinishReason | None = None
) -> ChatCompletionChunk:
    return ChatCompletionChunk(
        object="chat.completion.chunk",
        id=state.id,
        created=state.created,
        model=state.model,
        choices=[ChunkChoice(index=0, delta=delta, finish_reason=finish)],
    )


def _message_start(data: dict[str, Any], state: AnthropicStreamState) -> list[ChatCompletionChunk]:
    message = obj(data.get("message"), "message_start.message")
    state.id = text(message.get("id"), "message_start.message.id")
    state.model = opt_str(message.get("model"), "message_start.message.model") or state.target.model
    state.usage.update(obj(message.get("usage") or {}, "message_start.message.usage"))
    state.started = True
    return [_chunk(state, ChoiceDelta(role="assistant", content=""))]


def _block_start(data: dict[str, Any], state: AnthropicStreamState) -> list[ChatCompletionChunk]:
    index = count(data.get("index"), "content_block_start.index")
    block = obj(data.get("content_block"), "content_block_start.content_block")
    match block.get("type"):
        case "text":
            state.blocks[index] = "text"
            value = opt_str(block.get("text"), "content_block_start.content_block.text")
            return [_chunk(state, ChoiceDelta(content=value))] if value else []
        case "tool_use":
            return _tool_start(index, block, state)
        case _:
            state.blocks[index] = "other"  # thinking, server_tool_use, web search results, ...
            return []


def _tool_start(index: int, block: dict[str, Any], state: AnthropicStreamState) -> list[ChatCompletionChunk]:
    where = "content_block_start.content_block"
    call_id = text(block.get("id"), f"{where}.id")
    name = text(block.get("name"), f"{where}.name")
    state.blocks[index] = "tool"
    state.tool_index[index] = position = len(state.tool_index)
    state.tool_input[index] = obj(block.get("input") or {}, f"{where}.input")
    call = ChoiceDeltaToolCall(
        index=position,
        id=call_id,
        type="function",
        function=ChoiceDeltaToolCallFunction(name=name, arguments=""),
    )
    return [_chunk(state, ChoiceDelta(tool_calls=[call]))]


def _block_delta(data: dict[str, Any], state: AnthropicStreamState) -> list[ChatCompletionChunk]:
    index = count(data.get("index"), "content_block_delta.index")
    if index not in state.blocks:
        raise Malformed(f"content_block_delta[{index}]", "a started content block", None)
    delta = obj(data.get("delta"), "content_block_delta.delta")
    match delta.get("type"):
        case "text_delta" if state.blocks[index] == "text":
            value = text(delta.get("text"), "content_block_delta.delta.text")
            return [_chunk(state, ChoiceDelta(content=value))] if value else []
        case "input_json_delta" if state.blocks[index] == "tool":
            return _arguments(index, text(delta.get("partial_json"), "delta.partial_json"), state)
        case "thinking_delta":
            value = text(delta.get("thinking"), "content_block_delta.delta.thinking")
            return [_chunk(state, ChoiceDelta.model_validate({"reasoning_content": value}))] if value else []
        case _:
            return []  # signature_delta, citations_delta, server-tool input


def _arguments(index: int, piece: str, state: AnthropicStreamState) -> list[ChatCompletionChunk]:
    if not piece:
        return []
    state.tool_streamed.add(index)
    call = ChoiceDeltaToolCall(
        index=state.tool_index[index], function=ChoiceDeltaToolCallFunction(arguments=piece)
    )
    return [_chunk(state, ChoiceDelta(tool_calls=[call]))]


def _block_stop(data: dict[str, Any], state: AnthropicStreamState) -> list[ChatCompletionChunk]:
    index = count(data.get("index"), "content_block_stop.index")
    if state.blocks.get(index) != "tool" or index in state.tool_streamed:
        return []
    # No argument text streamed (a tool without parameters): OpenAI still sends a JSON object.
    given = state.tool_input.get(index)
    return _arguments(index, arguments_json(given) if given else "{}", state)


def _message_delta(data: dict[str, Any], state: AnthropicStreamState) -> list[ChatCompletionChunk]:
    delta = obj(data.get("delta") or {}, "message_delta.delta")
    state.usage.update(obj(data.get("usage") or {}, "message_delta.usage"))
    stop = opt_str(delta.get("stop_reason"), "message_delta.delta.stop_reason")
    if stop is None or state.finished:
        return []
    state.finished = True
    return [_chunk(state, ChoiceDelta(), finish_reason(stop))]


def final_usage(state: AnthropicStreamState) -> CompletionUsage | None:
    """The usage of the whole stream so far, whether or not the caller asked for a usage chunk."""
    return usage_of(state.usage, "usage") if state.started else None


def _message_stop(state: AnthropicStreamState) -> list[ChatCompletionChunk]:
    state.done = True
    chunks = []
    if not state.finished:
        state.finished = True
        chunks.append(_chunk(state, ChoiceDelta(), "stop"))
    if state.want_usage:
        usage: CompletionUsage = usage_of(state.usage, "usage")
        chunks.append(
            ChatCompletionChunk(
                object="chat.completion.chunk",
                id=state.id,
                created=state.created,
                model=state.model,
                choices=[],
                usage=usage,
            )
        )
    return chunks
