"""The bundled PyTorch engine as a provider: ``model="local/smollm2-135m-instruct"``, in process.

No HTTP: the request loop calls ``complete``/``stream`` (and their async twins) instead of sending
an ``HTTPRequestSpec``. Messages are rendered with the model's own chat template, sampling follows
the request (``temperature``, ``top_p``, ``seed``, penalties, ``stop``, ``n``, ``max_tokens``,
``logprobs``), usage is exact (the model's own tokenizer) and costs nothing. ``local_engine`` (and
torch) load on the first local request, never on ``import gateway``.

Model names: ``smollm2-135m-instruct`` is the embedded model; any other name is a path to a
Llama-family GGUF file or safetensors folder inside the allowed roots (``SWITCHYARD_MODEL_ROOTS``,
``os.pathsep``-separated, or the target's ``model_roots`` option). Tools are rendered through the
template when it takes them, and ``<tool_call>{…}</tool_call>`` blocks in the output become
``tool_calls``. ``response_format`` and ``logit_bias`` are refused with ``UnsupportedParameterError``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from gateway.core.errors import (
    APIConnectionError,
    BadRequestError,
    ContextLengthExceededError,
    MissingDependencyError,
    UnsupportedParameterError,
)
from gateway.core.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    CompletionUsage,
)
from providers.base import Capabilities, Target

if TYPE_CHECKING:
    from local_engine import AsyncEngine, SamplingParams, TokenEvent

NAME = "local"
EMBEDDED_MODEL = "smollm2-135m-instruct"
DEFAULT_MAX_TOKENS = 512
_TOOL_CALL = re.compile(r"<tool_call>\s*(\{.*?\})\s*</tool_call>", re.S)

_engines: dict[tuple[str, tuple[tuple[str, Any], ...]], AsyncEngine] = {}
_lock = threading.Lock()


def engine_for(model: str, options: dict[str, Any] | None = None) -> AsyncEngine:
    """The engine serving ``model`` with these engine settings, loaded once per process."""
    options = options or {}
    key = (
        model,
        tuple((k, options[k]) for k in ("model_roots", *ENGINE_SETTINGS) if options.get(k) is not None),
    )
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _load(model, options)
            _engines[key] = engine
        return engine


# The engine settings a policy's local provider may set in its ``options`` (checked by the engine).
ENGINE_SETTINGS = (
    "device",
    "dtype",
    "quantization",
    "max_batch",
    "max_model_len",
    "kv_blocks",
    "threads",
    "prefill_chunk",
)


def check_options(options: dict[str, Any]) -> list[tuple[str, str]]:
    """Problems of a local provider's engine settings, as (setting, message); empty when usable.

    Checked as the engine checks them (`EngineSettings`), without loading torch or a model, so
    that a policy check can report them before the first request does.
    """
    try:
        import local_engine
    except ImportError:  # the 'local' extra is missing: the first request says so
        return []
    settings = {k: options[k] for k in ENGINE_SETTINGS if options.get(k) is not None}
    try:
        local_engine.EngineSettings(**settings)
    except local_engine.SettingsError as exc:
        return [(exc.setting or "options", str(exc))]
    return []


def model_roots(options: dict[str, Any]) -> list[str]:
    """Where models and adapters may be read from: the provider's ``model_roots`` option, else
    ``SWITCHYARD_MODEL_ROOTS`` (either ``os.pathsep``-separated)."""
    roots = str(options.get("model_roots") or os.environ.get("SWITCHYARD_MODEL_ROOTS", ""))
    return [r for r in roots.split(os.pathsep) if r]


def adapter_folders(names: list[str], options: dict[str, Any]) -> list[str] | None:
    """Where the engine would read these adapters from, or ``None`` where that cannot be said (no
    torch, or an adapter outside the roots: the call itself then fails with the engine's error)."""
    try:
        import local_engine
    except ImportError:
        return None
    roots = model_roots(options)
    try:
        return [str(adapter_path(local_engine, name, roots)) for name in names]
    except local_engine.EngineError:
        return None


def adapter_path(engine_module: Any, name: str, roots: list[str]) -> Any:
    """An adapter folder, confined to the model roots like a model file: an absolute path must lie
    inside one (symlinks resolved), a relative name is looked up under each. A model name comes from
    requests too (``local/<base>+<adapter>``), so without roots no adapter is read at all."""
    if not roots:
        raise engine_module.ModelPathError(
            f"adapter {name!r}: adapters are read only from the local provider's model_roots "
            "(policy: providers.local.options.model_roots, or SWITCHYARD_MODEL_ROOTS); none is set",
            path=name,
            code="adapter.outside-roots",
        )
    if not os.path.isabs(name):
        for root in roots:
            candidate = os.path.join(root, name)
            if os.path.exists(candidate):
                return engine_module.resolve_model_path(candidate, roots)
    return engine_module.resolve_model_path(name, roots)


def _load(model: str, options: dict[str, Any]) -> AsyncEngine:
    try:
        import local_engine
    except ImportError as exc:  # torch or gguf missing
        raise MissingDependencyError(
            f"the local engine needs the 'local' extra: pip install 'switchyard[local]' ({exc})"
        ) from exc
    try:
        path: Any
        base, *adapters = model.split("+")  # local/<base>+<adapter>: LoRA adapters merged at load
        roots = model_roots(options)
        if base == EMBEDDED_MODEL:
            path = local_engine.default_model_path()
        else:
            path = local_engine.resolve_model_path(base, roots)
        settings = {k: options[k] for k in ENGINE_SETTINGS if options.get(k) is not None}
        if adapters:  # merged adapters are served unquantized, the precision they were trained in
            settings["quantization"] = "none"
            folders = [adapter_path(local_engine, a, roots) for a in adapters]
            return local_engine.load_engine(path, adapters=folders, **settings)
        return local_engine.load_engine(path, **settings)
    except local_engine.SettingsError as exc:
        raise BadRequestError(
            f"local: cannot serve model {model!r}: {exc}",
            body={
                "message": str(exc),
                "type": "invalid_request_error",
                "param": f"options.{exc.setting}",
                "code": "invalid_engine_setting",
            },
            status_code=400,
        ) from exc
    except local_engine.EngineError as exc:
        raise BadRequestError(
            f"local: cannot serve model {model!r}: {exc}",
            body={
                "message": str(exc),
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            },
            status_code=400,
        ) from exc


def engine_load() -> Any:
    """The embedded engine's load (queue depth, running, tokens/s) if it is loaded, else ``None``."""
    engine = next((e for (name, _), e in _engines.items() if name == EMBEDDED_MODEL), None)
    return engine.stats() if engine is not None else None


# --- request translation -------------------------------------------------------------------------


def _check(req: ChatRequest) -> None:
    for name in ("response_format", "logit_bias", "audio", "prediction"):
        if getattr(req, name, None):
            raise UnsupportedParameterError(
                f"local: the local engine does not support {name!r}; remove it or route to another model",
                param=name,
                provider=NAME,
            )


def _messages(req: ChatRequest) -> list[dict[str, Any]]:
    out = []
    for i, message in enumerate(req.messages):
        content = message.get("content")
        if isinstance(content, list):
            texts = []
            for j, part in enumerate(content):
                if part.get("type") != "text":
                    raise UnsupportedParameterError(
                        f"local: messages[{i}].content[{j}] is a {part.get('type')!r} part; the local model reads text only",
                        param=f"messages[{i}].content[{j}]",
                        provider=NAME,
                    )
                texts.append(part.get("text", ""))
            content = "".join(texts)
        out.append({**message, "content": content if content is not None else ""})
    return out


def _params(req: ChatRequest, engine: AsyncEngine, prompt_tokens: int) -> SamplingParams:
    from local_engine import SamplingParams

    room = max(engine.max_model_len - prompt_tokens, 0)
    requested = req.max_output_tokens
    stop = (req.stop,) if isinstance(req.stop, str) else tuple(req.stop or ())
    return SamplingParams(
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        seed=req.seed,
        presence_penalty=req.presence_penalty or 0.0,
        frequency_penalty=req.frequency_penalty or 0.0,
        max_tokens=min(requested if requested is not None else DEFAULT_MAX_TOKENS, room),
        stop=stop,
        n=req.n or 1,
        logprobs=bool(req.logprobs),
        top_logprobs=req.top_logprobs or 0,
    )


def _prepare(req: ChatRequest, target: Target) -> tuple[AsyncEngine, list[int], SamplingParams]:
    _check(req)
    messages = _messages(req)
    engine = engine_for(target.model, dict(target.options))
    try:
        # encode_chat keeps special-token text inside a message literal: no forged turns.
        ids = engine.tokenizer.encode_chat(messages, tools=req.tools or None)
    except Exception as exc:  # noqa: BLE001 - template errors become a typed 400 naming the cause
        raise BadRequestError(
            f"local: cannot render the chat template: {exc}",
            body={"message": str(exc), "type": "invalid_request_error", "param": "messages"},
            status_code=400,
        ) from exc
    if len(ids) >= engine.max_model_len:
        message = f"local: the prompt has {len(ids)} tokens; this model's context is {engine.max_model_len}"
        raise ContextLengthExceededError(
            message,
            body={"message": message, "type": "invalid_request_error", "code": "context_length_exceeded"},
            status_code=400,
        )
    return engine, ids, _params(req, engine, len(ids))


# --- responses -----------------------------------------------------------------------------------


class _Collector:
    """Accumulates token events per choice into a ``ChatCompletion`` or chunks."""

    def __init__(self, req: ChatRequest, prompt_tokens: int) -> None:
        self.req = req
        self.id = f"chatcmpl-local-{uuid.uuid4().hex[:24]}"
        self.created = int(time.time())
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self.counted: dict[int, int] = {}
        self.texts: dict[int, list[str]] = {}
        self.finish: dict[int, str] = {}
        self.logprobs: dict[int, list[dict[str, Any]]] = {}

    def add(self, event: TokenEvent) -> None:
        if event.token_id is not None:
            self.counted[event.index] = self.counted.get(event.index, 0) + 1
        if event.completion_tokens is not None:  # the engine's own count, end-of-turn token included
            self.counted[event.index] = event.completion_tokens
        self.completion_tokens = sum(self.counted.values())
        self.texts.setdefault(event.index, []).append(event.text_delta)
        if event.finish_reason:
            self.finish[event.index] = event.finish_reason
        if self.req.logprobs and event.logprob is not None:
            self.logprobs.setdefault(event.index, []).append(_logprob(event))

    def usage(self) -> CompletionUsage:
        return CompletionUsage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
        )

    def completion(self, model: str) -> ChatCompletion:
        choices = []
        for index in sorted(self.texts):
            text = "".join(self.texts[index])
            message: dict[str, Any] = {"role": "assistant", "content": text}
            finish = self.finish.get(index, "stop")
            calls = _tool_calls(text) if self.req.tools else []
            if calls:
                message = {"role": "assistant", "content": None, "tool_calls": calls}
                finish = "tool_calls"
            logprobs = {"content": self.logprobs[index]} if index in self.logprobs else None
            choices.append(
                {"index": index, "message": message, "finish_reason": finish, "logprobs": logprobs}
            )
        return ChatCompletion.model_validate(
            {
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": model,
                "choices": choices,
                "usage": self.usage().model_dump(exclude_none=True),
            }
        )

    def chunk(
        self, model: str, index: int, delta: dict[str, Any], finish: str | None = None
    ) -> ChatCompletionChunk:
        return ChatCompletionChunk.model_validate(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": model,
                "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
            }
        )

    def usage_chunk(self, model: str) -> ChatCompletionChunk:
        return ChatCompletionChunk.model_validate(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": model,
                "choices": [],
                "usage": self.usage().model_dump(exclude_none=True),
            }
        )


def _logprob(event: TokenEvent) -> dict[str, Any]:
    """OpenAI's logprob entry; the sampled token is the top alternative with the same id (exact bytes)."""
    top = [
        {"token": t.token, "logprob": t.logprob, "bytes": list(t.token_bytes or t.token.encode())}
        for t in event.top_logprobs or ()
    ]
    chosen = next((t for t in event.top_logprobs or () if t.token_id == event.token_id), None)
    token_bytes = (
        chosen.token_bytes if chosen is not None and chosen.token_bytes else event.text_delta.encode()
    )
    token = token_bytes.decode("utf-8", "replace")
    return {"token": token, "logprob": event.logprob, "bytes": list(token_bytes), "top_logprobs": top}


def _tool_calls(text: str) -> list[dict[str, Any]]:
    calls = []
    for i, match in enumerate(_TOOL_CALL.finditer(text)):
        try:
            data = json.loads(match.group(1))
        except ValueError:
            continue
        if not isinstance(data, dict) or "name" not in data:
            continue
        arguments = data.get("arguments", data.get("parameters", {}))
        calls.append(
            {
                "id": f"call_local_{uuid.uuid4().hex[:16]}_{i}",
                "type": "function",
                "function": {"name": str(data["name"]), "arguments": json.dumps(arguments)},
            }
        )
    return calls


def _stream_chunks(
    collector: _Collector, model: str, event: TokenEvent, started: set[int]
) -> list[ChatCompletionChunk]:
    out = []
    if event.index not in started:
        started.add(event.index)
        out.append(collector.chunk(model, event.index, {"role": "assistant", "content": ""}))
    if event.text_delta:
        out.append(collector.chunk(model, event.index, {"content": event.text_delta}))
    if event.finish_reason:
        out.append(collector.chunk(model, event.index, {}, event.finish_reason))
    return out


def _engine_error(exc: Exception) -> Exception:
    from local_engine import EngineClosedError, RequestError

    if isinstance(exc, RequestError):
        return BadRequestError(
            f"local: {exc}", body={"message": str(exc), "type": "invalid_request_error"}, status_code=400
        )
    if isinstance(exc, EngineClosedError):
        return APIConnectionError(message=f"local: the engine stopped: {exc}")
    return exc


# --- the provider's entry points -----------------------------------------------------------------


def complete(req: ChatRequest, target: Target) -> ChatCompletion:
    engine, ids, params = _prepare(req, target)
    collector = _Collector(req, len(ids))
    try:
        for event in engine.generate_sync(ids, params):
            collector.add(event)
    except Exception as exc:  # noqa: BLE001 - mapped to the gateway's error tree, then re-raised
        raise _engine_error(exc) from exc
    return collector.completion(target.model)


def stream(req: ChatRequest, target: Target) -> Iterator[ChatCompletionChunk]:
    engine, ids, params = _prepare(req, target)
    if req.tools:  # tool calls are known only once the text is whole
        yield from _as_chunks(complete(req, target), req)
        return
    collector = _Collector(req, len(ids))
    started: set[int] = set()
    events = engine.generate_sync(ids, params)
    try:
        for event in events:
            collector.add(event)
            yield from _stream_chunks(collector, target.model, event, started)
    except Exception as exc:  # noqa: BLE001 - mapped to the gateway's error tree, then re-raised
        raise _engine_error(exc) from exc
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()  # closing aborts the request and frees its cache
    if req.wants_usage_in_stream:
        yield collector.usage_chunk(target.model)


async def acomplete(req: ChatRequest, target: Target) -> ChatCompletion:
    engine, ids, params = _prepare(req, target)
    collector = _Collector(req, len(ids))
    try:
        async for event in engine.generate(ids, params):
            collector.add(event)
    except Exception as exc:  # noqa: BLE001 - mapped to the gateway's error tree, then re-raised
        raise _engine_error(exc) from exc
    return collector.completion(target.model)


async def astream(req: ChatRequest, target: Target) -> AsyncIterator[ChatCompletionChunk]:
    engine, ids, params = _prepare(req, target)
    if req.tools:
        for chunk in _as_chunks(await acomplete(req, target), req):
            yield chunk
        return
    collector = _Collector(req, len(ids))
    started: set[int] = set()
    events = engine.generate(ids, params)
    try:
        async for event in events:
            collector.add(event)
            for chunk in _stream_chunks(collector, target.model, event, started):
                yield chunk
    except Exception as exc:  # noqa: BLE001 - mapped to the gateway's error tree, then re-raised
        raise _engine_error(exc) from exc
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()
    if req.wants_usage_in_stream:
        yield collector.usage_chunk(target.model)


def _as_chunks(completion: ChatCompletion, req: ChatRequest) -> list[ChatCompletionChunk]:
    """A whole completion as the chunks a stream would have carried."""
    out = []
    base = {
        "id": completion.id,
        "object": "chat.completion.chunk",
        "created": completion.created,
        "model": completion.model,
    }
    for choice in completion.choices:
        delta: dict[str, Any] = {"role": "assistant", "content": choice.message.content or ""}
        out.append({**base, "choices": [{"index": choice.index, "delta": delta, "finish_reason": None}]})
        for i, call in enumerate(choice.message.tool_calls or ()):
            tool = {
                "index": i,
                "id": call.id,
                "type": "function",
                "function": call.function.model_dump(exclude={"parsed_arguments"}),
            }
            out.append(
                {
                    **base,
                    "choices": [
                        {"index": choice.index, "delta": {"tool_calls": [tool]}, "finish_reason": None}
                    ],
                }
            )
        out.append(
            {**base, "choices": [{"index": choice.index, "delta": {}, "finish_reason": choice.finish_reason}]}
        )
    if req.wants_usage_in_stream and completion.usage is not None:
        out.append({**base, "choices": [], "usage": completion.usage.model_dump(exclude_none=True)})
    return [ChatCompletionChunk.model_validate(c) for c in out]


def capabilities(model: str) -> Capabilities:
    return Capabilities(
        tools=True,
        vision=False,
        json_schema=False,
        embeddings=False,
        logprobs=True,
        usage_authoritative=True,
        tokenizer="local",
    )


def count_prompt_tokens(req: ChatRequest, target: Target) -> int:
    """The exact prompt size, from the model's own tokenizer (loads the engine)."""
    return len(_prepare(req, target)[1])
