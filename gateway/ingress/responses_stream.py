"""Chat chunks -> the Responses streaming events, as SSE bytes (sans-I/O).

One ``ResponsesStreamEncoder`` per response: ``start()``, then ``feed(chunk)`` for each internal
``ChatCompletionChunk``, then ``finish()`` (or ``error()``). Output items follow the order the
content arrives in: reasoning text and message text are sequential items (opening one closes the
other); a tool call closes them and stays open until ``finish`` (chat streams may interleave the
argument deltas of parallel calls, so a call is only done when the stream is). Every event carries
a ``sequence_number`` counting from 0; ``output_index``/``content_index`` match what the openai
SDK's ``ResponseStreamState`` accumulates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway._json import dumps_bytes
from gateway.core.types import ChatCompletionChunk, ChoiceDelta, ChoiceDeltaToolCall, ChunkChoice
from gateway.ingress.responses import (
    JSON,
    ResponsesContext,
    function_call_item,
    incomplete_reason,
    logprobs_from_chat,
    message_item,
    output_text_part,
    reasoning_item,
    reasoning_text_of,
    response_object,
    usage_from_chat,
)

__all__ = ["ResponsesStreamEncoder"]

# ``Response.error.code`` is a closed set in the SDK; other codes are reported as server_error
# there, and as given in the ``error`` event.
_RESPONSE_ERROR_CODES = frozenset({"server_error", "rate_limit_exceeded", "invalid_prompt"})


@dataclass(slots=True)
class _Part:
    kind: str  # "output_text" | "refusal" | "reasoning_text"
    index: int
    text: str = ""
    logprobs: list[JSON] = field(default_factory=list)

    def body(self, with_logprobs: bool) -> JSON:
        if self.kind == "refusal":
            return {"type": "refusal", "refusal": self.text}
        if self.kind == "reasoning_text":
            return {"type": "reasoning_text", "text": self.text}
        return output_text_part(self.text, self.logprobs if with_logprobs else None)


@dataclass(slots=True)
class _Item:
    kind: str  # "message" | "reasoning" | "function_call"
    id: str
    index: int
    parts: dict[str, _Part] = field(default_factory=dict)
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    status: str | None = None  # set when the item is done

    def body(self, status: str, with_logprobs: bool = False) -> JSON:
        if self.kind == "function_call":
            return function_call_item(self.id, self.call_id, self.name, self.arguments, status)
        content = [part.body(with_logprobs) for part in self.parts.values()]
        if self.kind == "reasoning":
            item = reasoning_item(self.id, "", status)
            item["content"] = content
            return item
        return message_item(self.id, content, status)


class ResponsesStreamEncoder:
    """Encode one response's stream of chat chunks as Responses SSE events.

    Example:
        >>> from gateway.ingress.responses import chat_body_from_responses
        >>> _, ctx = chat_body_from_responses({"model": "m", "input": "hi", "stream": True})
        >>> encoder = ResponsesStreamEncoder(ctx)
        >>> encoder.start().startswith(b"event: response.created")
        True
    """

    def __init__(self, ctx: ResponsesContext) -> None:
        self._ctx = ctx
        self._sequence = 0
        self._items: list[_Item] = []
        self._current: _Item | None = None  # the open message or reasoning item
        self._calls: dict[int, _Item] = {}  # chat tool-call index -> its open item
        self._finish_reason: str | None = None
        self._usage: JSON | None = None
        self._model: str | None = None
        self._ended = False

    # --- public ----------------------------------------------------------------------------------

    def start(self) -> bytes:
        """``response.created`` and ``response.in_progress``."""
        response = response_object(self._ctx, status="in_progress", output=[])
        return self._event("response.created", response=response) + self._event(
            "response.in_progress", response=response
        )

    def feed(self, chunk: ChatCompletionChunk | Mapping[str, Any]) -> bytes:
        """The events for one internal chunk (possibly none)."""
        self._check_open("feed")
        chunk = chunk if isinstance(chunk, ChatCompletionChunk) else ChatCompletionChunk.model_validate(chunk)
        self._model = chunk.model or self._model
        if chunk.usage is not None:
            self._usage = usage_from_chat(chunk.usage)
        out = b""
        for choice in chunk.choices:
            if choice.index == 0:  # the Responses API has no ``n``
                out += self._choice(choice)
        return out

    def finish(self) -> bytes:
        """Close every open item, then ``response.completed`` (or ``response.incomplete``)."""
        self._check_open("finish")
        self._ended = True
        reason = incomplete_reason(self._finish_reason)
        status = "incomplete" if reason else "completed"
        out = self._close_all(status)
        response = response_object(
            self._ctx,
            status=status,
            output=self._output(status),
            usage=self._usage,
            incomplete=reason,
            model=self._model,
        )
        return out + self._event(f"response.{status}", response=response)

    def error(self, message: str, code: str | None = None) -> bytes:
        """``response.failed`` with what was produced so far, then an ``error`` event.

        The ``error`` event also carries the error as a nested ``error`` object: that is what
        makes the openai SDK's stream raise ``APIError`` instead of yielding the event.
        """
        self._check_open("error")
        self._ended = True
        error = {"code": code if code in _RESPONSE_ERROR_CODES else "server_error", "message": message}
        response = response_object(
            self._ctx,
            status="failed",
            output=self._output("incomplete"),
            usage=self._usage,
            error=error,
            model=self._model,
        )
        nested = {"type": "server_error", "code": code, "message": message, "param": None}
        return self._event("response.failed", response=response) + self._event(
            "error", code=code, message=message, param=None, error=nested
        )

    def _check_open(self, method: str) -> None:
        if self._ended:
            raise RuntimeError(f"ResponsesStreamEncoder.{method}() after the response ended")

    # --- one chunk -------------------------------------------------------------------------------

    def _choice(self, choice: ChunkChoice) -> bytes:
        delta: ChoiceDelta = choice.delta
        out = b""
        if (thinking := reasoning_text_of(delta)) is not None:
            out += self._text("reasoning", "reasoning_text", thinking)
        if delta.content:
            logprobs = logprobs_from_chat(choice.logprobs) if self._ctx.include_logprobs else []
            out += self._text("message", "output_text", delta.content, logprobs)
        if delta.refusal:
            out += self._text("message", "refusal", delta.refusal)
        for call in delta.tool_calls or []:
            out += self._tool_call(call)
        if choice.finish_reason is not None:
            self._finish_reason = choice.finish_reason
        return out

    def _text(self, kind: str, part_kind: str, text: str, logprobs: list[JSON] | None = None) -> bytes:
        out = b""
        item = self._current
        if item is None or item.kind != kind:
            out += self._close_current("completed")
            item = self._current = self._open(kind)
            out += self._added(item)
        part = item.parts.get(part_kind)
        if part is None:
            part = item.parts[part_kind] = _Part(part_kind, len(item.parts))
            out += self._part_event("response.content_part.added", item, part)
        part.text += text
        part.logprobs += logprobs or []
        where = {"item_id": item.id, "output_index": item.index, "content_index": part.index}
        match part_kind:
            case "output_text":
                return out + self._event(
                    "response.output_text.delta", **where, delta=text, logprobs=logprobs or []
                )
            case "refusal":
                return out + self._event("response.refusal.delta", **where, delta=text)
            case _:
                return out + self._event("response.reasoning_text.delta", **where, delta=text)

    def _tool_call(self, call: ChoiceDeltaToolCall) -> bytes:
        out = b""
        item = self._calls.get(call.index)
        function = call.function
        if item is None:
            out += self._close_current("completed")
            item = self._open(
                "function_call",
                call_id=call.id or self._ctx.ids("call"),
                name=(function and function.name) or "",
            )
            self._calls[call.index] = item
            out += self._added(item)
        elif function is not None and function.name:
            item.name += function.name  # a name split over deltas, as some providers send it
        if function is not None and function.arguments:
            item.arguments += function.arguments
            out += self._event(
                "response.function_call_arguments.delta",
                item_id=item.id,
                output_index=item.index,
                delta=function.arguments,
            )
        return out

    # --- items -----------------------------------------------------------------------------------

    def _open(self, kind: str, *, call_id: str = "", name: str = "") -> _Item:
        prefix = {"message": "msg", "reasoning": "rs", "function_call": "fc"}[kind]
        item = _Item(kind, self._ctx.ids(prefix), len(self._items), call_id=call_id, name=name)
        self._items.append(item)
        return item

    def _added(self, item: _Item) -> bytes:
        return self._event(
            "response.output_item.added", output_index=item.index, item=item.body("in_progress")
        )

    def _close_current(self, status: str) -> bytes:
        item, self._current = self._current, None
        return self._close(item, status) if item is not None else b""

    def _close_all(self, status: str) -> bytes:
        out = self._close_current(status)
        for item in self._calls.values():
            out += self._close(item, status)
        return out

    def _close(self, item: _Item, status: str) -> bytes:
        if item.status is not None:
            return b""
        item.status = status
        out = b""
        if item.kind == "function_call":
            out += self._event(
                "response.function_call_arguments.done",
                item_id=item.id,
                output_index=item.index,
                name=item.name,
                arguments=item.arguments,
            )
        for part in item.parts.values():
            out += self._part_done(item, part)
        body = item.body(status, self._ctx.include_logprobs)
        return out + self._event("response.output_item.done", output_index=item.index, item=body)

    def _part_done(self, item: _Item, part: _Part) -> bytes:
        where = {"item_id": item.id, "output_index": item.index, "content_index": part.index}
        match part.kind:
            case "output_text":
                out = self._event(
                    "response.output_text.done", **where, text=part.text, logprobs=part.logprobs
                )
            case "refusal":
                out = self._event("response.refusal.done", **where, refusal=part.text)
            case _:
                out = self._event("response.reasoning_text.done", **where, text=part.text)
        return out + self._part_event("response.content_part.done", item, part)

    def _part_event(self, kind: str, item: _Item, part: _Part) -> bytes:
        body = part.body(self._ctx.include_logprobs)
        return self._event(
            kind, item_id=item.id, output_index=item.index, content_index=part.index, part=body
        )

    def _output(self, status: str) -> list[JSON]:
        return [item.body(item.status or status, self._ctx.include_logprobs) for item in self._items]

    # --- wire ------------------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + dumps_bytes(data) + b"\n\n"
