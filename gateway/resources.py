"""The resource objects of the client: ``chat.completions``, ``embeddings``, ``models``.

Parameters are checked against the chat-completions API's names (``ChatParams``): an unknown keyword
raises ``TypeError`` as the SDK does; values are not second-guessed for OpenAI-compatible upstreams,
so the upstream's own 400 comes back as ``BadRequestError`` with its body.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Required, TypedDict

import httpx
import pydantic

from gateway import transport
from gateway.attempts import AttemptRecord, Plan, StreamInfo
from gateway.streaming import AsyncStream, Stream
from gateway.structured import parse_choices, type_to_response_format
from gateway.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    CreateEmbeddingResponse,
    EmbeddingRequest,
    Model,
    NotGiven,
    Omit,
)

if TYPE_CHECKING:
    from gateway.client import AsyncOpenAI, OpenAI
    from gateway.guard import Admission


class ChatParams(TypedDict, total=False):
    """Every parameter of ``chat.completions.create`` (the API's, then the SDK's per-call options)."""

    messages: Required[list[dict[str, Any]]]
    model: Required[str]
    audio: Any
    frequency_penalty: float | None
    function_call: Any
    functions: Any
    logit_bias: dict[str, int] | None
    logprobs: bool | None
    max_completion_tokens: int | None
    max_tokens: int | None
    metadata: dict[str, str] | None
    modalities: list[str] | None
    n: int | None
    parallel_tool_calls: bool
    prediction: Any
    presence_penalty: float | None
    prompt_cache_key: str
    reasoning_effort: str | None
    response_format: Any
    safety_identifier: str
    seed: int | None
    service_tier: str | None
    stop: str | list[str] | None
    store: bool | None
    stream: bool | None
    stream_options: dict[str, Any] | None
    temperature: float | None
    tool_choice: Any
    tools: list[dict[str, Any]]
    top_logprobs: int | None
    top_p: float | None
    user: str
    verbosity: str | None
    web_search_options: Any
    extra_headers: dict[str, str] | None
    extra_query: dict[str, object] | None
    extra_body: dict[str, object] | None
    timeout: float | httpx.Timeout | None | NotGiven


_CHAT_PARAMS = frozenset(ChatParams.__annotations__)
_CALL_OPTIONS = frozenset({"extra_headers", "extra_query", "extra_body", "timeout"})


class CallOptions:
    __slots__ = ("headers", "timeout", "query")

    def __init__(self, headers: dict[str, str], timeout: Any, query: dict[str, str]) -> None:
        self.headers, self.timeout, self.query = headers, timeout, query


def split_params(
    method: str, params: dict[str, Any], allowed: frozenset[str], default_timeout: Any
) -> tuple[dict[str, Any], CallOptions]:
    """Drop NOT_GIVEN/omit values, reject unknown names with ``TypeError``, merge ``extra_body``."""
    for name in params:
        if name not in allowed:
            raise TypeError(f"{method}() got an unexpected keyword argument '{name}'")
    body = {k: v for k, v in params.items() if k not in _CALL_OPTIONS and not isinstance(v, NotGiven | Omit)}
    body.update(params.get("extra_body") or {})
    timeout = params.get("timeout", default_timeout)
    headers = {k: str(v) for k, v in (params.get("extra_headers") or {}).items() if not isinstance(v, Omit)}
    query = {k: str(v) for k, v in (params.get("extra_query") or {}).items()}
    return body, CallOptions(headers, default_timeout if isinstance(timeout, NotGiven) else timeout, query)


def chat_request(body: dict[str, Any]) -> ChatRequest:
    missing = [name for name in ("model", "messages") if name not in body]
    if missing:
        raise TypeError(f"create() missing required keyword arguments: {', '.join(repr(m) for m in missing)}")
    try:
        return ChatRequest.model_validate(body)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(p) for p in error["loc"])
        req = ChatRequest.model_construct(**body)
        req._invalid = f"{field}: {error['msg']}"
        return req


class Completions:
    def __init__(self, client: OpenAI) -> None:
        self._client = client
        self.with_raw_response = RawCompletions(self)

    def create(self, **params: Any) -> ChatCompletion | Stream:
        body, options = split_params("create", params, _CHAT_PARAMS, self._client.timeout)
        req = chat_request(body)
        client = self._client
        plan = client._planner.plan(req.model, req)
        headers = {**options.headers}
        admission = None
        if client._guard is not None:
            admission, plan = admit(client, req, plan)
        if req.stream:
            info = StreamInfo()
            iterator = client._executor.stream(
                req, plan, headers=headers, timeout=options.timeout, holder=info
            )
            if admission is not None:
                iterator = guarded_stream(iterator, admission)
            return Stream(iterator, info)
        if admission is None:
            reply = client._executor.complete(req, plan, headers=headers, timeout=options.timeout)
            return annotate(reply, plan, req, _prices(client))
        from gateway.guard import CURRENT_ATTEMPTS

        records: list[AttemptRecord] = []
        token = CURRENT_ATTEMPTS.set(records)
        try:
            reply = client._executor.complete(req, plan, headers=headers, timeout=options.timeout)
            return annotate(reply, plan, req, _prices(client))
        finally:
            CURRENT_ATTEMPTS.reset(token)
            admission.settle(records)

    def parse(self, *, response_format: Any = None, **params: Any) -> ChatCompletion:
        """``create`` with a pydantic class as ``response_format``; fills ``message.parsed``."""
        if params.get("stream"):
            raise TypeError("parse() does not support stream=True; use create(stream=True)")
        if response_format is not None:
            params["response_format"] = type_to_response_format(response_format)
        reply = self.create(**params)
        if not isinstance(reply, ChatCompletion):
            raise TypeError("parse() expected a non-streaming reply")
        return parse_choices(reply, response_format, params.get("tools"))


class AsyncCompletions:
    def __init__(self, client: AsyncOpenAI) -> None:
        self._client = client
        self.with_raw_response = AsyncRawCompletions(self)

    async def create(self, **params: Any) -> ChatCompletion | AsyncStream:
        body, options = split_params("create", params, _CHAT_PARAMS, self._client.timeout)
        req = chat_request(body)
        client = self._client
        plan = client._planner.plan(req.model, req)
        headers = {**options.headers}
        admission = None
        if client._guard is not None:
            admission, plan = admit(client, req, plan)
        if req.stream:
            info = StreamInfo()
            iterator = client._executor.stream(
                req, plan, headers=headers, timeout=options.timeout, holder=info
            )
            if admission is not None:
                iterator = guarded_async_stream(iterator, admission)
            return AsyncStream(iterator, info)
        if admission is None:
            reply = await client._executor.complete(req, plan, headers=headers, timeout=options.timeout)
            return annotate(reply, plan, req, _prices(client))
        from gateway.guard import CURRENT_ATTEMPTS

        records: list[AttemptRecord] = []
        token = CURRENT_ATTEMPTS.set(records)
        try:
            reply = await client._executor.complete(req, plan, headers=headers, timeout=options.timeout)
            return annotate(reply, plan, req, _prices(client))
        finally:
            CURRENT_ATTEMPTS.reset(token)
            admission.settle(records)

    async def parse(self, *, response_format: Any = None, **params: Any) -> ChatCompletion:
        if params.get("stream"):
            raise TypeError("parse() does not support stream=True; use create(stream=True)")
        if response_format is not None:
            params["response_format"] = type_to_response_format(response_format)
        reply = await self.create(**params)
        if not isinstance(reply, ChatCompletion):
            raise TypeError("parse() expected a non-streaming reply")
        return parse_choices(reply, response_format, params.get("tools"))


def annotate(reply: ChatCompletion, plan: Plan, req: ChatRequest, prices: Any = None) -> ChatCompletion:
    """Complete ``reply.gateway``: the cost of the serving attempt when its price is known, and the
    parameters the serving provider dropped (a route's ``drop_unsupported_params``)."""
    info = reply.gateway
    if info is None:
        return reply
    served = next((c for c in plan.candidates if c.name == info.model), None)
    usage = reply.usage
    price = _price_table(prices).lookup(info.model, info.provider) if usage is not None else None
    if price is not None and usage is not None:
        details = usage.prompt_tokens_details
        reasoning = usage.completion_tokens_details
        cost = price.cost(
            usage.prompt_tokens,
            usage.completion_tokens,
            cached_tokens=(details.cached_tokens or 0) if details else 0,
            reasoning_tokens=(reasoning.reasoning_tokens or 0) if reasoning else 0,
        )
        info.cost_usd = str(cost)
    if served is None or not served.target.options.get("drop_unsupported_params"):
        return reply
    import providers

    unsupported = getattr(providers.load(served.target.kind), "unsupported_params", None)
    if unsupported is not None:
        info.dropped_params = list(unsupported(req))
    return reply


_CATALOG_PRICES: Any = None


def _prices(client: OpenAI | AsyncOpenAI) -> Any:
    runtime = client._runtime
    return runtime.meter.prices if runtime is not None else None


def _price_table(prices: Any) -> Any:
    """The client's (policy) prices, else the bundled catalog's, loaded once."""
    global _CATALOG_PRICES
    if prices is not None:
        return prices
    if _CATALOG_PRICES is None:
        from gateway.metering.pricing import PriceTable

        _CATALOG_PRICES = PriceTable.from_catalog()
    return _CATALOG_PRICES


# --- budgets and rate limits (a policy's guard) ---------------------------------------------------


def admit(client: OpenAI | AsyncOpenAI, req: ChatRequest, plan: Plan) -> tuple[Admission, Plan]:
    """Charge the policy's rate limits and reserve the worst case in its budgets, before any call."""
    from gateway.budgets import Subject
    from gateway.metering.records import api_key_id
    from gateway.routing import estimate_prompt_tokens

    metadata = req.metadata or {}
    subject = Subject(
        team=metadata.get("team", ""),
        key=api_key_id(client.api_key),
        route=plan.route or "",
        user=req.user or "",
    )
    # a route's plan already counted the prompt; a direct model has not
    prompt_tokens = plan.prompt_tokens if plan.prompt_tokens is not None else estimate_prompt_tokens(req)
    return client._guard.admit(req, plan, subject, prompt_tokens)  # type: ignore[no-any-return]


def guarded_stream(
    iterator: Iterator[ChatCompletionChunk], admission: Admission
) -> Iterator[ChatCompletionChunk]:
    """Run the stream with its own attempt list, and settle the budgets when it ends (however it ends)."""
    from gateway.guard import CURRENT_ATTEMPTS

    records: list[AttemptRecord] = []
    context = contextvars.copy_context()
    context.run(CURRENT_ATTEMPTS.set, records)
    try:
        while True:
            try:
                chunk = context.run(next, iterator)
            except StopIteration:
                return
            yield chunk
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            context.run(close)
        admission.settle(records)


async def guarded_async_stream(
    iterator: AsyncIterator[ChatCompletionChunk], admission: Admission
) -> AsyncIterator[ChatCompletionChunk]:
    from gateway.guard import CURRENT_ATTEMPTS

    records: list[AttemptRecord] = []
    context = contextvars.copy_context()
    context.run(CURRENT_ATTEMPTS.set, records)
    try:
        while True:
            try:
                chunk = await asyncio.create_task(_anext(iterator), context=context)
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await asyncio.create_task(aclose(), context=context)
        admission.settle(records)


async def _anext(iterator: AsyncIterator[ChatCompletionChunk]) -> ChatCompletionChunk:
    return await iterator.__anext__()


class Chat:
    def __init__(self, client: OpenAI) -> None:
        self.completions = Completions(client)


class AsyncChat:
    def __init__(self, client: AsyncOpenAI) -> None:
        self.completions = AsyncCompletions(client)


# --- raw responses -------------------------------------------------------------------------------


class RawResponse:
    """What ``with_raw_response`` returns: the upstream's status and headers, and ``parse()``."""

    def __init__(self, parsed: Any, http_response: httpx.Response | None) -> None:
        self._parsed = parsed
        self.http_response = http_response

    @property
    def headers(self) -> httpx.Headers:
        return self.http_response.headers if self.http_response is not None else httpx.Headers()

    @property
    def status_code(self) -> int:
        return self.http_response.status_code if self.http_response is not None else 200

    @property
    def request_id(self) -> str | None:
        value: str | None = self.headers.get("x-request-id")
        return value

    @property
    def url(self) -> httpx.URL | None:
        return self.http_response.url if self.http_response is not None else None

    @property
    def text(self) -> str:
        if isinstance(self._parsed, pydantic.BaseModel):
            return self._parsed.model_dump_json(exclude_unset=True)
        return ""

    def parse(self) -> Any:
        return self._parsed


class RawCompletions:
    def __init__(self, completions: Completions) -> None:
        self._completions = completions

    def create(self, **params: Any) -> RawResponse:
        reply = self._completions.create(**params)
        if isinstance(reply, Stream):
            first = _prime(reply)
            return RawResponse(first, reply.response)
        return RawResponse(reply, reply._http_response)

    def parse(self, **params: Any) -> RawResponse:
        reply = self._completions.parse(**params)
        return RawResponse(reply, reply._http_response)


class AsyncRawCompletions:
    def __init__(self, completions: AsyncCompletions) -> None:
        self._completions = completions

    async def create(self, **params: Any) -> RawResponse:
        reply = await self._completions.create(**params)
        if isinstance(reply, AsyncStream):
            return RawResponse(reply, None)
        return RawResponse(reply, reply._http_response)

    async def parse(self, **params: Any) -> RawResponse:
        reply = await self._completions.parse(**params)
        return RawResponse(reply, reply._http_response)


def _prime(stream: Stream) -> Stream:
    """Start a stream so its response headers are known; the first chunk is kept for the caller."""
    try:
        first = next(stream)
    except StopIteration:
        return stream
    rest = stream._iterator

    def chained() -> Iterator[Any]:
        yield first
        yield from rest

    return Stream(chained(), stream._info)


# --- embeddings and models -----------------------------------------------------------------------

_EMBED_PARAMS = frozenset({"input", "model", "dimensions", "encoding_format", "user"}) | _CALL_OPTIONS


class Embeddings:
    def __init__(self, client: OpenAI) -> None:
        self._client = client

    def create(self, **params: Any) -> CreateEmbeddingResponse:
        body, options = split_params("create", params, _EMBED_PARAMS, self._client.timeout)
        req = EmbeddingRequest.model_validate(body)
        plan = self._client._planner.plan(req.model)
        return self._client._executor.embed(req, plan, headers=options.headers, timeout=options.timeout)


class AsyncEmbeddings:
    def __init__(self, client: AsyncOpenAI) -> None:
        self._client = client

    async def create(self, **params: Any) -> CreateEmbeddingResponse:
        body, options = split_params("create", params, _EMBED_PARAMS, self._client.timeout)
        req = EmbeddingRequest.model_validate(body)
        plan = self._client._planner.plan(req.model)
        return await self._client._executor.embed(req, plan, headers=options.headers, timeout=options.timeout)


class ModelPage(pydantic.BaseModel):
    """``models.list()``: iterable like the SDK's ``SyncPage[Model]``, with ``.data``."""

    data: list[Model]
    object: str = "list"

    def __iter__(self) -> Iterator[Model]:  # type: ignore[override]
        return iter(self.data)


class Models:
    def __init__(self, client: OpenAI) -> None:
        self._client = client

    def list(self, **params: Any) -> ModelPage:
        from gateway.targets import client_target

        target = client_target(self._client._config, "")
        spec = _models_spec(target.base_url, dict(target.headers), target.api_key)
        raw = transport.send(self._client._http, spec, extra_headers={}, timeout=self._client.timeout)
        return _models_page(raw)


class AsyncModels:
    def __init__(self, client: AsyncOpenAI) -> None:
        self._client = client

    async def list(self, **params: Any) -> ModelPage:
        from gateway.targets import client_target

        target = client_target(self._client._config, "")
        spec = _models_spec(target.base_url, dict(target.headers), target.api_key)
        raw = await transport.send_async(
            self._client._http, spec, extra_headers={}, timeout=self._client.timeout
        )
        return _models_page(raw)


def _models_spec(base_url: str, headers: dict[str, str], api_key: str | None) -> Any:
    from providers.base import HTTPRequestSpec

    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return HTTPRequestSpec("GET", base_url.rstrip("/") + "/models", headers)


def _models_page(raw: transport.RawResponse) -> ModelPage:
    from providers.base import decode_json, error_from_json_body

    if raw.status >= 400:
        error = error_from_json_body(raw.status, raw.headers, raw.body)
        error.attach(raw.http_request, raw.http_response)
        raise error
    return ModelPage.model_validate(decode_json(raw.body, "openai"))
