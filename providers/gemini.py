"""Google's Gemini API (Generative Language, ``v1beta``), translated to and from OpenAI shapes.

Calls ``{base_url}/v1beta/models/{model}:generateContent``, ``:streamGenerateContent?alt=sse``,
``:embedContent`` and ``:batchEmbedContents`` with the key in ``x-goog-api-key``.

Request (``_gemini_request``): roles become ``user``/``model``, system and developer messages
``systemInstruction``, images ``inlineData`` (data URLs) or ``fileData`` (Files API and ``gs://``
URIs; any other http URL is refused with a message saying how to send it), tools
``functionDeclarations`` with their JSON Schema converted to Gemini's subset (``_gemini_schema``;
what it cannot express is refused naming the JSON path), ``tool_choice`` -> ``toolConfig``, and
``generationConfig`` (``temperature``, ``topP``, ``maxOutputTokens``, ``stopSequences``,
``candidateCount`` from ``n``, ``seed``, penalties, ``responseMimeType`` + ``responseSchema`` for
``json_schema``, ``responseMimeType`` alone for ``json_object``, ``thinkingConfig`` from
``reasoning_effort``).

Decisions:
- Tool calls: Gemini gives no id (newer models may): ids are synthesized from the response id and
  the call's position, so the same response always yields the same ids, streamed or not. A call's
  ``thoughtSignature`` (which Gemini 3 requires back) rides in the id after ``__thought__`` and is
  restored when the assistant turn is sent back. A tool message becomes a ``functionResponse``
  named after the earlier assistant tool call with that id, with ``{"result": <content>}``.
- A prompt blocked before generation (``promptFeedback.blockReason``, no candidates) is returned as
  one choice with ``content: None`` and ``finish_reason: "content_filter"``, not an error: the
  call succeeded and was billed for its prompt, and ``parse()`` raises
  ``ContentFilterFinishReasonError`` for it as for any filtered answer.
- Thought-summary parts (``thought: true``) are reasoning, not answer text: they become
  ``message.reasoning_content`` (``delta.reasoning_content`` when streaming); their tokens are in
  ``completion_tokens`` and ``completion_tokens_details.reasoning_tokens``.
- ``stream_usage(state)`` gives the stream's usage even when the caller did not ask for a usage chunk.
- Usage: ``prompt_tokens`` = prompt (+ tool-use prompt) tokens, cached ones included,
  ``prompt_tokens_details.cached_tokens`` = ``cachedContentTokenCount``, ``completion_tokens`` =
  ``candidatesTokenCount + thoughtsTokenCount``.
- ``logprobs``, ``logit_bias`` and ``parallel_tool_calls: false`` cannot be expressed: see
  ``unsupported_params``. ``user`` has no counterpart and is not sent.
- Embeddings: Gemini reports no token usage for them, so ``usage`` is 0 (not authoritative), and
  vectors come back as floats whatever ``encoding_format`` says.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.core.errors import APIResponseValidationError, APIStatusError
from gateway.core.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    CompletionUsage,
    CreateEmbeddingResponse,
    Embedding,
    EmbeddingRequest,
    EmbeddingUsage,
)
from providers._gemini_request import request_body
from providers._gemini_request import unsupported_params as _unsupported
from providers._gemini_response import completion, error_of
from providers._gemini_stream import GeminiStreamState, final_usage, finish, on_event
from providers._translate import arr, check_supported, guarded, invalid_request, obj
from providers.base import Capabilities, HTTPRequestSpec, ServerSentEvent, Target, decode_json

__all__ = [
    "NAME",
    "GeminiStreamState",
    "build_embeddings_request",
    "build_request",
    "capabilities",
    "end_stream",
    "map_error",
    "new_stream",
    "parse_embeddings_response",
    "parse_response",
    "parse_stream_event",
    "stream_usage",
    "unsupported_params",
]

NAME = "gemini"


def unsupported_params(req: ChatRequest) -> list[str]:
    """Name the parameters of ``req`` that Gemini cannot express.

    Args:
        req: The OpenAI-shaped request.

    Returns:
        Parameter names, in a stable order; empty when the request translates fully.
    """
    return _unsupported(req)


def build_request(req: ChatRequest, target: Target) -> HTTPRequestSpec:
    """Translate ``req`` into a ``generateContent`` (or streaming) call for ``target``.

    Args:
        req: The OpenAI-shaped request.
        target: The deployment (base URL, key, upstream model, options).

    Returns:
        The HTTP request to send.

    Raises:
        UnsupportedParameterError: ``req`` uses a parameter or schema Gemini cannot express.
        BadRequestError: a message or tool cannot be translated (the message names the field).
    """
    drop = bool(target.options.get("drop_unsupported_params"))
    check_supported(req, "Gemini", _unsupported(req), drop=drop)
    body = request_body(req)
    params = dict(target.query)
    if req.stream:
        params["alt"] = "sse"
        return _spec(target, "streamGenerateContent", body, params, stream=True)
    return _spec(target, "generateContent", body, params, stream=False)


def _model_path(model: str) -> str:
    return model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"


def _spec(
    target: Target, method: str, body: dict[str, Any], params: dict[str, str], *, stream: bool
) -> HTTPRequestSpec:
    headers = dict(target.headers)
    if target.api_key:
        headers["x-goog-api-key"] = target.api_key
    if stream:
        headers["accept"] = "text/event-stream"
    url = f"{target.base_url.rstrip('/')}/v1beta/{_model_path(target.model)}:{method}"
    return HTTPRequestSpec("POST", url, headers, json=body, params=params, stream=stream)


def parse_response(status: int, headers: Mapping[str, str], body: bytes, target: Target) -> ChatCompletion:
    """Translate a ``GenerateContentResponse`` into a ``ChatCompletion``.

    Raises:
        APIResponseValidationError: the body is not a well-formed response.
    """
    data = decode_json(body, target.provider)
    result: ChatCompletion = guarded(target.provider, data, lambda: completion(data, target))
    return result


def new_stream(req: ChatRequest, target: Target) -> GeminiStreamState:
    """Start the parser state for one streamed response."""
    return GeminiStreamState.for_request(req, target)


def parse_stream_event(event: ServerSentEvent, state: GeminiStreamState) -> list[ChatCompletionChunk]:
    """Translate one ``alt=sse`` event into zero or more chunks.

    Raises:
        APIStatusError: the event is an error object.
        APIResponseValidationError: the event is not a well-formed response piece.
    """
    if not event.data.strip():
        return []
    data = decode_json(event.data, state.target.provider)
    chunks: list[ChatCompletionChunk] = guarded(state.target.provider, data, lambda: on_event(data, state))
    return chunks


def end_stream(state: GeminiStreamState) -> list[ChatCompletionChunk]:
    """The body ended: raise if a candidate never finished; else the usage chunk, if asked for."""
    chunks: list[ChatCompletionChunk] = guarded(state.target.provider, None, lambda: finish(state))
    return chunks


def stream_usage(state: GeminiStreamState) -> CompletionUsage | None:
    """The upstream's usage for a stream, read from the parser state.

    Reported by the provider in every stream, whether or not the caller asked for
    ``stream_options.include_usage``: the gateway can meter from it without a usage chunk.
    """
    return final_usage(state)


def map_error(status: int, headers: Mapping[str, str], body: bytes, target: Target) -> APIStatusError:
    """The error for an HTTP error response: class by status, message ``Error code: N - <message>``."""
    return error_of(status, headers, body)


def build_embeddings_request(req: EmbeddingRequest, target: Target) -> HTTPRequestSpec:
    """One input -> ``embedContent``; several -> ``batchEmbedContents``.

    Raises:
        BadRequestError: the input is token ids (Gemini embeds text only).
    """
    try:
        texts = req.texts()
    except ValueError as exc:
        raise invalid_request(f"input: Gemini embeds text only ({exc})", param="input") from None
    model = _model_path(target.model)
    extra = dict(req.model_extra or {})
    requests = [_embed_one(model, value, req.dimensions, extra) for value in texts]
    if isinstance(req.input, str):
        return _spec(target, "embedContent", requests[0], dict(target.query), stream=False)
    return _spec(target, "batchEmbedContents", {"requests": requests}, dict(target.query), stream=False)


def _embed_one(model: str, value: str, dimensions: int | None, extra: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {"model": model, "content": {"parts": [{"text": value}]}}
    if dimensions is not None:
        request["outputDimensionality"] = dimensions
    task = extra.get("task_type", extra.get("taskType"))
    if task is not None:
        request["taskType"] = task
    return request


def parse_embeddings_response(
    status: int, headers: Mapping[str, str], body: bytes, target: Target
) -> CreateEmbeddingResponse:
    """Translate ``embedContent``/``batchEmbedContents`` output into OpenAI's embeddings list."""
    data = decode_json(body, target.provider)
    result: CreateEmbeddingResponse = guarded(target.provider, data, lambda: _embeddings(data, target))
    return result


def _embeddings(data: Any, target: Target) -> CreateEmbeddingResponse:
    body = obj(data, "body")
    if "embedding" in body:
        vectors = [obj(body["embedding"], "embedding")]
    else:
        vectors = [
            obj(v, f"embeddings[{i}]") for i, v in enumerate(arr(body.get("embeddings"), "embeddings"))
        ]
    data_out = []
    for i, vector in enumerate(vectors):
        values = arr(vector.get("values"), f"embeddings[{i}].values")
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            raise APIResponseValidationError(
                f"{target.provider}: malformed embeddings[{i}].values: expected numbers", body=data
            )
        data_out.append(Embedding(index=i, embedding=[float(v) for v in values]))
    usage = EmbeddingUsage(prompt_tokens=0, total_tokens=0)
    return CreateEmbeddingResponse(data=data_out, model=target.model, usage=usage)


def capabilities(model: str) -> Capabilities:
    """What Gemini models can do through this protocol.

    Chat usage is authoritative (reported by Gemini); embedding usage is not reported. Gemini's
    tokenizer is not public; prompts are estimated with ``cl100k_base``, which is approximate.
    """
    embeds = "embedding" in model
    return Capabilities(
        tools=not embeds,
        vision=not embeds,
        json_schema=not embeds,
        streaming=not embeds,
        embeddings=embeds,
        n=True,
        logprobs=False,
        usage_authoritative=not embeds,
        tokenizer="cl100k_base",
    )
