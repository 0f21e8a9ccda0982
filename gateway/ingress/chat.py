"""The chat-completions and embeddings dialects: wire bodies in, internal requests out, and back.

The internal schema *is* the chat-completions protocol, so translation is validation: a body
that is not a JSON object, lacks ``model``/``messages`` or has messages no provider could read is
a 400 naming the field. Values an OpenAI-compatible upstream judges for itself (a temperature out
of range, a type the schema does not know) reach it as written; other protocols refuse them
before any call (``ChatRequest._invalid``, checked by ``check_request``).
"""

from __future__ import annotations

import json
from typing import Any

import pydantic

from gateway.core.errors import BadRequestError
from gateway.core.types import ChatCompletion, ChatCompletionChunk, ChatRequest, EmbeddingRequest

__all__ = [
    "GATEWAY_READS",
    "chat_request",
    "embedding_request",
    "json_object",
    "reply_bytes",
    "chunk_bytes",
    "bad_request",
]


def bad_request(message: str, param: str | None = None, code: str = "invalid_request") -> BadRequestError:
    body = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return BadRequestError(message, body=body, status_code=400)


def json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 that says what is wrong with it."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise bad_request("the request body nests too deeply", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("the request body must be a JSON object", code="invalid_json")
    return data


def chat_request(body: dict[str, Any]) -> ChatRequest:
    for name in ("model", "messages"):
        if name not in body:
            raise bad_request(
                f"missing required parameter: {name!r}", param=name, code="missing_required_parameter"
            )
    if not isinstance(body["model"], str) or not body["model"]:
        raise bad_request("model: expected a non-empty string", param="model")
    messages = body["messages"]
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise bad_request("messages: expected a list of message objects", param="messages")
    try:
        req = ChatRequest.model_validate(body)
    except pydantic.ValidationError as exc:
        errors = exc.errors()
        for error in errors:
            field = ".".join(str(p) for p in error["loc"])
            if field.startswith("messages") or str(error["loc"][0]) in GATEWAY_READS:
                message = error["msg"].removeprefix("Value error, ")
                raise bad_request(f"{field}: {message}", param=field) from None
        error = errors[0]
        field = ".".join(str(p) for p in error["loc"])
        req = ChatRequest.model_construct(**body)
        req._invalid = f"{field}: {error['msg']}"
    _check_counts(req)
    return req


# Fields the gateway itself reads (budgets, metering, routing, the streaming contract): a value of
# the wrong type is a 400 naming the field, as OpenAI answers, rather than a crash in a budget check.
GATEWAY_READS = frozenset(
    {
        "model",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "tools",
        "tool_choice",
        "response_format",
        "modalities",
        "user",
        "metadata",
        "logprobs",
        "top_logprobs",
    }
)

# OpenAI's own bounds: beyond them an estimate (tokens x price) would overflow or go negative.
_COUNT_BOUNDS = {"max_tokens": (0, 2**31 - 1), "max_completion_tokens": (0, 2**31 - 1), "n": (1, 128)}


def _check_counts(req: ChatRequest) -> None:
    for name, (low, high) in _COUNT_BOUNDS.items():
        value = getattr(req, name)
        if value is not None and not low <= value <= high:
            raise bad_request(
                f"{name}: expected an integer between {low} and {high}, got {value}", param=name
            )


def embedding_request(body: dict[str, Any]) -> EmbeddingRequest:
    for name in ("model", "input"):
        if name not in body:
            raise bad_request(
                f"missing required parameter: {name!r}", param=name, code="missing_required_parameter"
            )
    try:
        return EmbeddingRequest.model_validate(body)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        raise bad_request(f"{field}: {error['msg']}", param=field) from None


def reply_bytes(reply: ChatCompletion) -> bytes:
    """The reply's wire body: the upstream's own bytes when it spoke this protocol, else the dump."""
    raw = reply._raw_body
    if raw is not None:
        return raw
    return reply.model_dump_json(exclude_unset=True).encode()


def chunk_bytes(chunk: ChatCompletionChunk) -> bytes:
    raw = chunk._raw_body
    body = raw if raw is not None else chunk.model_dump_json(exclude_unset=True).encode()
    return b"data: " + body + b"\n\n"
