"""OpenAI's chat-completions wire protocol: OpenAI itself and every OpenAI-compatible host.

The request body is the caller's body (the internal schema *is* this protocol), with the upstream
model name, the host's quirks applied (``HostProfile``) and Azure's deployment path when asked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pydantic

from gateway.core.errors import APIResponseValidationError, APIStatusError
from gateway.core.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    CompletionUsage,
    CreateEmbeddingResponse,
    EmbeddingRequest,
)
from providers.base import (
    Capabilities,
    HTTPRequestSpec,
    ServerSentEvent,
    StreamState,
    Target,
    decode_json,
    error_from_json_body,
)

NAME = "openai"

_M = TypeVar("_M", bound=pydantic.BaseModel)


def build_request(req: ChatRequest, target: Target) -> HTTPRequestSpec:
    body = req.body()
    body["model"] = target.model
    for name in target.profile.drops:
        body.pop(name, None)
    if target.profile.max_tokens_field == "max_completion_tokens" and "max_tokens" in body:
        body.setdefault("max_completion_tokens", body.pop("max_tokens"))
    return _spec(target, "chat/completions", body, stream=bool(req.stream))


def build_embeddings_request(req: EmbeddingRequest, target: Target) -> HTTPRequestSpec:
    body = req.body()
    body["model"] = target.model
    return _spec(target, "embeddings", body, stream=False)


def _spec(target: Target, path: str, body: dict[str, Any], *, stream: bool) -> HTTPRequestSpec:
    headers = dict(target.headers)
    params = dict(target.query)
    base = target.base_url.rstrip("/")
    if target.options.get("azure"):
        # Azure: /openai/deployments/{deployment}/{path}?api-version=…, key in the api-key header.
        base = f"{base}/openai/deployments/{target.model}"
        params.setdefault("api-version", str(target.options.get("api_version", "2024-10-21")))
    if target.api_key:
        if target.profile.auth_header == "authorization":
            headers["Authorization"] = f"Bearer {target.api_key}"
        else:
            headers[target.profile.auth_header] = target.api_key
    if stream and not any(name.lower() == "accept" for name in headers):
        headers["Accept"] = "text/event-stream"
    return HTTPRequestSpec("POST", f"{base}/{path}", headers, json=body, params=params, stream=stream)


def parse_response(status: int, headers: Mapping[str, str], body: bytes, target: Target) -> ChatCompletion:
    data = decode_json(body, target.provider)
    if isinstance(data, dict) and "error" in data and "choices" not in data:
        # Some compatible hosts (OpenRouter) put an upstream failure in a 200 body.
        raise _error_in_body(data, headers, target)
    return _validate(ChatCompletion, data, target)


def parse_embeddings_response(
    status: int, headers: Mapping[str, str], body: bytes, target: Target
) -> CreateEmbeddingResponse:
    return _validate(CreateEmbeddingResponse, decode_json(body, target.provider), target)


def _validate(model: type[_M], data: Any, target: Target) -> _M:
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise APIResponseValidationError(
            f"{target.provider}: malformed {model.__name__} from the upstream: {where}: {first['msg']}",
            body=data,
        ) from exc


@dataclass(slots=True)
class OpenAIStreamState(StreamState):
    target: Target
    want_usage: bool
    done: bool = False
    saw_usage: bool = False
    finished: set[int] = field(default_factory=set)
    started: set[int] = field(default_factory=set)


def new_stream(req: ChatRequest, target: Target) -> OpenAIStreamState:
    return OpenAIStreamState(target=target, want_usage=req.wants_usage_in_stream)


def parse_stream_event(event: ServerSentEvent, state: OpenAIStreamState) -> list[ChatCompletionChunk]:
    if event.data == "[DONE]":
        state.done = True
        return []
    if not event.data.strip():
        return []
    data = decode_json(event.data, state.target.provider)
    if isinstance(data, dict) and "error" in data and "choices" not in data:
        raise _error_in_body(data, {}, state.target)
    chunk = _validate(ChatCompletionChunk, data, state.target)
    chunk._raw_body = event.data.encode()  # this protocol is the wire format: relayed as received
    for choice in chunk.choices:
        state.started.add(choice.index)
        if choice.finish_reason is not None:
            state.finished.add(choice.index)
    if chunk.usage is not None:
        state.saw_usage = True
    return [chunk]


def end_stream(state: OpenAIStreamState) -> list[ChatCompletionChunk]:
    """The body ended. Without ``[DONE]`` it is complete only if every choice finished."""
    if state.done:
        return []
    complete = bool(state.started) and state.started <= state.finished
    if complete and (state.saw_usage or not state.want_usage):
        return []
    raise APIResponseValidationError(
        f"{state.target.provider}: the stream ended before it was complete (no [DONE], unfinished choices)",
        body=None,
    )


def map_error(status: int, headers: Mapping[str, str], body: bytes, target: Target) -> APIStatusError:
    error = error_from_json_body(status, headers, body)
    error.keep_document(body)  # this protocol is the caller's: relay the document with every field
    return error


def _error_in_body(data: dict[str, Any], headers: Mapping[str, str], target: Target) -> APIStatusError:
    error = data.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 502
    return error_from_json_body(status, headers, json.dumps(data).encode())


def capabilities(model: str) -> Capabilities:
    return Capabilities(embeddings=True, tokenizer="o200k_base" if _uses_o200k(model) else "cl100k_base")


def _uses_o200k(model: str) -> bool:
    return model.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4", "chatgpt-4o"))


# --- relayed endpoints (the Responses API, served natively by OpenAI and Azure) --------------------


def build_relay_request(
    body: Mapping[str, Any], target: Target, path: str, *, stream: bool
) -> HTTPRequestSpec:
    """``body`` as written, to ``path`` of the deployment, with the deployment's model and key."""
    return _spec(target, path, {**body, "model": target.model}, stream=stream)


def usage_from_response(data: Any) -> CompletionUsage | None:
    """The usage of a Responses ``Response`` object (``input_tokens``, ``output_tokens``, details)."""
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens")
    written = (usage.get("input_tokens_details") or {}).get("cache_write_tokens")
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
    return CompletionUsage.model_validate(
        {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": usage.get("total_tokens", prompt + completion),
            "prompt_tokens_details": {
                "cached_tokens": cached if isinstance(cached, int) else 0,
                **({"cache_write_tokens": written} if isinstance(written, int) else {}),
            },
            "completion_tokens_details": {"reasoning_tokens": reasoning if isinstance(reasoning, int) else 0},
        }
    )


def parse_relay_response(
    status: int, headers: Mapping[str, str], body: bytes, target: Target
) -> CompletionUsage | None:
    """Check a relayed JSON answer is an object; return its usage for metering."""
    data = decode_json(body, target.provider)
    if not isinstance(data, dict):
        raise APIResponseValidationError(
            f"{target.provider}: the upstream's answer is not a JSON object", body=None
        )
    return usage_from_response(data)


RELAY_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def relay_event_usage(event: ServerSentEvent, target: Target) -> tuple[bool, CompletionUsage | None]:
    """(is this the stream's final event, its usage): ``response.completed`` and its kin carry both."""
    name = event.event
    if name is None and '"type"' in event.data[:64]:
        data = decode_json(event.data, target.provider)
        name = data.get("type") if isinstance(data, dict) else None
    else:
        data = None
    if name == "error":
        data = decode_json(event.data, target.provider)
        raise _error_in_body(
            data if isinstance(data, dict) and "error" in data else {"error": data}, {}, target
        )
    if name not in RELAY_FINAL_EVENTS:
        return False, None
    if data is None:
        data = decode_json(event.data, target.provider)
    response = data.get("response") if isinstance(data, dict) else None
    return True, usage_from_response(response)
