"""OpenAI request -> Anthropic Messages request: recorded requests are reproduced, each rule holds."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.core.errors import BadRequestError, UnsupportedParameterError
from gateway.core.types import ChatRequest
from providers import anthropic
from providers.base import Target
from tests.providers.replay import OWN, SHARED, stems
from tests.servers import anthropic_server

RECORDED = SHARED / "anthropic"
RECORDED_REQUESTS = stems(RECORDED, ".request.json")


def target(model: str = "claude-sonnet-4-5", **options: Any) -> Target:
    return Target(
        "anthropic", "anthropic", "https://api.anthropic.com", model, api_key="sk-ant", options=options
    )


def body(options: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("model", "anthropic/claude-sonnet-4-5")
    kwargs.setdefault("messages", [{"role": "user", "content": "hi"}])
    spec = anthropic.build_request(ChatRequest(**kwargs), target(**(options or {})))
    result: dict[str, Any] = spec.json
    return result


def _as_openai(recorded: dict[str, Any]) -> ChatRequest:
    """The OpenAI request a caller would write for a recorded Anthropic request."""
    extra = {k: v for k, v in recorded.items() if k == "output_config" and "format" not in v}
    request: dict[str, Any] = {
        "model": recorded["model"],
        "messages": anthropic_server.to_openai_messages(recorded),
        "max_tokens": recorded["max_tokens"],
        **extra,
    }
    for ours, theirs in (("temperature", "temperature"), ("stop", "stop_sequences")):
        if theirs in recorded:
            request[ours] = recorded[theirs]
    if recorded.get("stream"):
        request["stream"] = True
    fmt = (recorded.get("output_config") or {}).get("format")
    if fmt:
        request["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": fmt["schema"]},
        }
    if "tools" in recorded:
        request["tools"] = [_tool(t) for t in recorded["tools"]]
        choice = (recorded.get("tool_choice") or {}).get("type")
        if choice:
            request["tool_choice"] = {"any": "required"}.get(choice, choice)
    return ChatRequest(**request)


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if set(tool) - {"name", "description", "input_schema"}:
        return tool  # an Anthropic-only tool (server tools, defer_loading) is passed through as written
    function = {"name": tool["name"], "description": tool["description"], "parameters": tool["input_schema"]}
    return {"type": "function", "function": function}


def _normalized(recorded: dict[str, Any]) -> dict[str, Any]:
    """Equivalent spellings made equal: string content as one text block, defaults left out."""
    out = {k: v for k, v in recorded.items() if not (k == "stream" and v is False)}
    messages = []
    for message in recorded["messages"]:
        content = message["content"]
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        blocks = [{k: v for k, v in b.items() if not (k == "is_error" and v is False)} for b in blocks]
        messages.append({"role": message["role"], "content": blocks})
    out["messages"] = messages
    return out


@pytest.mark.parametrize("name", RECORDED_REQUESTS)
def test_recorded_request_is_reproduced(name: str) -> None:
    recorded = json.loads((RECORDED / f"{name}.request.json").read_text())
    req = _as_openai(recorded)
    spec = anthropic.build_request(req, target(recorded["model"]))
    assert spec.json == _normalized(recorded)
    meta = json.loads((RECORDED / f"{name}.meta.json").read_text())
    assert spec.url == meta["request"]["url"].split("?")[0]
    assert spec.headers["anthropic-version"] == "2023-06-01"


def test_spec_url_headers_and_stream() -> None:
    spec = anthropic.build_request(
        ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}], stream=True), target()
    )
    assert (spec.method, spec.url, spec.stream) == ("POST", "https://api.anthropic.com/v1/messages", True)
    assert spec.headers == {
        "anthropic-version": "2023-06-01",
        "x-api-key": "sk-ant",
        "accept": "text/event-stream",
    }
    assert spec.json["stream"] is True


def test_system_messages_are_lifted_and_joined_in_order() -> None:
    got = body(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "again"},
        ]
    )
    assert got["system"] == "Be brief.\n\nAnswer in French."
    assert got["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "again"}]}
    ]


def test_cache_control_keeps_system_blocks() -> None:
    mark = {"type": "ephemeral"}
    got = body(
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "Long doc", "cache_control": mark}]},
            {"role": "user", "content": "q"},
        ]
    )
    assert got["system"] == [{"type": "text", "text": "Long doc", "cache_control": mark}]


def test_images_data_url_and_http_url() -> None:
    got = body(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"},
                    },
                ],
            }
        ]
    )
    assert got["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            None,
            {"type": "tool", "name": "get_weather"},
        ),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, True, None),
    ],
)
def test_tools_and_tool_choice(choice: Any, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    kwargs: dict[str, Any] = {"tools": [WEATHER]}
    if choice is not None:
        kwargs["tool_choice"] = choice
    if parallel is not None:
        kwargs["parallel_tool_calls"] = parallel
    got = body(**kwargs)
    assert got["tools"] == [
        {
            "name": "get_weather",
            "description": "Weather for a city",
            "input_schema": WEATHER["function"]["parameters"],  # type: ignore[index]
        }
    ]
    assert got.get("tool_choice") == expected


def test_tool_round_trip_messages() -> None:
    got = body(
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "call.2/x",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call.2/x", "content": [{"type": "text", "text": "rainy"}]},
            {"role": "user", "content": "Thanks"},
        ]
    )
    assert got["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2_x", "name": "get_weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "sunny"},
                {
                    "type": "tool_result",
                    "tool_use_id": "call_2_x",
                    "content": [{"type": "text", "text": "rainy"}],
                },
                {"type": "text", "text": "Thanks"},
            ],
        },
    ]


def test_sampling_stop_user_and_max_tokens() -> None:
    got = body(
        temperature=0.2, top_p=0.9, stop="END", user="user-42", max_completion_tokens=50, max_tokens=10
    )
    assert {k: got[k] for k in ("temperature", "top_p", "stop_sequences", "metadata", "max_tokens")} == {
        "temperature": 0.2,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-42"},
        "max_tokens": 50,
    }


@pytest.mark.parametrize(
    ("model", "options", "expected"),
    [
        ("claude-3-haiku-20240307", {}, 4096),
        ("claude-3-5-haiku-20241022", {}, 8192),
        ("claude-sonnet-4-5", {}, 8192),
        ("some-proxy-model", {}, 4096),
        ("claude-sonnet-4-5", {"default_max_tokens": 1234}, 1234),
    ],
)
def test_default_max_tokens(model: str, options: dict[str, Any], expected: int) -> None:
    spec = anthropic.build_request(
        ChatRequest(model=model, messages=[{"role": "user", "content": "x"}]), target(model, **options)
    )
    assert spec.json["max_tokens"] == expected


def test_json_schema_uses_native_output_format() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "integer"}},
        "required": ["a"],
        "additionalProperties": False,
    }
    got = body(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "A", "schema": schema, "strict": True},
        }
    )
    assert got["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


def test_json_object_asks_in_the_system_prompt() -> None:
    got = body(
        messages=[{"role": "system", "content": "Be terse."}, {"role": "user", "content": "x"}],
        response_format={"type": "json_object"},
    )
    assert (
        got["system"] == f"Be terse.\n\n{anthropic_server.JSON_OBJECT_HINT}, with no text before or after it."
    )


def test_anthropic_only_fields_pass_through() -> None:
    got = body(top_k=5, thinking={"type": "enabled", "budget_tokens": 1024})
    assert (got["top_k"], got["thinking"]) == (5, {"type": "enabled", "budget_tokens": 1024})
    assert got["max_tokens"] == 8192 + 1024, "the default leaves room for the answer after thinking"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"n": 2}, "n"),
        ({"logit_bias": {"50256": -100}}, "logit_bias"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"seed": 7}, "seed"),
    ],
)
def test_unsupported_parameters_raise_before_any_call(kwargs: dict[str, Any], param: str) -> None:
    req = ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], **kwargs)
    assert anthropic.unsupported_params(req) == [param]
    with pytest.raises(UnsupportedParameterError) as info:
        anthropic.build_request(req, target())
    error = info.value
    assert isinstance(error, BadRequestError) and error.status_code == 400
    assert (error.param, error.provider, error.code) == (param, "Anthropic", "unsupported_parameter")
    assert param in str(error) and "Anthropic" in str(error)
    dropped = anthropic.build_request(req, target(drop_unsupported_params=True)).json
    assert param not in dropped and "n" not in dropped


def test_neutral_values_are_not_unsupported() -> None:
    req = ChatRequest(
        model="m",
        messages=[{"role": "user", "content": "x"}],
        n=1,
        logprobs=False,
        presence_penalty=0,
        metadata={"a": "b"},
    )
    assert anthropic.unsupported_params(req) == []
    assert "metadata" not in anthropic.build_request(req, target()).json


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([{"role": "function", "name": "f", "content": "x"}], "role 'function'"),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}],
                }
            ],
            "input_audio",
        ),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}],
            "image_url.url",
        ),
        (
            [
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}],
                }
            ],
            "data URL",
        ),
        (
            [
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
                    ],
                }
            ],
            "not valid JSON",
        ),
        ([{"role": "tool", "content": "x"}], "tool_call_id"),
    ],
)
def test_untranslatable_messages_are_bad_requests(messages: list[dict[str, Any]], fragment: str) -> None:
    with pytest.raises(BadRequestError, match=fragment):
        anthropic.build_request(ChatRequest(model="m", messages=messages), target())


def test_empty_turns_are_left_out() -> None:
    got = body(
        messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "again"},
        ]
    )
    assert got["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "again"}]}
    ]


def test_thinking_blocks_go_back_first() -> None:
    reply = json.loads((OWN / "anthropic" / "messages_thinking_parallel_tools.response.json").read_text())
    message = anthropic.parse_response(200, {}, json.dumps(reply).encode(), target()).choices[0].message
    calls = message.tool_calls or []
    got = body(
        messages=[
            {"role": "user", "content": "Weather in Paris and Tokyo?"},
            message.to_dict(),
            *({"role": "tool", "tool_call_id": c.id, "content": "sunny"} for c in calls),
        ]
    )
    assert got["messages"][1]["content"] == reply["content"]


def test_output_config_from_the_caller_is_merged() -> None:
    schema = {"type": "object", "properties": {}, "additionalProperties": False}
    got = body(
        response_format={"type": "json_schema", "json_schema": {"name": "A", "schema": schema}},
        output_config={"effort": "low"},
    )
    assert got["output_config"] == {"format": {"type": "json_schema", "schema": schema}, "effort": "low"}
