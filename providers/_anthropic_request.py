"""OpenAI chat request -> Anthropic Messages request body (one function per message and part shape)."""

from __future__ import annotations

import re
from typing import Any

from gateway.core.types import ChatRequest
from providers._translate import (
    data_url,
    image_url_of,
    invalid_request,
    json_arguments,
    merge_same_role,
    message_text,
)

__all__ = ["JSON_OBJECT_INSTRUCTION", "request_body", "tool_id", "unsupported_params"]

# ``response_format: json_object`` has no Anthropic equivalent; we ask for it in the system prompt.
JSON_OBJECT_INSTRUCTION = "Respond only with a single valid JSON object, with no text before or after it."

_DEFAULT_MAX_TOKENS = 4096
# Anthropic requires max_tokens. Defaults by model prefix when the caller gives none: generous enough
# for a full answer, small enough not to eat the output-token rate limit (which counts max_tokens).
_MAX_TOKENS_BY_PREFIX: tuple[tuple[str, int], ...] = (
    ("claude-3-opus", 4096),
    ("claude-3-sonnet", 4096),
    ("claude-3-haiku", 4096),
    ("claude-3-5", 8192),
    ("claude-3-7", 8192),
    ("claude-", 8192),
)

# OpenAI parameters Anthropic has no counterpart for, with the value that means "not asked".
_UNSUPPORTED = (
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "audio",
    "prediction",
    "web_search_options",
    "functions",
    "function_call",
    "reasoning_effort",
    "verbosity",
)
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "logprobs": (False,),
    "top_logprobs": (0,),
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "logit_bias": ({},),
}

_TOOL_ID = re.compile(r"[^a-zA-Z0-9_-]")


def default_max_tokens(model: str) -> int:
    """The max_tokens sent when the caller gives none, by model name prefix."""
    for prefix, value in _MAX_TOKENS_BY_PREFIX:
        if model.startswith(prefix):
            return value
    return _DEFAULT_MAX_TOKENS


def unsupported_params(req: ChatRequest) -> list[str]:
    """The parameters of ``req`` the Messages API cannot express (values that mean "off" are fine)."""
    names = [
        name
        for name in _UNSUPPORTED
        if getattr(req, name) is not None and getattr(req, name) not in _NEUTRAL.get(name, ())
    ]
    if req.n is not None and req.n != 1:
        names.insert(0, "n")
    if req.modalities and set(req.modalities) - {"text"}:
        names.append("modalities")
    return names


def tool_id(value: object) -> str:
    """Anthropic tool ids match ``[a-zA-Z0-9_-]+``; other providers' ids are mapped into that set."""
    return _TOOL_ID.sub("_", str(value)) or "tool"


def request_body(req: ChatRequest, model: str, default_max: int | None) -> dict[str, Any]:
    """The Messages API body for ``req`` (see ``providers.anthropic`` for the rules)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(req.messages):
        where = f"messages[{i}]"
        match message.get("role"):
            case "system" | "developer":
                system.extend(_system_blocks(message, where))
            case "user":
                turns.append({"role": "user", "content": _user_blocks(message.get("content"), where)})
            case "assistant":
                turns.append({"role": "assistant", "content": _assistant_blocks(message, where)})
            case "tool":
                turns.append({"role": "user", "content": [_tool_result(message, where)]})
            case role:
                raise invalid_request(
                    f"{where}.role: Anthropic cannot express role {role!r}; use tools and tool messages",
                    param=f"{where}.role",
                )
    if req.response_format and req.response_format.get("type") == "json_object":
        system.append({"type": "text", "text": JSON_OBJECT_INSTRUCTION})
    body: dict[str, Any] = {"model": model, "messages": merge_same_role(turns, "content")}
    body["max_tokens"] = _max_tokens(req, model, default_max)
    if system:
        body["system"] = _system_value(system)
    _sampling(req, body)
    _tools(req, body)
    _output_format(req, body)
    if req.stream:
        body["stream"] = True
    extra = dict(req.model_extra or {})  # Anthropic-only fields (top_k, thinking) the caller passed
    if isinstance(extra.get("output_config"), dict) and "output_config" in body:
        extra["output_config"] = {**body["output_config"], **extra["output_config"]}
    body.update(extra)
    return body


def _max_tokens(req: ChatRequest, model: str, default_max: int | None) -> int:
    """The caller's limit, else the default; a thinking budget (which must fit under max_tokens)
    is added to the default so that the answer still has room."""
    if req.max_output_tokens is not None:
        return req.max_output_tokens
    default = default_max or default_max_tokens(model)
    thinking = (req.model_extra or {}).get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    return default + budget if isinstance(budget, int) and not isinstance(budget, bool) else default


def _system_value(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """One string, joined in order, unless a block carries more than text (``cache_control``)."""
    if all(set(block) == {"type", "text"} for block in blocks):
        return "\n\n".join(block["text"] for block in blocks)
    return blocks


def _sampling(req: ChatRequest, body: dict[str, Any]) -> None:
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.top_p is not None:
        body["top_p"] = req.top_p
    if req.stop is not None:
        body["stop_sequences"] = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    user = req.user if req.user is not None else req.safety_identifier
    if user is not None:
        body["metadata"] = {"user_id": user}


def _tools(req: ChatRequest, body: dict[str, Any]) -> None:
    if not req.tools:
        return
    body["tools"] = [_tool(tool, f"tools[{i}]") for i, tool in enumerate(req.tools)]
    choice = _tool_choice(req.tool_choice)
    if req.parallel_tool_calls is False:
        choice = choice or {"type": "auto"}
        if choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
    if choice is not None:
        body["tool_choice"] = choice


def _tool(tool: dict[str, Any], where: str) -> dict[str, Any]:
    if tool.get("type") != "function":
        return tool  # an Anthropic tool (web_search, bash, ...) passed through as written
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise invalid_request(f"{where}.function.name: expected a string", param=f"{where}.function")
    out: dict[str, Any] = {"name": function["name"]}
    if function.get("description") is not None:
        out["description"] = function["description"]
    out["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    return out


def _tool_choice(choice: str | dict[str, Any] | None) -> dict[str, Any] | None:
    match choice:
        case None:
            return None
        case "auto":
            return {"type": "auto"}
        case "none":
            return {"type": "none"}
        case "required":
            return {"type": "any"}
        case {"type": "function", "function": {"name": str(name)}}:
            return {"type": "tool", "name": name}
        case _:
            raise invalid_request(
                f"tool_choice: expected 'auto', 'none', 'required' or a named function, got {choice!r}",
                param="tool_choice",
            )


def _output_format(req: ChatRequest, body: dict[str, Any]) -> None:
    """``json_schema`` uses Anthropic's native structured outputs (``output_config.format``)."""
    fmt = req.response_format
    if not fmt or fmt.get("type") != "json_schema":
        return
    spec = fmt.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise invalid_request(
            "response_format.json_schema.schema: expected a JSON Schema object",
            param="response_format.json_schema",
        )
    body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}


# --- messages ------------------------------------------------------------------------------------


def _system_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, list):
        message_text(content, f"{where}.system")  # only text parts
        return [_text_part(part) for part in content if part.get("text")]
    value = message_text(content, f"{where}.system")
    return [{"type": "text", "text": value}] if value else []


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks = []
    for j, part in enumerate(content):
        block = _content_part(part, f"{where}.content[{j}]")
        if block is not None:
            blocks.append(block)
    return blocks


def _content_part(part: dict[str, Any], where: str) -> dict[str, Any] | None:
    match part.get("type"):
        case "text":
            return _text_part(part) if part.get("text") else None
        case "image_url":
            return _image_part(part, where)
        case "file":
            return _file_part(part, where)
        case "refusal":
            return {"type": "text", "text": str(part.get("refusal", ""))} if part.get("refusal") else None
        case kind:
            raise invalid_request(f"{where}: Anthropic cannot take a {kind!r} content part", param=where)


def _text_part(part: dict[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": str(part.get("text", ""))}
    if "cache_control" in part:  # Anthropic prompt caching, written on the OpenAI part
        block["cache_control"] = part["cache_control"]
    return block


def _image_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    url = image_url_of(part, where)
    inline = data_url(url, f"{where}.image_url.url")
    if inline is not None:
        mime, data = inline
        return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise invalid_request(
        f"{where}.image_url.url: expected a data: URL or an http(s) URL", param=f"{where}.image_url"
    )


def _file_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    file = part.get("file")
    inline = (
        data_url(str(file.get("file_data", "")), f"{where}.file.file_data")
        if isinstance(file, dict)
        else None
    )
    if inline is None:
        raise invalid_request(
            f"{where}.file: Anthropic takes files inline only (file_data as a data: URL), not file_id",
            param=f"{where}.file",
        )
    mime, data = inline
    return {"type": "document", "source": {"type": "base64", "media_type": mime, "data": data}}


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks = _thinking_blocks(message.get("thinking_blocks"), where)
    blocks += _user_blocks(message.get("content"), where)
    for k, call in enumerate(message.get("tool_calls") or []):
        blocks.append(_tool_call(call, f"{where}.tool_calls[{k}]"))
    return blocks


def _thinking_blocks(value: Any, where: str) -> list[dict[str, Any]]:
    """The ``thinking_blocks`` a translated Anthropic reply carried, sent back first and unchanged."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(b, dict) and b.get("type") in ("thinking", "redacted_thinking") for b in value
    ):
        raise invalid_request(
            f"{where}.thinking_blocks: expected the list of thinking blocks of an Anthropic reply",
            param=f"{where}.thinking_blocks",
        )
    return list(value)


def _tool_call(call: dict[str, Any], where: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or "id" not in call:
        raise invalid_request(f"{where}: expected an id and a function with a name", param=where)
    arguments = json_arguments(function.get("arguments"), where)
    if not isinstance(arguments, dict):
        raise invalid_request(f"{where}.function.arguments: Anthropic needs a JSON object", param=where)
    return {"type": "tool_use", "id": tool_id(call["id"]), "name": function["name"], "input": arguments}


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    if "tool_call_id" not in message:
        raise invalid_request(
            f"{where}.tool_call_id: a tool message needs one", param=f"{where}.tool_call_id"
        )
    content = message.get("content")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_id(message["tool_call_id"])}
    if isinstance(content, list):
        block["content"] = _user_blocks(content, where)
    else:
        block["content"] = content if isinstance(content, str) else ""
    return block
