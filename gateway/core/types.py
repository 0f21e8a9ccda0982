"""The one internal schema: OpenAI chat-completions shapes, requests and responses.

Every provider translates to and from these models at its boundary; nothing else in the code knows
a provider's wire format. Response models mirror the openai SDK's field names, nesting and
optionality, keep unknown upstream fields (``extra="allow"``) and offer the SDK's ``to_dict`` and
``to_json`` helpers. Request models validate what callers send but keep unknown fields too, so a
parameter this version does not know still reaches the upstream unchanged.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import pydantic
from pydantic import ConfigDict, Field, PrivateAttr

__all__ = [
    "NOT_GIVEN",
    "BaseModel",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatRequest",
    "Choice",
    "ChoiceDelta",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "ChoiceLogprobs",
    "ChunkChoice",
    "CompletionTokensDetails",
    "CompletionUsage",
    "CreateEmbeddingResponse",
    "Embedding",
    "EmbeddingRequest",
    "EmbeddingUsage",
    "FinishReason",
    "Function",
    "ChatCompletionMessage",
    "ChatCompletionMessageToolCall",
    "GatewayInfo",
    "AttemptInfo",
    "Model",
    "NotGiven",
    "Omit",
    "PromptTokensDetails",
    "not_given",
    "omit",
]


class NotGiven:
    """Sentinel for "argument not passed", distinct from ``None`` (``timeout=None`` means no timeout)."""

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


class Omit:
    """Sentinel that removes a default header or field, as the openai SDK's ``omit`` does."""

    def __bool__(self) -> Literal[False]:
        return False

    def __repr__(self) -> str:
        return "omit"


NOT_GIVEN = NotGiven()
not_given = NOT_GIVEN
omit = Omit()

FinishReason: TypeAlias = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class BaseModel(pydantic.BaseModel):
    """Base of every response model: keeps unknown fields, dumps like the openai SDK."""

    # defer_build: schemas are built on first use, not at `import gateway` (tens of ms saved).
    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=(), defer_build=True)

    def to_dict(
        self,
        *,
        mode: Literal["json", "python"] = "python",
        use_api_names: bool = True,
        exclude_unset: bool = True,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
        warnings: bool = True,
    ) -> dict[str, object]:
        """Return the model as a dict, by default only with the fields the API set."""
        return self.model_dump(
            mode=mode,
            by_alias=use_api_names,
            exclude_unset=exclude_unset,
            exclude_defaults=exclude_defaults,
            exclude_none=exclude_none,
            warnings=warnings,
        )

    def to_json(
        self,
        *,
        indent: int | None = 2,
        use_api_names: bool = True,
        exclude_unset: bool = True,
        exclude_defaults: bool = False,
        exclude_none: bool = False,
        warnings: bool = True,
    ) -> str:
        """Return the model as a JSON string, by default only with the fields the API set."""
        return self.model_dump_json(
            indent=indent,
            by_alias=use_api_names,
            exclude_unset=exclude_unset,
            exclude_defaults=exclude_defaults,
            exclude_none=exclude_none,
            warnings=warnings,
        )


# --- usage ---------------------------------------------------------------------------------------


class PromptTokensDetails(BaseModel):
    audio_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None  # prompt tokens written to the provider's cache (openai's name)
    # Of ``cache_write_tokens``, those written with a 1-hour TTL (Anthropic bills them 2x input, the
    # 5-minute ones 1.25x). Not an openai field: set only where the upstream reports the split.
    cache_write_1h_tokens: int | None = None


class CompletionTokensDetails(BaseModel):
    accepted_prediction_tokens: int | None = None
    audio_tokens: int | None = None
    reasoning_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class CompletionUsage(BaseModel):
    completion_tokens: int
    prompt_tokens: int
    total_tokens: int
    completion_tokens_details: CompletionTokensDetails | None = None
    prompt_tokens_details: PromptTokensDetails | None = None


# --- non-streaming response ----------------------------------------------------------------------


class Function(BaseModel):
    arguments: str
    name: str
    # Set only by ``chat.completions.parse`` for strict tools; excluded from dumps.
    parsed_arguments: Any = Field(default=None, exclude=True)


class ChatCompletionMessageToolCall(BaseModel):
    id: str
    function: Function
    type: Literal["function"] = "function"


class TopLogprob(BaseModel):
    token: str
    bytes: list[int] | None = None
    logprob: float


class ChatCompletionTokenLogprob(BaseModel):
    token: str
    bytes: list[int] | None = None
    logprob: float
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[ChatCompletionTokenLogprob] | None = None
    refusal: list[ChatCompletionTokenLogprob] | None = None


class ChatCompletionMessage(BaseModel):
    content: str | None = None
    refusal: str | None = None
    role: Literal["assistant"] = "assistant"
    annotations: list[dict[str, Any]] | None = None
    audio: dict[str, Any] | None = None
    function_call: Function | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None
    # Set only by ``chat.completions.parse``; excluded from dumps like the SDK's ParsedChatCompletion.
    parsed: Any = Field(default=None, exclude=True)


class Choice(BaseModel):
    finish_reason: FinishReason | None = None
    index: int
    logprobs: ChoiceLogprobs | None = None
    message: ChatCompletionMessage


class AttemptInfo(BaseModel):
    """One try of one candidate, as ``reply.gateway.attempts`` lists it."""

    provider: str
    model: str
    outcome: str  # "ok", or the error class name
    status_code: int | None = None
    duration_s: float
    error: str | None = None
    used_tokens: bool = False


class GatewayInfo(BaseModel):
    """What the gateway did for one reply: who served it, what it cost, and why."""

    provider: str
    model: str
    route: str | None = None
    attempts: list[AttemptInfo] = Field(default_factory=list)
    latency_s: float | None = None
    ttft_s: float | None = None
    cost_usd: str | None = None  # a Decimal as a string, exact
    reason: str | None = None
    dropped_params: list[str] = Field(default_factory=list)
    usage_estimated: bool = False


class _WithGateway(BaseModel):
    """Carries ``.gateway`` as a private attribute, so dumps stay identical to the SDK's."""

    _gateway: GatewayInfo | None = PrivateAttr(default=None)
    _http_response: Any = PrivateAttr(default=None)
    _raw_body: bytes | None = PrivateAttr(default=None)  # the upstream's bytes, when already this wire format

    @property
    def gateway(self) -> GatewayInfo | None:
        """Gateway metadata: provider, upstream model, attempts, latency and cost."""
        return self._gateway


class ChatCompletion(_WithGateway):
    id: str
    choices: list[Choice]
    created: int
    model: str
    object: Literal["chat.completion"] = "chat.completion"
    service_tier: str | None = None
    system_fingerprint: str | None = None
    usage: CompletionUsage | None = None


# --- streaming -----------------------------------------------------------------------------------


class ChoiceDeltaToolCallFunction(BaseModel):
    arguments: str | None = None
    name: str | None = None


class ChoiceDeltaToolCall(BaseModel):
    index: int
    id: str | None = None
    function: ChoiceDeltaToolCallFunction | None = None
    type: Literal["function"] | None = None


class ChoiceDelta(BaseModel):
    content: str | None = None
    function_call: ChoiceDeltaToolCallFunction | None = None
    refusal: str | None = None
    role: Literal["developer", "system", "user", "assistant", "tool"] | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None


class ChunkChoice(BaseModel):
    delta: ChoiceDelta
    finish_reason: FinishReason | None = None
    index: int
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(_WithGateway):
    id: str
    choices: list[ChunkChoice]
    created: int
    model: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    service_tier: str | None = None
    system_fingerprint: str | None = None
    usage: CompletionUsage | None = None


# --- embeddings and models -----------------------------------------------------------------------


class Embedding(BaseModel):
    embedding: list[float] | str
    index: int
    object: Literal["embedding"] = "embedding"


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class CreateEmbeddingResponse(_WithGateway):
    data: list[Embedding]
    model: str
    object: Literal["list"] = "list"
    usage: EmbeddingUsage


class Model(BaseModel):
    id: str
    created: int = 0
    object: Literal["model"] = "model"
    owned_by: str = "system"


# --- requests ------------------------------------------------------------------------------------


class _RequestModel(pydantic.BaseModel):
    # Unknown fields are kept: a new API parameter must reach the upstream unchanged.
    model_config = ConfigDict(extra="allow", protected_namespaces=(), defer_build=True)


class ChatRequest(_RequestModel):
    """A chat-completions request: the gateway's lingua franca.

    ``messages`` stay plain dicts in the OpenAI shape, validated for the fields every provider
    needs (``role``; ``content`` shape) by ``validate_messages``, so that messages reach an
    OpenAI-compatible upstream byte-for-byte as the caller wrote them.
    """

    model: str
    messages: list[dict[str, Any]]
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    n: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, int] | None = None
    user: str | None = None
    metadata: dict[str, str] | None = None
    reasoning_effort: str | None = None
    store: bool | None = None
    service_tier: str | None = None
    modalities: list[str] | None = None
    prediction: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    verbosity: str | None = None
    prompt_cache_key: str | None = None
    safety_identifier: str | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None

    # Set when the caller's values failed validation: OpenAI-compatible upstreams still get the body
    # as written (their 400 is the answer); other protocols refuse it before any call.
    _invalid: str | None = PrivateAttr(default=None)

    @pydantic.field_validator("messages")
    @classmethod
    def _check_messages(cls, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        validate_messages(messages)
        return messages

    def body(self) -> dict[str, Any]:
        """The request as the OpenAI wire body: only the fields the caller set, values as given."""
        return self.model_dump(exclude_unset=True, warnings=False)

    @property
    def max_output_tokens(self) -> int | None:
        """``max_completion_tokens`` if given, else ``max_tokens``."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def wants_usage_in_stream(self) -> bool:
        return bool(self.stream_options and self.stream_options.get("include_usage"))


_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


def validate_messages(messages: list[dict[str, Any]]) -> None:
    """Check the parts of ``messages`` that translation relies on; raise ``ValueError`` naming the field."""
    if not messages:
        raise ValueError("messages must contain at least one message")
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in _ROLES:
            raise ValueError(f"messages[{i}].role: expected one of {sorted(_ROLES)}, got {role!r}")
        content = message.get("content")
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, list):
            raise ValueError(f"messages[{i}].content: expected a string or a list of content parts")
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise ValueError(f"messages[{i}].content[{j}]: expected an object with a 'type'")


class EmbeddingRequest(_RequestModel):
    model: str
    input: str | list[str] | list[int] | list[list[int]]
    dimensions: int | None = None
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None

    def body(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)

    def texts(self) -> list[str]:
        """The inputs as a list of strings (token-id inputs are not text and raise ``ValueError``)."""
        if isinstance(self.input, str):
            return [self.input]
        if all(isinstance(item, str) for item in self.input):
            return [str(item) for item in self.input]
        raise ValueError("input: token-id arrays are only accepted by OpenAI-compatible providers")
