"""Structured outputs: pydantic classes as ``response_format`` and tools, as the openai SDK does it.

``pydantic_function_tool(Model)`` and ``type_to_response_format(Model)`` produce OpenAI's strict JSON
schemas (every object closed with ``additionalProperties: false``, every property required);
``parse_choices`` fills ``message.parsed`` and raises the SDK's finish-reason errors.
"""

from __future__ import annotations

import inspect
from typing import Any

import pydantic

from gateway.errors import ContentFilterFinishReasonError, LengthFinishReasonError
from gateway.types import ChatCompletion


def to_strict_json_schema(model: type[pydantic.BaseModel] | pydantic.TypeAdapter[Any]) -> dict[str, Any]:
    schema = model.json_schema() if isinstance(model, pydantic.TypeAdapter) else model.model_json_schema()
    return _strict(schema, root=schema)


def _strict(schema: dict[str, Any], *, root: dict[str, Any]) -> dict[str, Any]:
    for defs_key in ("$defs", "definitions"):
        for name, sub in list(schema.get(defs_key, {}).items()):
            schema[defs_key][name] = _strict(sub, root=root)
    if schema.get("type") == "object" and "additionalProperties" not in schema:
        schema["additionalProperties"] = False
    properties = schema.get("properties")
    if isinstance(properties, dict):
        schema["required"] = list(properties)
        schema["properties"] = {k: _strict(v, root=root) for k, v in properties.items()}
    if isinstance(schema.get("items"), dict):
        schema["items"] = _strict(schema["items"], root=root)
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            schema[key] = [_strict(v, root=root) for v in schema[key]]
    all_of = schema.get("allOf")
    if isinstance(all_of, list):
        if len(all_of) == 1:
            schema.update(_strict(all_of[0], root=root))
            schema.pop("allOf")
        else:
            schema["allOf"] = [_strict(v, root=root) for v in all_of]
    if schema.get("default", ...) is None:
        schema.pop("default")
    return schema


def type_to_response_format(response_format: Any) -> dict[str, Any]:
    """A pydantic class (or a ready dict) as a ``response_format`` parameter."""
    if isinstance(response_format, dict):
        return response_format
    if inspect.isclass(response_format) and issubclass(response_format, pydantic.BaseModel):
        schema = to_strict_json_schema(response_format)
        name = response_format.__name__
    else:
        schema = to_strict_json_schema(pydantic.TypeAdapter(response_format))
        name = getattr(response_format, "__name__", "Response")
    return {"type": "json_schema", "json_schema": {"schema": schema, "name": name, "strict": True}}


def pydantic_function_tool(
    model: type[pydantic.BaseModel], *, name: str | None = None, description: str | None = None
) -> dict[str, Any]:
    """A strict function tool whose parameters are ``model``'s JSON schema (openai's helper)."""
    if description is None:
        description = model.__doc__
    function: dict[str, Any] = {
        "name": name or model.__name__,
        "strict": True,
        "parameters": to_strict_json_schema(model),
    }
    if description is not None:
        function["description"] = description
    return {"type": "function", "function": function}


def parse_choices(
    completion: ChatCompletion, response_format: Any, tools: list[dict[str, Any]] | None
) -> ChatCompletion:
    """Fill ``message.parsed`` (and strict tool calls' ``parsed_arguments``) like ``chat.completions.parse``."""
    for choice in completion.choices:
        if choice.finish_reason == "length":
            raise LengthFinishReasonError(completion=completion)
        if choice.finish_reason == "content_filter":
            raise ContentFilterFinishReasonError()
        message = choice.message
        if message.content and not message.refusal and response_format is not None:
            message.parsed = _parse_content(response_format, message.content)
        for call in message.tool_calls or ():
            if _is_strict(tools, call.function.name):
                call.function.parsed_arguments = pydantic.TypeAdapter(Any).validate_json(
                    call.function.arguments
                )
    return completion


def _parse_content(response_format: Any, content: str) -> Any:
    if inspect.isclass(response_format) and issubclass(response_format, pydantic.BaseModel):
        return response_format.model_validate_json(content)
    if isinstance(response_format, dict):
        return None
    return pydantic.TypeAdapter(response_format).validate_json(content)


def _is_strict(tools: list[dict[str, Any]] | None, name: str) -> bool:
    for tool in tools or ():
        function = tool.get("function", {})
        if function.get("name") == name and function.get("strict"):
            return True
    return False
