"""The Responses ingress dialect, checked against the openai SDK's own types and stream helpers.

The SDK talks to a ``MockTransport`` that stands in for the core: it translates the request with
``chat_body_from_responses`` and answers with ``response_from_chat`` / ``ResponsesStreamEncoder``
over canned chat completions, so every assertion is on what a real ``client.responses`` call sees.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import httpx2
import openai
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from gateway.core.errors import BadRequestError, UnsupportedParameterError
from gateway.core.types import ChatCompletion, ChatCompletionChunk, ChatRequest, ChoiceLogprobs
from gateway.ingress.responses import ResponsesContext, chat_body_from_responses, response_from_chat
from gateway.ingress.responses_stream import ResponsesStreamEncoder

EVENTS: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseStreamEvent)


def counter_ids() -> Any:
    counter = itertools.count(1)
    return lambda prefix: f"{prefix}_{next(counter):04x}"


def translate(body: dict[str, Any], **kwargs: Any) -> tuple[dict[str, Any], ResponsesContext]:
    chat, ctx = chat_body_from_responses(body, ids=counter_ids(), now=lambda: 1700000000.0, **kwargs)
    ChatRequest.model_validate(chat)  # the internal schema accepts what we produce
    return chat, ctx


def completion(
    content: str | None = "hello",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    finish: str = "stop",
    extra: dict[str, Any] | None = None,
) -> ChatCompletion:
    message: dict[str, Any] = {"role": "assistant", "content": content, **(extra or {})}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return ChatCompletion.model_validate(
        {
            "id": "chatcmpl-1",
            "created": 1,
            "model": "upstream-model",
            "choices": [{"index": 0, "finish_reason": finish, "message": message}],
            "usage": {
                "prompt_tokens": 11,
                "completion_tokens": 7,
                "total_tokens": 18,
                "prompt_tokens_details": {"cached_tokens": 3},
                "completion_tokens_details": {"reasoning_tokens": 2},
            },
        }
    )


def chunk(
    delta: dict[str, Any] | None = None, *, finish: str | None = None, usage: bool = False
) -> ChatCompletionChunk:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    data: dict[str, Any] = {"id": "c", "created": 1, "model": "upstream-model", "choices": choices}
    if usage:
        data["usage"] = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
    return ChatCompletionChunk.model_validate(data)


def call_delta(
    index: int, *, id: str | None = None, name: str | None = None, args: str | None = None
) -> dict[str, Any]:
    function = {k: v for k, v in (("name", name), ("arguments", args)) if v is not None}
    tool_call: dict[str, Any] = {"index": index, "function": function}
    if id is not None:
        tool_call |= {"id": id, "type": "function"}
    return {"tool_calls": [tool_call]}


def encode(ctx: ResponsesContext, chunks: list[ChatCompletionChunk], error: str | None = None) -> bytes:
    encoder = ResponsesStreamEncoder(ctx)
    out = encoder.start() + b"".join(encoder.feed(c) for c in chunks)
    return out + (encoder.error(error, "server_error") if error else encoder.finish())


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if block:
            kind, data = block.split("\n")
            assert kind.startswith("event: ")
            payload = json.loads(data.removeprefix("data: "))
            assert payload["type"] == kind.removeprefix("event: ")
            events.append(payload)
    return events


# --- a fake core under the real SDK --------------------------------------------------------------


class FakeCore:
    """Answers ``/v1/responses`` by translating to chat and back over scripted chat replies."""

    def __init__(
        self, reply: ChatCompletion | None = None, chunks: list[ChatCompletionChunk] | None = None
    ) -> None:
        self.reply = reply
        self.chunks = chunks or []
        self.chat_bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/responses"
        try:
            chat, ctx = translate(json.loads(request.content))
        except BadRequestError as exc:
            return httpx2.Response(400, json={"error": exc.body})
        self.chat_bodies.append(chat)
        if chat.get("stream"):
            body = encode(ctx, self.chunks)
            return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)
        assert self.reply is not None
        return httpx2.Response(200, json=response_from_chat(self.reply, ctx))


def sdk(core: FakeCore) -> openai.OpenAI:
    transport = httpx2.MockTransport(core)
    return openai.OpenAI(api_key="x", base_url="http://t/v1", http_client=httpx2.Client(transport=transport))


# --- request translation -------------------------------------------------------------------------


def test_string_input_and_instructions() -> None:
    chat, ctx = translate(
        {
            "model": "anthropic/claude",
            "input": "hi",
            "instructions": "be brief",
            "max_output_tokens": 50,
            "temperature": 0.2,
            "top_p": 0.9,
            "metadata": {"k": "v"},
            "user": "u1",
            "safety_identifier": "s1",
            "prompt_cache_key": "pck",
            "service_tier": "auto",
            "parallel_tool_calls": False,
            "store": False,
            "reasoning": {"effort": "low", "summary": "auto"},
            "text": {"format": {"type": "text"}, "verbosity": "low"},
        }
    )
    assert chat == {
        "model": "anthropic/claude",
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
        "max_completion_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "metadata": {"k": "v"},
        "user": "u1",
        "safety_identifier": "s1",
        "prompt_cache_key": "pck",
        "service_tier": "auto",
        "parallel_tool_calls": False,
        "reasoning_effort": "low",
        "verbosity": "low",
    }
    assert (ctx.response_id, ctx.created_at, ctx.instructions, ctx.max_output_tokens) == (
        "resp_0001",
        1700000000,
        "be brief",
        50,
    )


def test_multi_turn_items_with_function_calls() -> None:
    body = {
        "model": "m",
        "input": [
            {"role": "developer", "content": "dev rules"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "weather in Paris and Rome?"},
                    {"type": "input_image", "image_url": "https://x/p.png", "detail": "low"},
                ],
            },
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
            {
                "type": "message",
                "id": "msg_1",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Checking.", "annotations": []}],
            },
            {
                "type": "function_call",
                "id": "fc_1",
                "call_id": "call_a",
                "name": "weather",
                "arguments": '{"city":"Paris"}',
            },
            {"type": "function_call", "call_id": "call_b", "name": "weather", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "call_a", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "call_b",
                "output": [{"type": "input_text", "text": "rain"}],
            },
            {"role": "user", "content": "thanks"},
        ],
    }
    chat, _ = translate(body)
    assert chat["messages"] == [
        {"role": "developer", "content": "dev rules"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "weather in Paris and Rome?"},
                {"type": "image_url", "image_url": {"url": "https://x/p.png", "detail": "low"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "rain"}]},
        {"role": "user", "content": "thanks"},
    ]


def test_function_call_without_a_preceding_message_and_refusals() -> None:
    chat, _ = translate(
        {
            "model": "m",
            "input": [
                {"role": "user", "content": "go"},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "ok"},
                {"type": "message", "role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]},
            ],
        }
    )
    assert chat["messages"][1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
    }
    assert chat["messages"][3] == {"role": "assistant", "content": None, "refusal": "no"}


def test_tools_tool_choice_and_formats() -> None:
    schema = {
        "type": "object",
        "properties": {"x": {"type": "integer"}},
        "required": ["x"],
        "additionalProperties": False,
    }
    chat, ctx = translate(
        {
            "model": "m",
            "input": "hi",
            "tools": [
                {"type": "function", "name": "f", "description": "d", "parameters": schema, "strict": True}
            ],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "json_schema", "name": "Out", "schema": schema, "strict": True}},
        }
    )
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {"name": "f", "description": "d", "parameters": schema, "strict": True},
        }
    ]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Out", "schema": schema, "strict": True},
    }
    assert ctx.tool_choice == {"type": "function", "name": "f"}
    for given in ("auto", "none", "required"):
        assert translate({"model": "m", "input": "x", "tool_choice": given})[0]["tool_choice"] == given
    allowed = {"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "f"}]}
    assert translate({"model": "m", "input": "x", "tool_choice": allowed})[0]["tool_choice"] == {
        "type": "allowed_tools",
        "allowed_tools": {"mode": "auto", "tools": [{"type": "function", "function": {"name": "f"}}]},
    }
    json_object = translate({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}})[0]
    assert json_object["response_format"] == {"type": "json_object"}


def test_stream_asks_for_usage_and_include_logprobs() -> None:
    chat, ctx = translate(
        {
            "model": "m",
            "input": "x",
            "stream": True,
            "stream_options": {"include_obfuscation": False},
            "include": ["message.output_text.logprobs", "reasoning.encrypted_content"],
            "top_logprobs": 2,
        }
    )
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    assert (chat["logprobs"], chat["top_logprobs"], ctx.include_logprobs) == (True, 2, True)


def error_of(body: dict[str, Any], kind: type[Exception] = BadRequestError, **kwargs: Any) -> Any:
    with pytest.raises(kind) as info:
        chat_body_from_responses(body, **kwargs)
    error = info.value
    assert isinstance(error, BadRequestError) and error.status_code == 400
    assert error.body["type"] == "invalid_request_error" and error.body["message"]  # type: ignore[index]
    return error


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": "x"}, "model", "missing_required_parameter"),
        ({"model": "m"}, "input", "missing_required_parameter"),
        ({"model": "m", "input": "x", "frobnicate": 1}, "frobnicate", "unknown_parameter"),
        ({"model": "m", "input": 3}, "input", "invalid_type"),
        ({"model": "m", "input": ["x"]}, "input[0]", "invalid_type"),
        ({"model": "m", "input": [{"content": "x"}]}, "input[0].type", "missing_required_parameter"),
        (
            {"model": "m", "input": [{"role": "user", "content": "a"}, {"role": "tool", "content": "x"}]},
            "input[1].role",
            "invalid_value",
        ),
        (
            {
                "model": "m",
                "input": [
                    {"role": "user", "content": "a"},
                    {"role": "user", "content": "b"},
                    {"type": "function_call_output", "output": "x"},
                ],
            },
            "input[2].call_id",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "input": [{"type": "function_call", "call_id": "c", "name": "f"}]},
            "input[0].arguments",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_text"}]}]},
            "input[0].content[0].text",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "bogus"}]}]},
            "input[0].content[0].type",
            "invalid_value",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "refusal", "refusal": "r"}]}]},
            "input[0].content[0].type",
            "invalid_value",
        ),
        ({"model": "m", "input": "x", "temperature": "hot"}, "temperature", "invalid_type"),
        ({"model": "m", "input": "x", "stream": 1}, "stream", "invalid_type"),
        ({"model": "m", "input": "x", "max_output_tokens": True}, "max_output_tokens", "invalid_type"),
        (
            {"model": "m", "input": "x", "text": {"format": {"type": "xml"}}},
            "text.format.type",
            "invalid_value",
        ),
        (
            {"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}},
            "text.format.name",
            "missing_required_parameter",
        ),
        ({"model": "m", "input": "x", "text": {"color": "red"}}, "text.color", "unknown_parameter"),
        ({"model": "m", "input": "x", "reasoning": {"depth": 3}}, "reasoning.depth", "unknown_parameter"),
        (
            {"model": "m", "input": "x", "include": ["file_search_call.nonsense"]},
            "include[0]",
            "invalid_value",
        ),
        (
            {"model": "m", "input": "x", "stream_options": {"include_usage": True}},
            "stream_options.include_usage",
            "unknown_parameter",
        ),
        (
            {"model": "m", "input": "x", "tools": [{"type": "function"}]},
            "tools[0].name",
            "missing_required_parameter",
        ),
        (
            {"model": "m", "input": "x", "tools": [{"type": "function", "name": "f", "defer_loading": True}]},
            "tools[0].defer_loading",
            "unknown_parameter",
        ),
    ],
)
def test_malformed_input_names_the_field(body: dict[str, Any], param: str, code: str) -> None:
    error = error_of(body)
    assert (error.param, error.code) == (param, code)
    assert param in error.message


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tools": [{"type": "function", "name": "f"}, {"type": "web_search"}]}, "tools[1].type"),
        ({"tools": [{"type": "mcp", "server_label": "s"}]}, "tools[0].type"),
        ({"tool_choice": {"type": "file_search"}}, "tool_choice.type"),
        ({"input": [{"type": "computer_call_output", "call_id": "c", "output": {}}]}, "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]},
            "input[0].content[0].file_id",
        ),
        ({"truncation": "auto"}, "truncation"),
        ({"context_management": [{"type": "compaction"}]}, "context_management"),
    ],
)
def test_what_chat_cannot_carry_is_refused(body: dict[str, Any], param: str) -> None:
    error = error_of({"model": "m", "input": "x", **body}, UnsupportedParameterError, provider="anthropic")
    assert (error.param, error.code, error.provider) == (param, "unsupported_parameter", "anthropic")
    assert param in error.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("previous_response_id", "resp_1"),
        ("conversation", "conv_1"),
        ("background", True),
        ("store", True),
        ("prompt", {"id": "pmpt_1"}),
    ],
)
def test_stateful_features_need_a_stateful_provider(field: str, value: Any) -> None:
    error = error_of({"model": "m", "input": "x", field: value}, UnsupportedParameterError, provider="gemini")
    assert error.param == field
    assert (
        error.message == f"{field}: {field} is not supported by gemini; it needs a provider that keeps state"
    )
    chat, ctx = chat_body_from_responses({"model": "m", "input": "x", field: value}, stateful_ok=True)
    assert field not in chat and ctx.stateful == {field: value}


def test_item_reference_needs_state() -> None:
    error = error_of(
        {"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, UnsupportedParameterError
    )
    assert error.param == "input[0]" and "keeps state" in error.message


def test_store_false_and_nulls_are_fine() -> None:
    chat, _ = translate(
        {
            "model": "m",
            "input": "x",
            "store": False,
            "background": False,
            "previous_response_id": None,
            "temperature": None,
            "truncation": "disabled",
            "image": None,
        }
    )
    assert chat == {"model": "m", "messages": [{"role": "user", "content": "x"}]}


# --- Response objects ----------------------------------------------------------------------------


def test_response_from_chat_validates_and_echoes() -> None:
    _, ctx = translate(
        {
            "model": "route:support",
            "input": "hi",
            "instructions": "sys",
            "temperature": 0.5,
            "max_output_tokens": 99,
            "metadata": {"a": "b"},
        }
    )
    out = response_from_chat(completion("hello"), ctx)
    response = Response.model_validate(out)
    assert "output_text" not in out
    assert out["output"] == [
        {
            "type": "message",
            "id": "msg_0002",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "hello", "annotations": []}],
        }
    ]
    assert out["usage"] == {
        "input_tokens": 11,
        "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
        "output_tokens": 7,
        "output_tokens_details": {"reasoning_tokens": 2},
        "total_tokens": 18,
    }
    assert (response.id, response.status, response.model, response.output_text) == (
        "resp_0001",
        "completed",
        "upstream-model",
        "hello",
    )
    assert (response.instructions, response.temperature, response.max_output_tokens, response.metadata) == (
        "sys",
        0.5,
        99,
        {"a": "b"},
    )
    assert (
        response.created_at,
        response.completed_at,
        response.tool_choice,
        response.parallel_tool_calls,
    ) == (1700000000, 1700000000, "auto", True)


def test_response_with_tool_calls_reasoning_and_refusal() -> None:
    _, ctx = translate(
        {"model": "m", "input": "hi", "tools": [{"type": "function", "name": "f", "parameters": {}}]}
    )
    calls = [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]
    out = response_from_chat(
        completion(None, tool_calls=calls, finish="tool_calls", extra={"reasoning_content": "hmm"}), ctx
    )
    Response.model_validate(out)
    assert out["output"] == [
        {
            "type": "reasoning",
            "id": "rs_0002",
            "summary": [],
            "content": [{"type": "reasoning_text", "text": "hmm"}],
            "status": "completed",
        },
        {
            "type": "function_call",
            "id": "fc_0003",
            "call_id": "call_1",
            "name": "f",
            "arguments": '{"a":1}',
            "status": "completed",
        },
    ]
    refused = response_from_chat(completion(None, extra={"refusal": "no"}), ctx)
    assert refused["output"][0]["content"] == [{"type": "refusal", "refusal": "no"}]


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_incomplete_responses(finish: str, reason: str) -> None:
    _, ctx = translate({"model": "m", "input": "hi"})
    out = response_from_chat(completion("trunc", finish=finish), ctx)
    response = Response.model_validate(out)
    assert (response.status, response.incomplete_details and response.incomplete_details.reason) == (
        "incomplete",
        reason,
    )
    assert out["output"][0]["status"] == "incomplete" and out["completed_at"] is None


def test_logprobs_are_included_when_asked() -> None:
    _, ctx = translate({"model": "m", "input": "hi", "include": ["message.output_text.logprobs"]})
    reply = completion("hi").model_copy(deep=True)
    reply.choices[0].logprobs = ChoiceLogprobs.model_validate(
        {
            "content": [
                {
                    "token": "hi",
                    "bytes": [104, 105],
                    "logprob": -0.1,
                    "top_logprobs": [{"token": "hi", "logprob": -0.1}],
                }
            ]
        }
    )
    out = response_from_chat(reply, ctx)
    Response.model_validate(out)
    assert out["output"][0]["content"][0]["logprobs"] == [
        {
            "token": "hi",
            "bytes": [104, 105],
            "logprob": -0.1,
            "top_logprobs": [{"token": "hi", "bytes": [], "logprob": -0.1}],
        }
    ]


def test_default_ids_look_like_openai_ids() -> None:
    chat, ctx = chat_body_from_responses({"model": "m", "input": "hi"})
    out = response_from_chat(
        completion("x", tool_calls=[{"id": "c", "function": {"name": "f", "arguments": "{}"}}]), ctx
    )
    assert out["id"].startswith("resp_") and len(out["id"]) > 20
    assert out["output"][0]["id"].startswith("msg_") and out["output"][1]["id"].startswith("fc_")


# --- streaming -----------------------------------------------------------------------------------

TEXT_CHUNKS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo"}),
    chunk({}, finish="stop"),
    chunk(usage=True),
]


def test_stream_events_validate_and_count() -> None:
    _, ctx = translate({"model": "m", "input": "hi", "stream": True})
    events = parse_sse(encode(ctx, TEXT_CHUNKS))
    for event in events:
        EVENTS.validate_python(event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[4] == {
        "type": "response.output_text.delta",
        "sequence_number": 4,
        "item_id": "msg_0002",
        "output_index": 0,
        "content_index": 0,
        "delta": "Hel",
        "logprobs": [],
    }
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert final["usage"]["input_tokens"] == 5 and final["status"] == "completed"
    assert set(final) == set(
        response_from_chat(completion(), ctx)
    )  # the same shape as the non-streaming reply


def test_sdk_create_and_stream_text() -> None:
    core = FakeCore(completion("Hello there"), TEXT_CHUNKS)
    client = sdk(core)
    response = client.responses.create(model="anthropic/claude", input="hi", instructions="be nice")
    assert response.output_text == "Hello there" and response.usage and response.usage.total_tokens == 18
    deltas = [
        e.delta
        for e in client.responses.create(model="m", input="hi", stream=True)
        if e.type == "response.output_text.delta"
    ]
    assert deltas == ["Hel", "lo"]
    with client.responses.stream(model="m", input="hi") as stream:
        texts = [e.snapshot for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert texts == ["Hel", "Hello"]
    assert final.output_text == "Hello" and final.usage and final.usage.output_tokens == 4
    assert core.chat_bodies[-1]["stream_options"] == {"include_usage": True}


class Weather(pydantic.BaseModel):
    city: str
    degrees: int


def test_sdk_parse_structured_output() -> None:
    core = FakeCore(completion('{"city":"Paris","degrees":21}'))
    parsed = sdk(core).responses.parse(model="m", input="weather?", text_format=Weather)
    assert parsed.output_parsed == Weather(city="Paris", degrees=21)
    fmt = core.chat_bodies[0]["response_format"]
    assert (
        fmt["type"] == "json_schema"
        and fmt["json_schema"]["name"] == "Weather"
        and fmt["json_schema"]["strict"] is True
    )


def test_sdk_stream_parse_structured_output() -> None:
    chunks = [
        chunk({"content": '{"city":"Rome",'}),
        chunk({"content": '"degrees":18}'}, finish="stop"),
        chunk(usage=True),
    ]
    with sdk(FakeCore(chunks=chunks)).responses.stream(model="m", input="w?", text_format=Weather) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == Weather(city="Rome", degrees=18)


TOOL_CHUNKS = [
    chunk({"role": "assistant", "content": "Let me check."}),
    chunk(call_delta(0, id="call_a", name="weather", args="")),
    chunk(call_delta(0, args='{"city":')),
    chunk(call_delta(1, id="call_b", name="weather", args='{"city":"Rome"}')),
    chunk(call_delta(0, args='"Paris"}')),
    chunk({}, finish="tool_calls"),
    chunk(usage=True),
]


def test_sdk_stream_tool_calls_and_round_trip() -> None:
    tools: list[Any] = [
        {
            "type": "function",
            "name": "weather",
            "parameters": {"type": "object", "properties": {}},
            "strict": False,
        }
    ]
    core = FakeCore(chunks=TOOL_CHUNKS)
    client = sdk(core)
    with client.responses.stream(model="m", input="weather?", tools=tools) as stream:
        snapshots = [e.snapshot for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert snapshots == ['{"city":', '{"city":"Rome"}', '{"city":"Paris"}']
    assert final.output_text == "Let me check."
    calls = [item for item in final.output if item.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        ("call_a", "weather", '{"city":"Paris"}'),
        ("call_b", "weather", '{"city":"Rome"}'),
    ]
    # The next turn sends the output back with the tool results, as the SDK docs show.
    core.reply = completion("Sunny in Paris, rain in Rome.")
    history: list[Any] = [{"role": "user", "content": "weather?"}, *final.output]
    history += [{"type": "function_call_output", "call_id": c.call_id, "output": "ok"} for c in calls]
    response = client.responses.create(model="m", input=history, tools=tools)
    assert response.output_text == "Sunny in Paris, rain in Rome."
    assert core.chat_bodies[-1]["messages"] == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_b",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_a", "content": "ok"},
        {"role": "tool", "tool_call_id": "call_b", "content": "ok"},
    ]


def test_stream_reasoning_then_text_and_incomplete() -> None:
    _, ctx = translate({"model": "m", "input": "hi", "stream": True})
    chunks = [
        chunk({"reasoning_content": "think"}),
        chunk({"content": "ans"}, finish="length"),
        chunk(usage=True),
    ]
    events = parse_sse(encode(ctx, chunks))
    for event in events:
        EVENTS.validate_python(event)
    kinds = [e["type"] for e in events]
    assert kinds[2:6] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
    ]
    assert kinds[-1] == "response.incomplete"
    final = Response.model_validate(events[-1]["response"])
    assert final.incomplete_details and final.incomplete_details.reason == "max_output_tokens"
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert [item.status for item in final.output] == ["completed", "incomplete"]


def test_stream_refusal() -> None:
    _, ctx = translate({"model": "m", "input": "hi", "stream": True})
    events = parse_sse(encode(ctx, [chunk({"refusal": "I can't"}, finish="stop")]))
    for event in events:
        EVENTS.validate_python(event)
    assert "response.refusal.delta" in [e["type"] for e in events]
    assert events[-1]["response"]["output"][0]["content"] == [{"type": "refusal", "refusal": "I can't"}]


def test_stream_error_makes_the_sdk_raise() -> None:
    _, ctx = translate({"model": "m", "input": "hi", "stream": True})
    raw = encode(ctx, TEXT_CHUNKS[:2], error="upstream went away")
    events = parse_sse(raw)
    for event in events:
        EVENTS.validate_python(event)
    assert [e["type"] for e in events[-2:]] == ["response.failed", "error"]
    failed = Response.model_validate(events[-2]["response"])
    assert failed.status == "failed" and failed.error and failed.error.message == "upstream went away"

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=raw)

    client = openai.OpenAI(
        api_key="x",
        base_url="http://t/v1",
        http_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
    )
    with pytest.raises(openai.APIError, match="upstream went away"):
        for _ in client.responses.create(model="m", input="hi", stream=True):
            pass
    with (
        pytest.raises(openai.APIError, match="upstream went away"),
        client.responses.stream(model="m", input="hi") as stream,
    ):
        stream.get_final_response()


def test_stream_state_over_parsed_events() -> None:
    from openai._models import construct_type
    from openai.lib.streaming.responses import ResponseStreamState

    _, ctx = translate({"model": "m", "input": "hi", "stream": True})
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=openai.omit, text_format=openai.omit)
    for raw in parse_sse(encode(ctx, TOOL_CHUNKS)):
        state.handle_event(construct_type(type_=ResponseStreamEvent, value=raw))  # type: ignore[arg-type]
    final = state._completed_response
    assert final is not None and final.output_text == "Let me check." and len(final.output) == 3


def test_deterministic_with_ids_and_clock() -> None:
    body = {"model": "m", "input": "hi", "stream": True}
    assert encode(translate(body)[1], TOOL_CHUNKS) == encode(translate(body)[1], TOOL_CHUNKS)


def test_stream_logprobs_when_included() -> None:
    _, ctx = translate(
        {"model": "m", "input": "hi", "stream": True, "include": ["message.output_text.logprobs"]}
    )
    logprobs = {"content": [{"token": "ok", "bytes": [111, 107], "logprob": -0.5, "top_logprobs": []}]}
    first = ChatCompletionChunk.model_validate(
        {
            "id": "c",
            "created": 1,
            "model": "m",
            "choices": [{"index": 0, "delta": {"content": "ok"}, "logprobs": logprobs}],
        }
    )
    events = parse_sse(encode(ctx, [first, chunk({}, finish="stop")]))
    for event in events:
        EVENTS.validate_python(event)
    delta = next(e for e in events if e["type"] == "response.output_text.delta")
    assert delta["logprobs"][0]["token"] == "ok"
    final = Response.model_validate(events[-1]["response"])
    part = final.output[0].content[0]  # type: ignore[union-attr]
    assert part.type == "output_text" and part.logprobs and part.logprobs[0].logprob == -0.5


def test_encoder_refuses_use_after_the_end() -> None:
    encoder = ResponsesStreamEncoder(translate({"model": "m", "input": "hi"})[1])
    encoder.start()
    encoder.finish()
    with pytest.raises(RuntimeError, match="after the response ended"):
        encoder.feed(chunk({"content": "late"}))
