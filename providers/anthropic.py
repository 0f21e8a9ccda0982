"""Anthropic's Messages API (``POST {base_url}/v1/messages``), translated to and from OpenAI shapes.

Request (``_anthropic_request``): system and developer messages are lifted to ``system`` (several
joined in order with a blank line), consecutive turns of one role are merged, images become image
blocks (base64 data URLs and http URLs), tools, ``tool_choice`` (``required`` -> ``any``, a named
function -> ``tool``) and ``parallel_tool_calls: false`` (-> ``disable_parallel_tool_use``),
assistant ``tool_calls`` become ``tool_use`` blocks and tool messages ``tool_result`` blocks (several
results in one user turn), ``stop`` -> ``stop_sequences``, ``user`` -> ``metadata.user_id``.
``max_tokens`` is required by Anthropic: when the caller gives none it comes from
``target.options["default_max_tokens"]``, else from a small per-model table.

Decisions:
- ``response_format: json_schema`` uses Anthropic's native structured outputs
  (``output_config.format``), so the JSON arrives as ordinary text, streams as text deltas, and a
  caller's own tools are untouched. ``json_object`` has no native form: an instruction is appended
  to ``system``.
- Tool ids are kept, mapped into Anthropic's ``[a-zA-Z0-9_-]`` alphabet when another provider made
  them (the same mapping on ``tool_use`` and ``tool_result``, so a conversation still pairs up).
- Parameters Anthropic cannot express (``n > 1``, ``logprobs``, ``logit_bias``, penalties, ``seed``,
  ...) raise ``UnsupportedParameterError`` from ``build_request`` before any call, unless
  ``target.options["drop_unsupported_params"]`` is true; ``unsupported_params(req)`` names them so
  the gateway can record what it dropped. Gateway-side fields (``metadata``, ``store``,
  ``service_tier``, ``prompt_cache_key``) are not sent.
- Thinking blocks are kept on the message as ``reasoning_content`` (text) and ``thinking_blocks``
  (the blocks with their signatures); an assistant message that carries ``thinking_blocks`` sends
  them back first, as Anthropic requires in a thinking turn with tool use. Streams carry the
  thinking text as ``delta.reasoning_content``. Server-tool blocks are left out.
- ``stream_usage(state)`` gives the stream's usage even when the caller did not ask for a usage chunk.
- Usage: ``prompt_tokens = input_tokens + cache_read_input_tokens + cache_creation_input_tokens``
  and ``prompt_tokens_details.cached_tokens`` = the cache reads, so cost is computed right.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.core.errors import APIResponseValidationError, APIStatusError, BadRequestError
from gateway.core.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    CompletionUsage,
    CreateEmbeddingResponse,
    EmbeddingRequest,
)
from providers._anthropic_request import default_max_tokens, request_body
from providers._anthropic_request import unsupported_params as _unsupported
from providers._anthropic_response import completion, error_of
from providers._anthropic_stream import AnthropicStreamState, final_usage, on_event
from providers._translate import check_supported, guarded, invalid_request, obj
from providers.base import Capabilities, HTTPRequestSpec, ServerSentEvent, Target, decode_json

__all__ = [
    "NAME",
    "AnthropicStreamState",
    "build_embeddings_request",
    "build_request",
    "capabilities",
    "default_max_tokens",
    "end_stream",
    "map_error",
    "new_stream",
    "parse_embeddings_response",
    "parse_response",
    "parse_stream_event",
    "stream_usage",
    "unsupported_params",
]

NAME = "anthropic"
ANTHROPIC_VERSION = "2023-06-01"


def unsupported_params(req: ChatRequest) -> list[str]:
    """Name the parameters of ``req`` that Anthropic cannot express.

    Args:
        req: The OpenAI-shaped request.

    Returns:
        Parameter names, in a stable order; empty when the request translates fully.
    """
    return _unsupported(req)


def build_request(req: ChatRequest, target: Target) -> HTTPRequestSpec:
    """Translate ``req`` into a Messages API call for ``target``.

    Args:
        req: The OpenAI-shaped request.
        target: The deployment (base URL, key, upstream model, options).

    Returns:
        The HTTP request to send.

    Raises:
        UnsupportedParameterError: ``req`` uses a parameter Anthropic cannot express.
        BadRequestError: a message or tool cannot be translated (the message names the field).
    """
    drop = bool(target.options.get("drop_unsupported_params"))
    check_supported(req, "Anthropic", _unsupported(req), drop=drop)
    default = target.options.get("default_max_tokens")
    body = request_body(req, target.model, int(default) if default else None)
    headers = {"anthropic-version": str(target.options.get("anthropic_version", ANTHROPIC_VERSION))}
    headers.update(target.headers)
    if target.api_key:
        headers["x-api-key"] = target.api_key
    if req.stream:
        headers["accept"] = "text/event-stream"
    url = f"{target.base_url.rstrip('/')}/v1/messages"
    return HTTPRequestSpec(
        "POST", url, headers, json=body, params=dict(target.query), stream=bool(req.stream)
    )


def parse_response(status: int, headers: Mapping[str, str], body: bytes, target: Target) -> ChatCompletion:
    """Translate a Messages API response body into a ``ChatCompletion``.

    Raises:
        APIResponseValidationError: the body is not a well-formed message.
    """
    data = decode_json(body, target.provider)
    result: ChatCompletion = guarded(target.provider, data, lambda: completion(data, target))
    return result


def new_stream(req: ChatRequest, target: Target) -> AnthropicStreamState:
    """Start the parser state for one streamed response."""
    return AnthropicStreamState.for_request(req, target)


def parse_stream_event(event: ServerSentEvent, state: AnthropicStreamState) -> list[ChatCompletionChunk]:
    """Translate one server-sent event into zero or more chunks.

    Raises:
        APIStatusError: an ``error`` event (``overloaded_error`` -> ``OverloadedError``, 529).
        APIResponseValidationError: the event is not valid Messages-stream JSON.
    """
    if not event.data.strip():
        return []
    data = decode_json(event.data, state.target.provider)
    chunks: list[ChatCompletionChunk] = guarded(
        state.target.provider, data, lambda: on_event(obj(data, "event"), state)
    )
    return chunks


def end_stream(state: AnthropicStreamState) -> list[ChatCompletionChunk]:
    """The body ended: complete only after ``message_stop``."""
    if state.done:
        return []
    raise APIResponseValidationError(
        f"{state.target.provider}: the stream ended before message_stop (the response is incomplete)",
        body=None,
    )


def stream_usage(state: AnthropicStreamState) -> CompletionUsage | None:
    """The upstream's usage for a stream, read from the parser state.

    Reported by the provider in every stream, whether or not the caller asked for
    ``stream_options.include_usage``: the gateway can meter from it without a usage chunk.
    """
    return final_usage(state)


def map_error(status: int, headers: Mapping[str, str], body: bytes, target: Target) -> APIStatusError:
    """The error for an HTTP error response: class by status, message ``Error code: N - <message>``."""
    return error_of(status, headers, body)


def build_embeddings_request(req: EmbeddingRequest, target: Target) -> HTTPRequestSpec:
    """Anthropic has no embeddings endpoint.

    Raises:
        BadRequestError: always, before any network call, saying so.
    """
    raise _no_embeddings(target)


def parse_embeddings_response(
    status: int, headers: Mapping[str, str], body: bytes, target: Target
) -> CreateEmbeddingResponse:
    """Anthropic has no embeddings endpoint; see ``build_embeddings_request``."""
    raise _no_embeddings(target)


def _no_embeddings(target: Target) -> BadRequestError:
    return invalid_request(
        f"{target.provider}: Anthropic has no embeddings API; route embeddings to an OpenAI-compatible "
        "or Gemini model",
        param="model",
    )


def capabilities(model: str) -> Capabilities:
    """What Anthropic models can do through this protocol.

    Usage is authoritative (reported by Anthropic). Anthropic publishes no tokenizer; prompts are
    estimated with ``cl100k_base``, which is approximate.
    """
    return Capabilities(
        tools=True,
        vision=True,
        json_schema=True,
        streaming=True,
        embeddings=False,
        n=False,
        logprobs=False,
        usage_authoritative=True,
        tokenizer="cl100k_base",
    )
