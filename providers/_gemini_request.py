"""OpenAI chat request -> Gemini ``generateContent`` body (one function per message and part shape)."""

from __future__ import annotations

from typing import Any

from gateway.core.types import ChatRequest
from providers._gemini_schema import to_gemini_schema
from providers._translate import (
    data_url,
    image_url_of,
    invalid_request,
    json_arguments,
    merge_same_role,
    message_text,
)

__all__ = ["SIGNATURE_MARK", "request_body", "split_call_id", "unsupported_params"]

# Gemini 3 wants each function call's ``thoughtSignature`` back in the next turn. OpenAI messages
# have nowhere to keep it but the tool call id, so it rides there after this mark.
SIGNATURE_MARK = "__thought__"

# Gemini's thinking budget for OpenAI's reasoning_effort values (as Google's OpenAI layer maps them).
_THINKING_BUDGET = {"none": 0, "minimal": 512, "low": 1024, "medium": 8192, "high": 24576}

_UNSUPPORTED = (
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "audio",
    "prediction",
    "web_search_options",
    "functions",
    "function_call",
    "verbosity",
)
_NEUTRAL: dict[str, tuple[Any, ...]] = {"logprobs": (False,), "top_logprobs": (0,), "logit_bias": ({},)}

# Files the Gemini API can fetch itself; any other http URL must be sent inline.
_FILE_URI_PREFIXES = ("gs://", "https://generativelanguage.googleapis.com/", "https://www.youtube.com/")


def unsupported_params(req: ChatRequest) -> list[str]:
    """The parameters of ``req`` Gemini cannot express (values that mean "off" are fine)."""
    names = [
        name
        for name in _UNSUPPORTED
        if getattr(req, name) is not None and getattr(req, name) not in _NEUTRAL.get(name, ())
    ]
    if req.parallel_tool_calls is False:
        names.append("parallel_tool_calls")
    if req.modalities and set(req.modalities) - {"text"}:
        names.append("modalities")
    if req.reasoning_effort is not None and req.reasoning_effort not in _THINKING_BUDGET:
        names.append("reasoning_effort")
    return names


def split_call_id(call_id: str) -> tuple[str, str | None]:
    """``"call_x__thought__SIG"`` -> ``("call_x", "SIG")``."""
    head, mark, signature = call_id.partition(SIGNATURE_MARK)
    return head, (signature if mark and signature else None)


def request_body(req: ChatRequest) -> dict[str, Any]:
    """The ``generateContent`` body for ``req`` (see ``providers.gemini`` for the rules)."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, to name each functionResponse
    for i, message in enumerate(req.messages):
        where = f"messages[{i}]"
        match message.get("role"):
            case "system" | "developer":
                value = message_text(message.get("content"), f"{where}.system")
                if value:
                    system.append({"text": value})
            case "user":
                turns.append({"role": "user", "parts": _user_parts(message.get("content"), where)})
            case "assistant":
                turns.append({"role": "model", "parts": _model_parts(message, where, names)})
            case "tool":
                turns.append({"role": "user", "parts": [_function_response(message, where, names)]})
            case role:
                raise invalid_request(
                    f"{where}.role: Gemini cannot express role {role!r}; use tools and tool messages",
                    param=f"{where}.role",
                )
    body: dict[str, Any] = {"contents": merge_same_role(turns, "parts")}
    if system:
        body["systemInstruction"] = {"parts": system}
    _tools(req, body)
    config = _generation_config(req)
    extra = dict(req.model_extra or {})  # Gemini-only fields the caller passed (safetySettings, ...)
    config.update(extra.pop("generationConfig", None) or {})
    if "top_k" in extra:
        config["topK"] = extra.pop("top_k")
    if config:
        body["generationConfig"] = config
    body.update(extra)
    return body


def _generation_config(req: ChatRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for name, key in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("n", "candidateCount"),
    ):
        if getattr(req, name) is not None:
            config[key] = getattr(req, name)
    if req.max_output_tokens is not None:
        config["maxOutputTokens"] = req.max_output_tokens
    if req.stop is not None:
        config["stopSequences"] = [req.stop] if isinstance(req.stop, str) else list(req.stop)
    if req.reasoning_effort in _THINKING_BUDGET:
        config["thinkingConfig"] = {"thinkingBudget": _THINKING_BUDGET[str(req.reasoning_effort)]}
    _response_format(req, config)
    return config


def _response_format(req: ChatRequest, config: dict[str, Any]) -> None:
    fmt = req.response_format or {}
    match fmt.get("type"):
        case "json_object":
            config["responseMimeType"] = "application/json"
        case "json_schema":
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                raise invalid_request(
                    "response_format.json_schema.schema: expected a JSON Schema object",
                    param="response_format.json_schema",
                )
            config["responseMimeType"] = "application/json"
            config["responseSchema"] = to_gemini_schema(schema, "response_format.json_schema.schema")


def _tools(req: ChatRequest, body: dict[str, Any]) -> None:
    if not req.tools:
        return
    declarations = []
    for i, tool in enumerate(req.tools):
        function = tool.get("function") if tool.get("type") == "function" else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise invalid_request(f"tools[{i}]: Gemini takes function tools only", param=f"tools[{i}]")
        declaration: dict[str, Any] = {"name": function["name"]}
        if function.get("description") is not None:
            declaration["description"] = function["description"]
        params = function.get("parameters")
        if params:
            declaration["parameters"] = to_gemini_schema(params, f"tools[{i}].function.parameters")
        declarations.append(declaration)
    body["tools"] = [{"functionDeclarations": declarations}]
    config = _tool_config(req.tool_choice)
    if config is not None:
        body["toolConfig"] = {"functionCallingConfig": config}


def _tool_config(choice: str | dict[str, Any] | None) -> dict[str, Any] | None:
    match choice:
        case None:
            return None
        case "auto":
            return {"mode": "AUTO"}
        case "none":
            return {"mode": "NONE"}
        case "required":
            return {"mode": "ANY"}
        case {"type": "function", "function": {"name": str(name)}}:
            return {"mode": "ANY", "allowedFunctionNames": [name]}
        case _:
            raise invalid_request(
                f"tool_choice: expected 'auto', 'none', 'required' or a named function, got {choice!r}",
                param="tool_choice",
            )


# --- messages ------------------------------------------------------------------------------------


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"text": content}] if content else []
    parts = []
    for j, part in enumerate(content):
        converted = _content_part(part, f"{where}.content[{j}]")
        if converted is not None:
            parts.append(converted)
    return parts


def _content_part(part: dict[str, Any], where: str) -> dict[str, Any] | None:
    match part.get("type"):
        case "text":
            return {"text": str(part["text"])} if part.get("text") else None
        case "image_url":
            return _image_part(part, where)
        case "input_audio":
            return _audio_part(part, where)
        case "file":
            return _file_part(part, where)
        case "refusal":
            return {"text": str(part["refusal"])} if part.get("refusal") else None
        case kind:
            raise invalid_request(f"{where}: Gemini cannot take a {kind!r} content part", param=where)


def _image_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    url = image_url_of(part, where)
    inline = data_url(url, f"{where}.image_url.url")
    if inline is not None:
        return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}
    if url.startswith(_FILE_URI_PREFIXES):
        return {"fileData": {"mimeType": _guess_image_type(url), "fileUri": url}}
    raise invalid_request(
        f"{where}.image_url.url: Gemini cannot fetch arbitrary URLs; send the image inline as a "
        "data:<mime>;base64,... URL, or upload it with the Files API and pass its URI",
        param=f"{where}.image_url",
    )


def _guess_image_type(url: str) -> str:
    path = url.lower().split("?", 1)[0]
    for suffix, mime in ((".png", "image/png"), (".webp", "image/webp"), (".gif", "image/gif")):
        if path.endswith(suffix):
            return mime
    return "image/jpeg"


def _audio_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    audio = part.get("input_audio")
    if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
        raise invalid_request(f"{where}.input_audio: expected data and format", param=where)
    return {"inlineData": {"mimeType": f"audio/{audio.get('format', 'wav')}", "data": audio["data"]}}


def _file_part(part: dict[str, Any], where: str) -> dict[str, Any]:
    file = part.get("file")
    raw = file.get("file_data") if isinstance(file, dict) else None
    inline = data_url(str(raw), f"{where}.file.file_data") if isinstance(raw, str) else None
    if inline is None:
        raise invalid_request(
            f"{where}.file: Gemini takes files inline only (file_data as a data: URL), not file_id",
            param=f"{where}.file",
        )
    return {"inlineData": {"mimeType": inline[0], "data": inline[1]}}


def _model_parts(message: dict[str, Any], where: str, names: dict[str, str]) -> list[dict[str, Any]]:
    parts = _user_parts(message.get("content"), where)
    for k, call in enumerate(message.get("tool_calls") or []):
        parts.append(_function_call(call, f"{where}.tool_calls[{k}]", names))
    return parts


def _function_call(call: Any, where: str, names: dict[str, str]) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or "id" not in call:
        raise invalid_request(f"{where}: expected an id and a function with a name", param=where)
    args = json_arguments(function.get("arguments"), where)
    if not isinstance(args, dict):
        raise invalid_request(f"{where}.function.arguments: Gemini needs a JSON object", param=where)
    names[str(call["id"])] = function["name"]
    part: dict[str, Any] = {"functionCall": {"name": function["name"], "args": args}}
    _, signature = split_call_id(str(call["id"]))
    if signature:
        part["thoughtSignature"] = signature
    return part


def _function_response(message: dict[str, Any], where: str, names: dict[str, str]) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    name = names.get(str(call_id)) or message.get("name")
    if not isinstance(name, str):
        raise invalid_request(
            f"{where}.tool_call_id: no earlier assistant tool call has the id {call_id!r}; Gemini needs "
            "the function's name for each tool result",
            param=f"{where}.tool_call_id",
        )
    result = message_text(message.get("content"), where)
    return {"functionResponse": {"name": name, "response": {"result": result}}}
