"""What every provider module shares: the values that cross the sans-I/O boundary.

A provider module is pure translation. It exposes these functions and opens no socket:

```
build_request(req: ChatRequest, target: Target) -> HTTPRequestSpec
parse_response(status, headers, body: bytes, target) -> ChatCompletion
new_stream(req, target) -> StreamState                  per-stream state the parser keeps
parse_stream_event(event: ServerSentEvent, state) -> list[ChatCompletionChunk]
end_stream(state) -> list[ChatCompletionChunk]          the body ended; raise if it ended early
map_error(status, headers, body: bytes, target) -> APIStatusError
capabilities(model: str) -> Capabilities
build_embeddings_request(req: EmbeddingRequest, target) -> HTTPRequestSpec      (optional)
parse_embeddings_response(status, headers, body, target) -> CreateEmbeddingResponse
```

The transport (``gateway/transport.py``) sends the spec, feeds the bytes back, attaches the
``httpx`` request and response to errors, and owns retries and fallback.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.core.errors import APIResponseValidationError, APIStatusError, make_status_error
from gateway.core.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    CreateEmbeddingResponse,
    EmbeddingRequest,
)

__all__ = [
    "Capabilities",
    "HTTPRequestSpec",
    "HostProfile",
    "ProviderModule",
    "ServerSentEvent",
    "StreamState",
    "Target",
    "decode_json",
    "error_from_json_body",
    "loads",
]


@dataclass(frozen=True, slots=True)
class HostProfile:
    """Quirks of an OpenAI-compatible host: what it accepts beyond (or short of) OpenAI's API."""

    supports_stream_usage: bool = True
    supports_n: bool = True
    supports_logprobs: bool = True
    max_tokens_field: str = "max_tokens"  # OpenAI reasoning models want "max_completion_tokens"
    auth_header: str = "authorization"  # Azure: "api-key"
    drops: frozenset[str] = frozenset()  # parameters the host rejects and we strip


@dataclass(frozen=True, slots=True)
class Target:
    """One deployment to call: which protocol, where, with which key and upstream model name."""

    provider: str  # the deployment's name: "openai", "groq", "anthropic", a policy's provider key
    kind: str  # the wire protocol module: "openai", "anthropic", "gemini", "local"
    base_url: str
    model: str  # the upstream model name
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    profile: HostProfile = field(default_factory=HostProfile)
    options: Mapping[str, Any] = field(default_factory=dict)  # e.g. Azure's api_version, Anthropic's version

    def __repr__(self) -> str:
        return f"Target(provider={self.provider!r}, kind={self.kind!r}, base_url={self.base_url!r}, model={self.model!r})"


@dataclass(frozen=True, slots=True)
class HTTPRequestSpec:
    """An HTTP request to send, described without sending it."""

    method: str
    url: str
    headers: Mapping[str, str]
    json: Any = None
    params: Mapping[str, str] = field(default_factory=dict)
    stream: bool = False


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One event of a ``text/event-stream`` body."""

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None


@dataclass(frozen=True, slots=True)
class Capabilities:
    tools: bool = True
    vision: bool = True
    json_schema: bool = True
    streaming: bool = True
    embeddings: bool = False
    n: bool = True
    logprobs: bool = True
    # Whether the provider's reported usage is authoritative, and which tokenizer estimates prompts.
    usage_authoritative: bool = True
    tokenizer: str = "cl100k_base"


class StreamState:
    """Base for per-stream parser state; each provider subclasses it."""

    done: bool = False


class ProviderModule(Protocol):
    """The functions a provider module exposes (modules satisfy it structurally)."""

    NAME: str

    def build_request(self, req: ChatRequest, target: Target) -> HTTPRequestSpec: ...

    def parse_response(
        self, status: int, headers: Mapping[str, str], body: bytes, target: Target
    ) -> ChatCompletion: ...

    def new_stream(self, req: ChatRequest, target: Target) -> StreamState: ...

    def parse_stream_event(self, event: ServerSentEvent, state: Any) -> list[ChatCompletionChunk]: ...

    def end_stream(self, state: Any) -> list[ChatCompletionChunk]: ...

    def map_error(
        self, status: int, headers: Mapping[str, str], body: bytes, target: Target
    ) -> APIStatusError: ...

    def capabilities(self, model: str) -> Capabilities: ...

    def build_embeddings_request(self, req: EmbeddingRequest, target: Target) -> HTTPRequestSpec: ...

    def parse_embeddings_response(
        self, status: int, headers: Mapping[str, str], body: bytes, target: Target
    ) -> CreateEmbeddingResponse: ...


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def loads(body: bytes | str) -> Any:
    """``json.loads`` for upstream bytes: every way it can fail is a ``ValueError``.

    Deep nesting (``RecursionError``), invalid UTF-8 (``UnicodeDecodeError``), integers past
    Python's digit limit and ``NaN``/``Infinity`` (which strict JSON does not have, and which would
    poison token counts and prices) all become ``ValueError``, so callers handle one class.
    """
    try:
        return json.loads(body, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("the JSON nests too deeply") from None
    except (OverflowError, UnicodeDecodeError) as exc:
        raise ValueError(str(exc)) from None


def decode_json(body: bytes | str, provider: str) -> Any:
    """Decode a JSON body, raising ``APIResponseValidationError`` naming the provider when it is not JSON."""
    try:
        return loads(body)
    except ValueError as exc:
        preview = body[:200] if isinstance(body, str) else body[:200].decode("utf-8", "replace")
        raise APIResponseValidationError(
            f"{provider}: the upstream returned a body that is not valid JSON ({exc}): {preview!r}", body=None
        ) from None


def error_from_json_body(status: int, headers: Mapping[str, str], body: bytes) -> APIStatusError:
    """The openai SDK's rule: message ``Error code: N - <error.message>``, ``.body`` the inner ``error``."""
    text = body.decode("utf-8", "replace").strip() if body else ""
    message = f"Error code: {status}"
    parsed: Any = text or None
    try:
        parsed = loads(text)
    except ValueError:
        return make_status_error(status, message, body=parsed, headers=headers)
    inner = parsed.get("error", parsed) if isinstance(parsed, dict) else parsed
    detail = inner.get("message") if isinstance(inner, dict) else None
    if isinstance(detail, str) and detail:
        message += f" - {detail}"
    return make_status_error(status, message, body=inner, headers=headers)
