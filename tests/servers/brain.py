"""The deterministic "model" behind every loopback server, independent of any wire protocol.

Given the conversation (already decoded into OpenAI shapes by the protocol server), it answers:
- with a call to the first tool when tools are offered and the last turn is the user's;
- with a sentence quoting the tool result when the last turn is a tool result;
- with a JSON document that satisfies the schema when ``response_format`` asks for one;
- otherwise with ``Echo: <last user text>``.
Token counts are word counts, so every protocol reports the same usage for the same conversation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass
class Answer:
    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def words(self) -> list[str]:
        """The text split into stream deltas (each keeps its leading space)."""
        if not self.text:
            return []
        parts = self.text.split(" ")
        return [parts[0]] + [" " + p for p in parts[1:]]


def count_tokens(value: Any) -> int:
    """Words in every string of ``value``: the servers' shared, protocol-independent token count."""
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, dict):
        return sum(count_tokens(v) for k, v in value.items() if k not in ("role", "type", "id"))
    if isinstance(value, list):
        return sum(count_tokens(v) for v in value)
    return 0


def text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return " ".join(
        part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
    )


def answer(
    messages: list[dict[str, Any]],
    *,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: Any = None,
    response_format: dict[str, Any] | None = None,
    max_tokens: int | None = None,
    parallel_tool_calls: bool | None = None,
) -> Answer:
    prompt_tokens = count_tokens(messages) + count_tokens(tools or [])
    last = messages[-1]
    result = Answer(prompt_tokens=max(prompt_tokens, 1))
    if tools and tool_choice != "none" and last.get("role") == "user":
        chosen = (
            tools
            if parallel_tool_calls is not False and "both" in text_of(last.get("content"))
            else tools[:1]
        )
        for i, tool in enumerate(chosen):
            function = tool.get("function", tool)
            args = example_for(function.get("parameters") or {"type": "object"}, text_of(last.get("content")))
            call_id = "call_" + hashlib.sha1(f"{function['name']}{i}".encode()).hexdigest()[:20]
            result.tool_calls.append(ToolCall(call_id, function["name"], json.dumps(args)))
        result.finish_reason = "tool_calls"
        result.completion_tokens = sum(count_tokens(json.loads(c.arguments)) + 1 for c in result.tool_calls)
        return result
    if last.get("role") == "tool":
        result.text = f"The tool said: {text_of(last.get('content'))}"
    elif response_format and response_format.get("type") == "json_schema":
        schema = response_format.get("json_schema", {}).get("schema", {"type": "object"})
        result.text = json.dumps(example_for(schema, text_of(last.get("content"))))
    elif response_format and response_format.get("type") == "json_object":
        result.text = json.dumps({"echo": text_of(last.get("content"))})
    else:
        result.text = f"Echo: {text_of(last.get('content'))}"
    words = result.words
    if max_tokens is not None and len(words) > max_tokens:
        result.text = "".join(words[:max_tokens])
        result.finish_reason = "length"
    result.completion_tokens = max(len(result.words), 1)
    return result


def example_for(schema: dict[str, Any], hint: str, defs: dict[str, Any] | None = None) -> Any:
    """A small value that validates against ``schema`` (objects, arrays, enums, $ref, anyOf)."""
    defs = defs if defs is not None else schema.get("$defs", schema.get("definitions", {}))
    if "$ref" in schema:
        return example_for(defs[schema["$ref"].split("/")[-1]], hint, defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return example_for(schema[key][0], hint, defs)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: example_for(sub, hint, defs) for name, sub in props.items()}
    if kind == "array":
        return [example_for(schema.get("items", {"type": "string"}), hint, defs)]
    if kind == "integer":
        return 1
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return (hint.split() or ["x"])[-1].strip("?.!,")


def embedding(text: str, dims: int = 8) -> list[float]:
    """A deterministic unit-ish vector for ``text``."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % len(digest)] - 128) / 128, 6) for i in range(dims)]
