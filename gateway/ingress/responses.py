"""The Responses API ingress dialect: pure translation to and from the internal chat schema.

``chat_body_from_responses`` turns a ``POST /v1/responses`` body into a chat-completions body and
a ``ResponsesContext``; ``response_from_chat`` turns the internal ``ChatCompletion`` back into a
Responses ``Response`` object; ``ResponsesStreamEncoder`` (in ``responses_stream``) does the same
for a stream of ``ChatCompletionChunk``. No I/O, no SDK import: JSON-shaped dicts in and out.

What is translated, and what is refused with a 400 that names the field:

- ``input``: a string, or items: messages (roles user, system, developer, assistant; parts
  ``input_text``, ``input_image`` (by URL), ``input_file`` (``file_data`` or ``file_id``),
  ``input_audio``, ``output_text``, ``refusal``), ``function_call`` (an assistant ``tool_calls``
  entry; consecutive calls join the assistant message before them), ``function_call_output`` (a
  ``tool`` message). ``reasoning`` items are dropped: chat has no slot for them and their encrypted
  content only means something to the model that wrote it. ``item_reference`` needs stored state;
  every other item type (built-in tool calls) is refused.
- ``tools``: function tools only; ``tool_choice``: auto, none, required, a function, allowed_tools.
- ``text.format`` -> ``response_format``; ``text.verbosity`` -> ``verbosity``;
  ``reasoning.effort`` -> ``reasoning_effort`` (``reasoning.summary`` is accepted and not
  forwarded: chat has no such switch; reasoning text a provider returns still comes back as a
  ``reasoning`` item); ``max_output_tokens`` -> ``max_completion_tokens``.
- ``include``: ``message.output_text.logprobs`` is honoured (chat ``logprobs``);
  ``reasoning.encrypted_content`` and ``message.input_image.image_url`` are accepted and have
  nothing to add (no encrypted reasoning is produced, no input is stored); the values about
  built-in tools are accepted because those tools are refused. Other values: 400.
- ``stream_options.include_obfuscation`` is accepted and ignored (no obfuscation padding is added).
- ``max_tool_calls`` caps built-in tool calls only, which are refused, so it is accepted and echoed.
- Stateful features (``previous_response_id``, ``conversation``, ``background: true``,
  ``store: true``, ``prompt``, ``item_reference`` items) are refused unless ``stateful_ok``; then
  they are not translated but handed to the caller, which keeps state, in ``ctx.stateful``.
- Every other top-level field is refused: nothing is dropped silently.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.core.errors import BadRequestError, UnsupportedParameterError
from gateway.core.types import ChatCompletion, ChatCompletionMessage, ChoiceLogprobs, CompletionUsage

if TYPE_CHECKING:
    from gateway.ingress.responses_stream import ResponsesStreamEncoder

__all__ = [
    "ResponsesContext",
    "ResponsesStreamEncoder",
    "chat_body_from_responses",
    "new_id",
    "response_from_chat",
    "response_object",
]

IdFactory = Callable[[str], str]
Clock = Callable[[], float]
JSON = dict[str, Any]

_DEFAULT_PROVIDER = "this provider"


def new_id(prefix: str) -> str:
    """A fresh id in OpenAI's style: ``resp_<hex>``, ``msg_<hex>``, ``fc_<hex>``."""
    return f"{prefix}_{secrets.token_hex(24)}"


@dataclass(frozen=True, slots=True)
class ResponsesContext:
    """What the reply side needs: the request fields a ``Response`` echoes, its id and clock."""

    model: str
    response_id: str
    created_at: int
    instructions: str | None = None
    tools: list[JSON] = field(default_factory=list)
    tool_choice: str | JSON = "auto"
    text: JSON = field(default_factory=lambda: {"format": {"type": "text"}})
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    parallel_tool_calls: bool = True
    reasoning: JSON | None = None
    top_logprobs: int | None = None
    service_tier: str | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    include_logprobs: bool = False
    # The stateful fields the caller allowed (``stateful_ok``) and must act on itself.
    stateful: JSON = field(default_factory=dict)
    ids: IdFactory = new_id
    now: Clock = time.time

    def echo(self) -> JSON:
        """The request fields, as a ``Response`` repeats them."""
        return {
            "instructions": self.instructions,
            "tools": self.tools,
            "tool_choice": self.tool_choice,
            "text": self.text,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_output_tokens": self.max_output_tokens,
            "max_tool_calls": self.max_tool_calls,
            "metadata": self.metadata,
            "parallel_tool_calls": self.parallel_tool_calls,
            "reasoning": self.reasoning,
            "top_logprobs": self.top_logprobs,
            "service_tier": self.service_tier,
            "user": self.user,
            "safety_identifier": self.safety_identifier,
            "prompt_cache_key": self.prompt_cache_key,
            "previous_response_id": self.stateful.get("previous_response_id"),
            "background": bool(self.stateful.get("background")),
            "truncation": "disabled",
        }


# --- errors and shape checks ---------------------------------------------------------------------


def _bad(param: str, message: str, code: str = "invalid_value") -> BadRequestError:
    body = {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    return BadRequestError(message, body=body, status_code=400)


def _unsupported(param: str, why: str, provider: str) -> UnsupportedParameterError:
    return UnsupportedParameterError(f"{param}: {why}", param=param, provider=provider)


def _obj(value: Any, where: str) -> JSON:
    if not isinstance(value, Mapping):
        raise _bad(where, f"Invalid type for '{where}': expected an object.", "invalid_type")
    return dict(value)


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise _bad(where, f"Invalid type for '{where}': expected an array.", "invalid_type")
    return list(value)


def _str(value: Any, where: str) -> str:
    if value is None:
        raise _bad(where, f"Missing required parameter: '{where}'.", "missing_required_parameter")
    if not isinstance(value, str):
        raise _bad(where, f"Invalid type for '{where}': expected a string.", "invalid_type")
    return value


def _typed(value: Any, where: str, kind: type | tuple[type, ...], label: str) -> Any:
    # bool is an int to Python, never to the API.
    if isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,)):
        raise _bad(where, f"Invalid type for '{where}': expected {label}.", "invalid_type")
    if not isinstance(value, kind):
        raise _bad(where, f"Invalid type for '{where}': expected {label}.", "invalid_type")
    return value


def _only_keys(obj: JSON, allowed: frozenset[str], where: str) -> None:
    for key in obj:
        if key not in allowed and obj[key] is not None:
            raise _bad(f"{where}.{key}", f"Unknown parameter: '{where}.{key}'.", "unknown_parameter")


# --- input items -> messages ---------------------------------------------------------------------


def _text_part(part: JSON, where: str) -> JSON:
    return {"type": "text", "text": _str(part.get("text"), f"{where}.text")}


def _image_part(part: JSON, where: str, provider: str) -> JSON:
    if part.get("image_url") is None and part.get("file_id") is not None:
        raise _unsupported(
            f"{where}.file_id", "images by file_id need the OpenAI Files API; send image_url", provider
        )
    image: JSON = {"url": _str(part.get("image_url"), f"{where}.image_url")}
    if part.get("detail") is not None:
        image["detail"] = _str(part.get("detail"), f"{where}.detail")
    return {"type": "image_url", "image_url": image}


def _file_part(part: JSON, where: str, provider: str) -> JSON:
    if part.get("file_url") is not None:
        raise _unsupported(f"{where}.file_url", "files by URL cannot be translated; send file_data", provider)
    file = {
        key: _str(part[key], f"{where}.{key}")
        for key in ("file_data", "file_id", "filename")
        if part.get(key)
    }
    if "file_data" not in file and "file_id" not in file:
        raise _bad(
            f"{where}.file_data",
            f"Missing required parameter: '{where}.file_data'.",
            "missing_required_parameter",
        )
    return {"type": "file", "file": file}


def _audio_part(part: JSON, where: str) -> JSON:
    return {"type": "input_audio", "input_audio": _obj(part.get("input_audio"), f"{where}.input_audio")}


def _content_part(raw: Any, where: str, provider: str) -> JSON:
    part = _obj(raw, where)
    match part.get("type"):
        case "input_text" | "output_text":
            return _text_part(part, where)
        case "input_image":
            return _image_part(part, where, provider)
        case "input_file":
            return _file_part(part, where, provider)
        case "input_audio":
            return _audio_part(part, where)
        case None:
            raise _bad(
                f"{where}.type", f"Missing required parameter: '{where}.type'.", "missing_required_parameter"
            )
        case other:
            raise _bad(
                f"{where}.type", f"Invalid value for '{where}.type': {other!r} is not a content part here."
            )


def _assistant_message(content: Any, where: str) -> JSON:
    """Assistant text as one string (every provider takes that), refusals in ``refusal``."""
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    refusals: list[str] = []
    for j, raw in enumerate(_list(content, f"{where}.content")):
        part = _obj(raw, f"{where}.content[{j}]")
        if part.get("type") == "refusal":
            refusals.append(_str(part.get("refusal"), f"{where}.content[{j}].refusal"))
        elif part.get("type") in ("output_text", "input_text"):
            texts.append(_text_part(part, f"{where}.content[{j}]")["text"])
        else:
            kind = part.get("type")
            raise _bad(
                f"{where}.content[{j}].type",
                f"Invalid value for '{where}.content[{j}].type': {kind!r} in an assistant message.",
            )
    message: JSON = {"role": "assistant", "content": "".join(texts) if texts or not refusals else None}
    if refusals:
        message["refusal"] = "".join(refusals)
    return message


def _message(item: JSON, where: str, provider: str) -> JSON:
    role = item.get("role")
    if role == "assistant":
        return _assistant_message(item.get("content"), where)
    if role not in ("user", "system", "developer"):
        raise _bad(
            f"{where}.role",
            f"Invalid value for '{where}.role': expected user, system, developer or assistant, got {role!r}.",
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    parts = _list(content, f"{where}.content")
    return {
        "role": role,
        "content": [_content_part(p, f"{where}.content[{j}]", provider) for j, p in enumerate(parts)],
    }


def _tool_call(item: JSON, where: str) -> JSON:
    return {
        "id": _str(item.get("call_id"), f"{where}.call_id"),
        "type": "function",
        "function": {
            "name": _str(item.get("name"), f"{where}.name"),
            "arguments": _str(item.get("arguments"), f"{where}.arguments"),
        },
    }


def _add_tool_call(messages: list[JSON], call: JSON) -> None:
    # A turn's output is [message?, function_call...]: they are one assistant message in chat.
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _tool_result(item: JSON, where: str, provider: str) -> JSON:
    call_id = _str(item.get("call_id"), f"{where}.call_id")
    output = item.get("output")
    if isinstance(output, str):
        return {"role": "tool", "tool_call_id": call_id, "content": output}
    parts = _list(output, f"{where}.output") if output is not None else None
    if parts is None:
        raise _bad(
            f"{where}.output", f"Missing required parameter: '{where}.output'.", "missing_required_parameter"
        )
    content = [_content_part(p, f"{where}.output[{j}]", provider) for j, p in enumerate(parts)]
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def _add_item(messages: list[JSON], raw: Any, where: str, provider: str) -> None:
    item = _obj(raw, where)
    kind = item.get("type", "message" if "role" in item else None)
    match kind:
        case "message":
            messages.append(_message(item, where, provider))
        case "function_call":
            _add_tool_call(messages, _tool_call(item, where))
        case "function_call_output":
            messages.append(_tool_result(item, where, provider))
        case "reasoning":
            return  # see the module docstring
        case "item_reference":
            raise _stateful(where, provider)
        case None:
            raise _bad(
                f"{where}.type",
                f"Missing required parameter: '{where}.type' (or '{where}.role').",
                "missing_required_parameter",
            )
        case str():
            raise _unsupported(
                f"{where}.type", f"{kind!r} items cannot be translated to chat completions", provider
            )
        case _:
            raise _bad(
                f"{where}.type", f"Invalid type for '{where}.type': expected a string.", "invalid_type"
            )


def messages_from_input(value: Any, provider: str = _DEFAULT_PROVIDER) -> list[JSON]:
    """``input`` (a string or a list of items) as chat messages."""
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages: list[JSON] = []
    for i, raw in enumerate(_list(value, "input")):
        _add_item(messages, raw, f"input[{i}]", provider)
    return messages


# --- tools, text, reasoning ----------------------------------------------------------------------

_FUNCTION_TOOL_KEYS = frozenset({"type", "name", "description", "parameters", "strict"})


def _tool(raw: Any, where: str, provider: str) -> JSON:
    tool = _obj(raw, where)
    kind = tool.get("type")
    if kind != "function":
        raise _unsupported(
            f"{where}.type",
            f"{kind!r} tools cannot be translated to chat completions; only function tools can",
            provider,
        )
    _only_keys(tool, _FUNCTION_TOOL_KEYS, where)
    function: JSON = {"name": _str(tool.get("name"), f"{where}.name")}
    if tool.get("description") is not None:
        function["description"] = _str(tool["description"], f"{where}.description")
    if tool.get("parameters") is not None:
        function["parameters"] = _obj(tool["parameters"], f"{where}.parameters")
    if tool.get("strict") is not None:
        function["strict"] = _typed(tool["strict"], f"{where}.strict", bool, "a boolean")
    return {"type": "function", "function": function}


def _named_function(raw: Any, where: str, provider: str) -> JSON:
    choice = _obj(raw, where)
    if choice.get("type") != "function":
        raise _unsupported(
            f"{where}.type", f"{choice.get('type')!r} cannot be translated; only function tools can", provider
        )
    return {"type": "function", "function": {"name": _str(choice.get("name"), f"{where}.name")}}


def _tool_choice(value: Any, provider: str) -> str | JSON:
    if value in ("auto", "none", "required"):
        return str(value)
    choice = _obj(value, "tool_choice")
    if choice.get("type") != "allowed_tools":
        return _named_function(choice, "tool_choice", provider)
    tools = _list(choice.get("tools"), "tool_choice.tools")
    allowed = {
        "mode": _str(choice.get("mode"), "tool_choice.mode"),
        "tools": [_named_function(t, f"tool_choice.tools[{i}]", provider) for i, t in enumerate(tools)],
    }
    return {"type": "allowed_tools", "allowed_tools": allowed}


def _tool_fields(body: JSON, provider: str) -> JSON:
    out: JSON = {}
    if body.get("tools") is not None:
        tools = _list(body["tools"], "tools")
        if tools:
            out["tools"] = [_tool(t, f"tools[{i}]", provider) for i, t in enumerate(tools)]
    if body.get("tool_choice") is not None:
        out["tool_choice"] = _tool_choice(body["tool_choice"], provider)
    return out


def _response_format(raw: Any) -> JSON | None:
    fmt = _obj(raw, "text.format")
    match fmt.get("type"):
        case "text":
            return None
        case "json_object":
            return {"type": "json_object"}
        case "json_schema":
            schema: JSON = {
                "name": _str(fmt.get("name"), "text.format.name"),
                "schema": _obj(fmt.get("schema"), "text.format.schema"),
            }
            if fmt.get("description") is not None:
                schema["description"] = _str(fmt["description"], "text.format.description")
            if fmt.get("strict") is not None:
                schema["strict"] = _typed(fmt["strict"], "text.format.strict", bool, "a boolean")
            return {"type": "json_schema", "json_schema": schema}
        case other:
            raise _bad(
                "text.format.type",
                f"Invalid value for 'text.format.type': {other!r}; expected text, json_object or json_schema.",
            )


def _text_fields(value: Any) -> JSON:
    if value is None:
        return {}
    text = _obj(value, "text")
    _only_keys(text, frozenset({"format", "verbosity"}), "text")
    out: JSON = {}
    if text.get("format") is not None and (response_format := _response_format(text["format"])) is not None:
        out["response_format"] = response_format
    if text.get("verbosity") is not None:
        out["verbosity"] = _str(text["verbosity"], "text.verbosity")
    return out


def _reasoning_fields(value: Any) -> JSON:
    if value is None:
        return {}
    reasoning = _obj(value, "reasoning")
    _only_keys(reasoning, frozenset({"effort", "summary", "generate_summary"}), "reasoning")
    if reasoning.get("effort") is None:
        return {}
    return {"reasoning_effort": _str(reasoning["effort"], "reasoning.effort")}


# --- top-level fields ----------------------------------------------------------------------------

# Fields with the same name and meaning in chat completions: (python types, label).
_PASSTHROUGH: dict[str, tuple[type | tuple[type, ...], str]] = {
    "temperature": ((int, float), "a number"),
    "top_p": ((int, float), "a number"),
    "metadata": (dict, "an object"),
    "parallel_tool_calls": (bool, "a boolean"),
    "prompt_cache_key": (str, "a string"),
    "prompt_cache_retention": (str, "a string"),
    "service_tier": (str, "a string"),
    "top_logprobs": (int, "an integer"),
    "user": (str, "a string"),
    "safety_identifier": (str, "a string"),
}
_STATEFUL = ("previous_response_id", "conversation", "background", "store", "prompt")
_HANDLED = frozenset(
    {
        "model",
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "text",
        "reasoning",
        "max_output_tokens",
        "max_tool_calls",
    }
    | {"stream", "stream_options", "include", "truncation", *_STATEFUL}
)
# Known to the Responses API, with nothing in chat completions to carry them.
_UNSUPPORTED = frozenset(
    {
        "access_programs",
        "background_options",
        "context_management",
        "image",
        "moderation",
        "prompt_cache_options",
    }
)
_INCLUDE_LOGPROBS = "message.output_text.logprobs"
_INCLUDE_NOTHING_TO_ADD = frozenset(
    {
        "reasoning.encrypted_content",
        "message.input_image.image_url",
        "file_search_call.results",
        "web_search_call.results",
    }
    | {
        "web_search_call.action.sources",
        "computer_call_output.output.image_url",
        "code_interpreter_call.outputs",
    }
)


def _check_fields(body: JSON, provider: str) -> None:
    for key, value in body.items():
        if key in _UNSUPPORTED and value is not None:
            raise _unsupported(key, f"{key} is not supported by {provider}", provider)
        if key not in _UNSUPPORTED and key not in _HANDLED and key not in _PASSTHROUGH:
            raise _bad(key, f"Unknown parameter: '{key}'.", "unknown_parameter")
    if body.get("truncation") not in (None, "disabled"):
        raise _unsupported(
            "truncation", f"truncation={body['truncation']!r} is not supported by {provider}", provider
        )


def _stateful(param: str, provider: str) -> UnsupportedParameterError:
    return _unsupported(
        param, f"{param} is not supported by {provider}; it needs a provider that keeps state", provider
    )


def _stateful_fields(body: JSON, stateful_ok: bool, provider: str) -> JSON:
    given = {key: body[key] for key in _STATEFUL if body.get(key) not in (None, False)}
    if given and not stateful_ok:
        raise _stateful(next(iter(given)), provider)
    return given


def _passthrough(body: JSON) -> JSON:
    out: JSON = {}
    for key, (kind, label) in _PASSTHROUGH.items():
        if body.get(key) is not None:
            out[key] = _typed(body[key], key, kind, label)
    return out


def _include_logprobs(value: Any) -> bool:
    if value is None:
        return False
    wanted = False
    for i, raw in enumerate(_list(value, "include")):
        entry = _str(raw, f"include[{i}]")
        if entry == _INCLUDE_LOGPROBS:
            wanted = True
        elif entry not in _INCLUDE_NOTHING_TO_ADD:
            raise _bad(
                f"include[{i}]", f"Invalid value for 'include[{i}]': {entry!r} cannot be honoured here."
            )
    return wanted


def _stream_fields(body: JSON) -> JSON:
    if body.get("stream_options") is not None:
        _only_keys(
            _obj(body["stream_options"], "stream_options"),
            frozenset({"include_obfuscation"}),
            "stream_options",
        )
    if body.get("stream") is None:
        return {}
    if not _typed(body["stream"], "stream", bool, "a boolean"):
        return {"stream": False}
    return {"stream": True, "stream_options": {"include_usage": True}}


def _optional_int(body: JSON, key: str) -> int | None:
    return None if body.get(key) is None else int(_typed(body[key], key, int, "an integer"))


def _context(
    body: JSON, chat: JSON, include_logprobs: bool, stateful: JSON, ids: IdFactory, now: Clock
) -> ResponsesContext:
    text = dict(body.get("text") or {})
    text.setdefault("format", {"type": "text"})
    return ResponsesContext(
        model=chat["model"],
        response_id=ids("resp"),
        created_at=int(now()),
        instructions=body.get("instructions"),
        tools=list(body.get("tools") or []),
        tool_choice=body.get("tool_choice") or "auto",
        text={k: v for k, v in text.items() if v is not None},
        temperature=chat.get("temperature"),
        top_p=chat.get("top_p"),
        max_output_tokens=chat.get("max_completion_tokens"),
        max_tool_calls=_optional_int(body, "max_tool_calls"),
        metadata=dict(chat.get("metadata") or {}),
        parallel_tool_calls=chat.get("parallel_tool_calls", True),
        reasoning=body.get("reasoning"),
        top_logprobs=chat.get("top_logprobs"),
        service_tier=chat.get("service_tier"),
        user=chat.get("user"),
        safety_identifier=chat.get("safety_identifier"),
        prompt_cache_key=chat.get("prompt_cache_key"),
        include_logprobs=include_logprobs,
        stateful=stateful,
        ids=ids,
        now=now,
    )


def chat_body_from_responses(
    body: Mapping[str, Any],
    *,
    stateful_ok: bool = False,
    provider: str | None = None,
    ids: IdFactory | None = None,
    now: Clock | None = None,
) -> tuple[JSON, ResponsesContext]:
    """Translate a Responses request body into a chat-completions request body.

    Args:
        body: the ``POST /v1/responses`` JSON body.
        stateful_ok: the caller keeps state: stateful fields are handed back in ``ctx.stateful``
            instead of being refused.
        provider: the name used in error messages ("... is not supported by <provider>").
        ids: makes ids from a prefix (``"resp"``, ``"msg"``, ``"fc"``); random hex by default.
        now: the clock, in seconds since the epoch; ``time.time`` by default.

    Returns:
        The chat body (OpenAI chat-completions wire shape) and the context the reply side needs.

    Raises:
        BadRequestError: a malformed or unknown field; ``param`` names its path (``input[2].call_id``).
        UnsupportedParameterError: a field this translation cannot honour (a built-in tool, a
            stateful feature without ``stateful_ok``).

    Example:
        >>> chat, ctx = chat_body_from_responses({"model": "m", "input": "hi", "instructions": "be brief"})
        >>> chat["messages"]
        [{'role': 'system', 'content': 'be brief'}, {'role': 'user', 'content': 'hi'}]
    """
    name = provider or _DEFAULT_PROVIDER
    fields = _obj(body, "body")
    _check_fields(fields, name)
    stateful = _stateful_fields(fields, stateful_ok, name)
    messages: list[JSON] = []
    if fields.get("instructions") is not None:
        messages.append({"role": "system", "content": _str(fields["instructions"], "instructions")})
    messages += messages_from_input(fields.get("input"), name)
    if not messages and not stateful:
        raise _bad("input", "Missing required parameter: 'input'.", "missing_required_parameter")
    chat: JSON = {"model": _str(fields.get("model"), "model"), "messages": messages}
    chat |= _passthrough(fields) | _tool_fields(fields, name) | _text_fields(fields.get("text"))
    chat |= _reasoning_fields(fields.get("reasoning")) | _stream_fields(fields)
    if (max_output := _optional_int(fields, "max_output_tokens")) is not None:
        chat["max_completion_tokens"] = max_output
    _optional_int(fields, "max_tool_calls")
    include_logprobs = _include_logprobs(fields.get("include"))
    if include_logprobs or "top_logprobs" in chat:
        chat["logprobs"] = True
    return chat, _context(fields, chat, include_logprobs, stateful, ids or new_id, now or time.time)


# --- chat -> Response ----------------------------------------------------------------------------

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def incomplete_reason(finish_reason: str | None) -> str | None:
    """The ``incomplete_details.reason`` for a chat ``finish_reason``, or None when complete."""
    return _INCOMPLETE.get(finish_reason or "")


def usage_from_chat(usage: CompletionUsage | None) -> JSON | None:
    """Chat usage in the Responses shape (``input_tokens``, ``output_tokens``, their details)."""
    if usage is None:
        return None
    prompt = usage.prompt_tokens_details
    completion = usage.completion_tokens_details
    # The internal schema keeps no cache-write count; a provider may leave one as an extra field.
    written = (prompt.model_extra or {}).get("cache_write_tokens", 0) if prompt is not None else 0
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": (prompt.cached_tokens if prompt is not None else None) or 0,
            "cache_write_tokens": written if isinstance(written, int) else 0,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {
            "reasoning_tokens": (completion.reasoning_tokens if completion is not None else None) or 0
        },
        "total_tokens": usage.total_tokens,
    }


def logprobs_from_chat(logprobs: ChoiceLogprobs | None) -> list[JSON]:
    """Chat token logprobs in the Responses ``output_text.logprobs`` shape."""
    if logprobs is None or not logprobs.content:
        return []
    return [
        {
            "token": entry.token,
            "bytes": entry.bytes or [],
            "logprob": entry.logprob,
            "top_logprobs": [
                {"token": t.token, "bytes": t.bytes or [], "logprob": t.logprob} for t in entry.top_logprobs
            ],
        }
        for entry in logprobs.content
    ]


def output_text_part(text: str, logprobs: list[JSON] | None = None) -> JSON:
    part: JSON = {"type": "output_text", "text": text, "annotations": []}
    if logprobs is not None:
        part["logprobs"] = logprobs
    return part


def message_item(item_id: str, content: list[JSON], status: str) -> JSON:
    return {"type": "message", "id": item_id, "role": "assistant", "status": status, "content": content}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str) -> JSON:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def reasoning_item(item_id: str, text: str, status: str) -> JSON:
    content = [{"type": "reasoning_text", "text": text}]
    return {"type": "reasoning", "id": item_id, "summary": [], "content": content, "status": status}


def reasoning_text_of(message: Any) -> str | None:
    """Thinking text a provider kept on a message or delta (``reasoning_content``)."""
    value = (getattr(message, "model_extra", None) or {}).get("reasoning_content")
    return value if isinstance(value, str) and value else None


def _output_items(
    message: ChatCompletionMessage, logprobs: ChoiceLogprobs | None, ctx: ResponsesContext, status: str
) -> list[JSON]:
    items: list[JSON] = []
    if (thinking := reasoning_text_of(message)) is not None:
        items.append(reasoning_item(ctx.ids("rs"), thinking, status))
    content: list[JSON] = []
    if message.content:
        content.append(
            output_text_part(message.content, logprobs_from_chat(logprobs) if ctx.include_logprobs else None)
        )
    if message.refusal:
        content.append({"type": "refusal", "refusal": message.refusal})
    if content or not message.tool_calls:
        items.append(message_item(ctx.ids("msg"), content or [output_text_part("")], status))
    for call in message.tool_calls or []:
        items.append(
            function_call_item(ctx.ids("fc"), call.id, call.function.name, call.function.arguments, status)
        )
    return items


def response_object(
    ctx: ResponsesContext,
    *,
    status: str,
    output: list[JSON],
    usage: JSON | None = None,
    incomplete: str | None = None,
    error: JSON | None = None,
    model: str | None = None,
) -> JSON:
    """A ``Response`` JSON object: the reply fields, then the request fields it echoes."""
    return {
        "id": ctx.response_id,
        "object": "response",
        "created_at": ctx.created_at,
        "completed_at": int(ctx.now()) if status == "completed" else None,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "model": model or ctx.model,
        "output": output,
        "usage": usage,
        **ctx.echo(),
    }


def response_from_chat(completion: ChatCompletion | Mapping[str, Any], ctx: ResponsesContext) -> JSON:
    """Translate an internal ``ChatCompletion`` into a Responses ``Response`` JSON object.

    ``finish_reason`` ``length`` or ``content_filter`` makes the response ``incomplete`` with that
    reason; the model is the one that served the reply (the completion's), as in chat completions.

    Example:
        >>> _, ctx = chat_body_from_responses({"model": "m", "input": "hi"})
        >>> out = response_from_chat({"id": "c", "created": 0, "model": "m", "choices": [
        ...     {"index": 0, "finish_reason": "stop", "message": {"content": "hello"}}]}, ctx)
        >>> out["status"], out["output"][0]["content"][0]["text"]
        ('completed', 'hello')
    """
    reply = (
        completion if isinstance(completion, ChatCompletion) else ChatCompletion.model_validate(completion)
    )
    choice = reply.choices[0] if reply.choices else None
    reason = incomplete_reason(choice.finish_reason if choice is not None else None)
    status = "incomplete" if reason else "completed"
    output = _output_items(choice.message, choice.logprobs, ctx, status) if choice is not None else []
    usage = usage_from_chat(reply.usage)
    return response_object(
        ctx, status=status, output=output, usage=usage, incomplete=reason, model=reply.model
    )


def __getattr__(name: str) -> Any:
    # The encoder lives in its own module, which imports this one; re-exported lazily.
    if name == "ResponsesStreamEncoder":
        from gateway.ingress.responses_stream import ResponsesStreamEncoder

        return ResponsesStreamEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
