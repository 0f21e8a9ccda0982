"""Property tests: any valid OpenAI request translates; tool calls round-trip; junk never leaks.

- A random valid OpenAI request (roles, content parts, tools, tool calls and their results,
  sampling parameters) translates for both providers without an error other than the typed
  ``BadRequestError`` family.
- Tool calls round-trip: OpenAI -> Anthropic -> OpenAI and OpenAI -> Gemini -> OpenAI give the same
  names and arguments (and, for Anthropic, the same ids).
- Malformed upstream bodies and streams (random junk, and real recordings with one field deleted or
  replaced) raise ``APIResponseValidationError`` (or a mapped status error for a body that *is* an
  error), never a ``KeyError``/``TypeError``.
- Any JSON Schema converts for Gemini or is refused with ``UnsupportedParameterError`` naming it.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.errors import APIResponseValidationError, APIStatusError, BadRequestError
from gateway.core.types import ChatRequest
from providers import anthropic, gemini
from providers.base import ServerSentEvent, Target
from tests.servers import anthropic_server, gemini_server

ANTHROPIC = Target("anthropic", "anthropic", "https://a", "claude-sonnet-4-5", api_key="k")
GEMINI = Target("gemini", "gemini", "https://g", "gemini-2.0-flash", api_key="k")
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names = st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True)
texts = st.text(min_size=1, max_size=40).filter(lambda s: s.strip())
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=10))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(names, inner, max_size=3)),
    max_leaves=8,
)
arguments = st.dictionaries(names, json_values, max_size=4)
image_parts = st.sampled_from(
    [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4AAQ"}},
    ]
)
text_parts = texts.map(lambda t: {"type": "text", "text": t})
user_content = st.one_of(texts, st.lists(st.one_of(text_parts, image_parts), min_size=1, max_size=3))


@st.composite
def tool_call_turns(draw: st.DrawFn) -> list[dict[str, Any]]:
    """An assistant turn with 1-3 tool calls and the tool messages answering them."""
    count = draw(st.integers(1, 3))
    calls = [
        {
            "id": f"call_{i}_{draw(st.from_regex(r'[A-Za-z0-9]{4,10}', fullmatch=True))}",
            "type": "function",
            "function": {"name": draw(names), "arguments": json.dumps(draw(arguments))},
        }
        for i in range(count)
    ]
    content = draw(st.one_of(st.none(), texts))
    turns: list[dict[str, Any]] = [{"role": "assistant", "content": content, "tool_calls": calls}]
    turns += [{"role": "tool", "tool_call_id": c["id"], "content": draw(texts)} for c in calls]
    return turns


@st.composite
def requests(draw: st.DrawFn) -> ChatRequest:
    messages: list[dict[str, Any]] = []
    if draw(st.booleans()):
        messages.append({"role": draw(st.sampled_from(["system", "developer"])), "content": draw(texts)})
    for _ in range(draw(st.integers(1, 3))):
        messages.append({"role": "user", "content": draw(user_content)})
        kind = draw(st.sampled_from(["none", "text", "tools"]))
        if kind == "text":
            messages.append({"role": "assistant", "content": draw(texts)})
        elif kind == "tools":
            messages.extend(draw(tool_call_turns()))
    tools = [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": draw(texts),
                "parameters": {
                    "type": "object",
                    "properties": {
                        p: {"type": draw(st.sampled_from(["string", "integer", "boolean"]))} for p in props
                    },
                    "required": sorted(props)[:1],
                },
            },
        }
        for name, props in draw(
            st.dictionaries(names, st.lists(names, max_size=3, unique=True), max_size=3)
        ).items()
    ]
    optional: dict[str, Any] = {
        "temperature": draw(st.one_of(st.none(), st.floats(0, 1))),
        "top_p": draw(st.one_of(st.none(), st.floats(0, 1))),
        "max_tokens": draw(st.one_of(st.none(), st.integers(1, 4096))),
        "stop": draw(st.one_of(st.none(), texts, st.lists(texts, min_size=1, max_size=3))),
        "user": draw(st.one_of(st.none(), names)),
        "stream": draw(st.one_of(st.none(), st.booleans())),
    }
    if tools:
        optional["tools"] = tools
        optional["tool_choice"] = draw(
            st.sampled_from(
                [
                    "auto",
                    "none",
                    "required",
                    {"type": "function", "function": {"name": tools[0]["function"]["name"]}},
                ]
            )
        )
    fmt = draw(st.sampled_from([None, {"type": "json_object"}, {"type": "text"}]))
    if fmt:
        optional["response_format"] = fmt
    return ChatRequest(model="m", messages=messages, **{k: v for k, v in optional.items() if v is not None})


@SETTINGS
@given(requests())
def test_any_valid_request_translates_for_anthropic(req: ChatRequest) -> None:
    spec = anthropic.build_request(req, ANTHROPIC)
    json.dumps(spec.json)
    roles = [m["role"] for m in spec.json["messages"]]
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False)), "turns alternate"
    # The loopback server (the same checks as the real API) accepts it.
    anthropic_server.to_openai_messages(spec.json)


@SETTINGS
@given(requests())
def test_any_valid_request_translates_for_gemini(req: ChatRequest) -> None:
    spec = gemini.build_request(req, GEMINI)
    json.dumps(spec.json)
    roles = [c["role"] for c in spec.json["contents"]]
    assert all(a != b for a, b in zip(roles, roles[1:], strict=False)), "turns alternate"
    gemini_server.to_openai_messages(spec.json, GEMINI.model)


@SETTINGS
@given(st.lists(st.tuples(names, arguments), min_size=1, max_size=4), st.booleans())
def test_tool_calls_round_trip_through_anthropic(calls: list[tuple[str, dict[str, Any]]], text: bool) -> None:
    openai_calls = [
        {"id": f"toolu_{i:04d}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
        for i, (n, a) in enumerate(calls)
    ]
    req = ChatRequest(
        model="m",
        messages=[
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "ok" if text else None, "tool_calls": openai_calls},
        ],
    )
    sent = anthropic.build_request(req, ANTHROPIC).json["messages"][-1]
    # What Anthropic would answer with these blocks, translated back.
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "c",
        "content": sent["content"],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    back = anthropic.parse_response(200, {}, json.dumps(message).encode(), ANTHROPIC).choices[0].message
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in back.tool_calls or []] == [
        (c["id"], c["function"]["name"], json.loads(c["function"]["arguments"])) for c in openai_calls
    ]
    assert back.content == ("ok" if text else None)


@SETTINGS
@given(st.lists(st.tuples(names, arguments), min_size=1, max_size=4))
def test_tool_calls_round_trip_through_gemini(calls: list[tuple[str, dict[str, Any]]]) -> None:
    first = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [{"functionCall": {"name": n, "args": a}} for n, a in calls],
                },
                "finishReason": "STOP",
            }
        ]
    }
    reply = gemini.parse_response(200, {}, json.dumps(first).encode(), GEMINI).choices[0].message
    req = ChatRequest(model="m", messages=[{"role": "user", "content": "go"}, reply.to_dict()])
    sent = gemini.build_request(req, GEMINI).json["contents"][-1]
    assert sent == first["candidates"][0]["content"]


junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(
                [
                    "content",
                    "type",
                    "text",
                    "id",
                    "usage",
                    "candidates",
                    "parts",
                    "functionCall",
                    "name",
                    "args",
                    "input",
                    "stop_reason",
                    "finishReason",
                    "usageMetadata",
                    "index",
                    "message",
                    "delta",
                    "content_block",
                    "input_tokens",
                    "promptTokenCount",
                    "embeddings",
                    "values",
                    "embedding",
                    "error",
                    "promptFeedback",
                ]
            ),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=12,
)


def _tolerates(call: Any) -> None:
    try:
        call()
    except (APIResponseValidationError, APIStatusError):
        pass


@settings(max_examples=150, deadline=None)
@given(junk)
def test_malformed_bodies_raise_typed_errors(value: Any) -> None:
    raw = json.dumps(value).encode()
    _tolerates(lambda: anthropic.parse_response(200, {}, raw, ANTHROPIC))
    _tolerates(lambda: gemini.parse_response(200, {}, raw, GEMINI))
    _tolerates(lambda: gemini.parse_embeddings_response(200, {}, raw, GEMINI))
    _tolerates(lambda: anthropic.map_error(500, {}, raw, ANTHROPIC))
    _tolerates(lambda: gemini.map_error(500, {}, raw, GEMINI))


@settings(max_examples=100, deadline=None)
@given(st.lists(junk, min_size=1, max_size=5), st.binary(max_size=20))
def test_malformed_streams_raise_typed_errors(values: list[Any], garbage: bytes) -> None:
    req = ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
    events = [ServerSentEvent(data=json.dumps(v)) for v in values] + [
        ServerSentEvent(data=garbage.decode("latin-1"))
    ]
    for module, target in ((anthropic, ANTHROPIC), (gemini, GEMINI)):
        state = module.new_stream(req, target)

        def run(module: Any = module, target: Any = target, state: Any = state) -> None:
            for event in events:
                module.parse_stream_event(event, state)
            module.end_stream(state)

        _tolerates(run)


def test_a_bad_request_is_the_only_refusal() -> None:
    """Translation refusals are all ``BadRequestError`` (named parameter), never a crash."""
    req = ChatRequest(
        model="m", messages=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]
    )
    for module, target in ((anthropic, ANTHROPIC), (gemini, GEMINI)):
        try:
            module.build_request(req, target)
        except BadRequestError as exc:
            assert exc.status_code == 400


schema_keywords = st.sampled_from(
    [
        "type",
        "properties",
        "items",
        "enum",
        "const",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "$ref",
        "nullable",
        "additionalProperties",
        "format",
        "minimum",
        "required",
        "description",
        "patternProperties",
        "$defs",
    ]
)
schemas = st.recursive(
    st.sampled_from(
        [{"type": t} for t in ("string", "integer", "number", "boolean", "null", "object", "array")]
        + [{"type": ["string", "null"]}, {"enum": ["a", "b"]}, {"const": 3}, {"$ref": "#/$defs/X"}, True, {}]
    ),
    lambda inner: st.one_of(
        st.dictionaries(names, inner, max_size=3).map(lambda p: {"type": "object", "properties": p}),
        inner.map(lambda i: {"type": "array", "items": i}),
        st.lists(inner, min_size=1, max_size=3).map(lambda b: {"anyOf": b}),
        st.tuples(schema_keywords, inner).map(lambda kv: {kv[0]: kv[1]}),
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(schemas)
def test_any_schema_converts_or_is_refused_by_name(schema: Any) -> None:
    from gateway.core.errors import UnsupportedParameterError
    from providers._gemini_schema import to_gemini_schema

    root = {"$defs": {"X": {"type": "string"}}, **schema} if isinstance(schema, dict) else schema
    try:
        converted = to_gemini_schema(root, "tools[0].function.parameters")
    except UnsupportedParameterError as exc:
        assert exc.param == "tools[0].function.parameters" and "Gemini cannot express" in str(exc)
        return
    json.dumps(converted)
    assert "$ref" not in json.dumps(converted) and "oneOf" not in converted


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, sub in value.items():
            out += _paths(sub, (*prefix, key))
    elif isinstance(value, list):
        for i, sub in enumerate(value):
            out += _paths(sub, (*prefix, i))
    return out


def _mutated(value: Any, path: tuple[Any, ...], replacement: Any, delete: bool) -> Any:
    if not path:
        return replacement
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    if not rest and delete and isinstance(copy, dict):
        del copy[head]
    else:
        copy[head] = _mutated(copy[head], rest, replacement, delete)  # type: ignore[index]
    return copy


RECORDED_STREAMS = [
    (anthropic, ANTHROPIC, "anthropic/messages_stream_with_server_and_client_tool.response.sse"),
    (anthropic, ANTHROPIC, "anthropic/messages_stream_parallel_tool_use.turn1.response.sse"),
    (gemini, GEMINI, "gemini/stream_sse_function_call.turn3.response.sse"),
    (gemini, GEMINI, "gemini/stream_sse_usage_mid_stream.response.sse"),
]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(RECORDED_STREAMS), st.data())
def test_mutated_recordings_raise_typed_errors(case: Any, data: st.DataObject) -> None:
    """One field of one event of a real stream deleted or replaced: a typed error, or a valid result."""
    from tests.providers.replay import SHARED, events_of

    module, target, name = case
    events = events_of(SHARED / name)
    at = data.draw(st.integers(0, len(events) - 1))
    payload = json.loads(events[at].data)
    path = data.draw(st.sampled_from(_paths(payload)))
    changed = _mutated(payload, path, data.draw(junk), data.draw(st.booleans()))
    events[at] = ServerSentEvent(data=json.dumps(changed), event=events[at].event)
    req = ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
    state = module.new_stream(req, target)

    def run() -> None:
        for event in events:
            module.parse_stream_event(event, state)
        module.end_stream(state)

    _tolerates(run)


RECORDED_BODIES = [
    (anthropic, ANTHROPIC, "anthropic/messages_tool_use.turn2.response.json"),
    (anthropic, ANTHROPIC, "anthropic/messages_text_system.response.json"),
    (gemini, GEMINI, "gemini/generate_function_call_gemini3.response.json"),
    (gemini, GEMINI, "gemini/generate_max_tokens.response.json"),
]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(RECORDED_BODIES), st.data())
def test_mutated_recorded_bodies_raise_typed_errors(case: Any, data: st.DataObject) -> None:
    from tests.providers.replay import SHARED

    module, target, name = case
    payload = json.loads((SHARED / name).read_text())
    path = data.draw(st.sampled_from(_paths(payload)))
    changed = _mutated(payload, path, data.draw(junk), data.draw(st.booleans()))
    _tolerates(lambda: module.parse_response(200, {}, json.dumps(changed).encode(), target))
