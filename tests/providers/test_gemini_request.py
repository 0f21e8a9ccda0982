"""OpenAI request -> Gemini generateContent request: recorded conversations are reproduced, each rule
holds, JSON Schema is converted or refused with the path named."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.core.errors import BadRequestError, UnsupportedParameterError
from gateway.core.types import ChatRequest, EmbeddingRequest
from providers import gemini
from providers.base import Target
from tests.providers.replay import SHARED, stems
from tests.servers import gemini_server

RECORDED = SHARED / "gemini"
RECORDED_REQUESTS = stems(RECORDED, ".request.json")


def target(model: str = "gemini-2.0-flash", **options: Any) -> Target:
    return Target(
        "gemini",
        "gemini",
        "https://generativelanguage.googleapis.com",
        model,
        api_key="gm-key",
        options=options,
    )


def body(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("model", "gemini/gemini-2.0-flash")
    kwargs.setdefault("messages", [{"role": "user", "content": "hi"}])
    result: dict[str, Any] = gemini.build_request(ChatRequest(**kwargs), target()).json
    return result


def _shape(contents: list[dict[str, Any]]) -> list[tuple[str, list[Any]]]:
    """Roles and parts with what must survive: text, function names and arguments, response names."""
    out = []
    for turn in contents:
        parts: list[Any] = []
        for part in turn["parts"]:
            if "text" in part:
                parts.append(("text", part["text"]))
            elif "functionCall" in part:
                parts.append(("call", part["functionCall"]["name"], part["functionCall"].get("args", {})))
            elif "functionResponse" in part:
                parts.append(("response", part["functionResponse"]["name"]))
        out.append((turn.get("role", "user"), parts))
    return out


@pytest.mark.parametrize("name", RECORDED_REQUESTS)
def test_recorded_conversation_is_reproduced(name: str) -> None:
    """The loopback server reads the recorded request; translating what it read gives the same turns."""
    recorded = gemini_server.camel_keys(json.loads((RECORDED / f"{name}.request.json").read_text()))
    if "requests" in recorded:  # batchEmbedContents
        texts = [r["content"]["parts"][0]["text"] for r in recorded["requests"]]
        first = recorded["requests"][0]
        req = EmbeddingRequest(model="m", input=texts, dimensions=first.get("outputDimensionality"))
        if "taskType" in first:
            req = EmbeddingRequest(
                model="m", input=texts, dimensions=req.dimensions, task_type=first["taskType"]
            )
        model = first["model"].removeprefix("models/")
        spec = gemini.build_embeddings_request(req, target(model))
        assert spec.json == recorded
        assert spec.url.endswith(f"/v1beta/models/{model}:batchEmbedContents")
        return
    messages = gemini_server.to_openai_messages(recorded, "gemini-2.0-flash")
    tools, choice = gemini_server._tools(recorded)
    kwargs: dict[str, Any] = {"model": "m", "messages": messages}
    if tools:
        kwargs["tools"] = tools
    if choice not in (None, "auto"):
        kwargs["tool_choice"] = choice
    ours = gemini.build_request(ChatRequest(**kwargs), target()).json
    assert _shape(ours["contents"]) == _shape(recorded["contents"])
    if "systemInstruction" in recorded:
        assert ours["systemInstruction"] == {"parts": recorded["systemInstruction"]["parts"]}
    declared = [
        d["name"]
        for t in gemini_server.camel_keys(recorded.get("tools") or [])
        if isinstance(t, dict)
        for d in t.get("functionDeclarations", [])
    ]
    if isinstance(recorded.get("tools"), dict):
        declared = [d["name"] for d in recorded["tools"]["functionDeclarations"]]
    assert [d["name"] for t in ours.get("tools", []) for d in t["functionDeclarations"]] == declared
    assert gemini_server.to_openai_messages(ours, "gemini-2.0-flash") == messages


def test_spec_url_headers_and_stream() -> None:
    req = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])
    spec = gemini.build_request(req, target())
    assert (spec.method, spec.url, spec.stream, dict(spec.params)) == (
        "POST",
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent",
        False,
        {},
    )
    assert spec.headers == {"x-goog-api-key": "gm-key"}
    streaming = gemini.build_request(req.model_copy(update={"stream": True}), target("models/gemini-2.5-pro"))
    assert streaming.url.endswith("/v1beta/models/gemini-2.5-pro:streamGenerateContent")
    assert (streaming.stream, dict(streaming.params)) == (True, {"alt": "sse"})


def test_roles_system_and_merged_turns() -> None:
    got = body(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in French."},
            {"role": "user", "content": "hi"},
            {"role": "user", "content": [{"type": "text", "text": "there"}]},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "user", "content": "again"},
        ]
    )
    assert got == {
        "systemInstruction": {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "hi"}, {"text": "there"}]},
            {"role": "model", "parts": [{"text": "Bonjour"}]},
            {"role": "user", "parts": [{"text": "again"}]},
        ],
    }


def test_images_inline_and_file_uris() -> None:
    got = body(
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}},
                    {"type": "image_url", "image_url": {"url": "gs://bucket/cat.png"}},
                ],
            }
        ]
    )
    assert got["contents"][0]["parts"] == [
        {"inlineData": {"mimeType": "image/webp", "data": "UklGRg=="}},
        {"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/cat.png"}},
    ]
    with pytest.raises(BadRequestError, match="Gemini cannot fetch arbitrary URLs"):
        body(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}],
                }
            ]
        )


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": ["string", "null"], "enum": ["C", "F", None]},
            },
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


@pytest.mark.parametrize(
    ("choice", "config"),
    [
        (None, None),
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "get_weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
        ),
    ],
)
def test_tools_and_tool_choice(choice: Any, config: dict[str, Any] | None) -> None:
    got = body(tools=[WEATHER], **({"tool_choice": choice} if choice else {}))
    assert got["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "city": {"type": "STRING"},
                            "unit": {
                                "type": "STRING",
                                "nullable": True,
                                "format": "enum",
                                "enum": ["C", "F"],
                            },
                        },
                        "required": ["city"],
                    },
                }
            ]
        }
    ]
    assert got.get("toolConfig") == (None if config is None else {"functionCallingConfig": config})


def test_function_call_round_trip_names_each_response_and_restores_signatures() -> None:
    got = body(
        messages=[
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_a__thought__c2ln+/=",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                    },
                    {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
                ],
            },
            {"role": "tool", "tool_call_id": "call_a__thought__c2ln+/=", "content": "sunny"},
            {"role": "tool", "tool_call_id": "call_b", "content": "noon"},
        ]
    )
    assert got["contents"][1:] == [
        {
            "role": "model",
            "parts": [
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": "c2ln+/=",
                },
                {"functionCall": {"name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
                {"functionResponse": {"name": "get_time", "response": {"result": "noon"}}},
            ],
        },
    ]


def test_tool_result_for_an_unknown_call_is_refused() -> None:
    with pytest.raises(BadRequestError, match="no earlier assistant tool call has the id 'nope'"):
        body(
            messages=[
                {"role": "user", "content": "x"},
                {"role": "tool", "tool_call_id": "nope", "content": "y"},
            ]
        )


def test_generation_config() -> None:
    got = body(
        temperature=0.3,
        top_p=0.8,
        max_tokens=64,
        stop=["END", "STOP"],
        n=2,
        seed=11,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        reasoning_effort="low",
        top_k=4,
    )
    assert got["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.8,
        "seed": 11,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.2,
        "candidateCount": 2,
        "maxOutputTokens": 64,
        "stopSequences": ["END", "STOP"],
        "thinkingConfig": {"thinkingBudget": 1024},
        "topK": 4,
    }


def test_json_schema_and_json_object() -> None:
    schema = {
        "$defs": {
            "City": {
                "type": "object",
                "properties": {"name": {"type": "string"}},
                "required": ["name"],
                "title": "City",
            }
        },
        "type": "object",
        "properties": {"cities": {"type": "array", "items": {"$ref": "#/$defs/City"}}},
        "required": ["cities"],
        "additionalProperties": False,
    }
    got = body(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "Cities", "schema": schema, "strict": True},
        }
    )
    assert got["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {
                "cities": {
                    "type": "ARRAY",
                    "items": {
                        "type": "OBJECT",
                        "title": "City",
                        "properties": {"name": {"type": "STRING"}},
                        "required": ["name"],
                    },
                }
            },
            "required": ["cities"],
        },
    }
    assert body(response_format={"type": "json_object"})["generationConfig"] == {
        "responseMimeType": "application/json"
    }


@pytest.mark.parametrize(
    ("schema", "path"),
    [
        ({"type": "object", "properties": {"x": {"not": {"type": "string"}}}}, ".properties.x"),
        ({"type": "object", "additionalProperties": {"type": "integer"}}, ".additionalProperties"),
        ({"type": "object", "properties": {"n": {"enum": [1, 2]}}}, ".properties.n.enum"),
        ({"type": ["string", "integer"]}, ".type"),
        ({"type": "array", "items": [{"type": "string"}]}, ".items"),
        (
            {
                "$defs": {"Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}},
                "$ref": "#/$defs/Node",
            },
            ".properties.next",
        ),
        ({"allOf": [{"type": "string"}, {"minLength": 1}]}, ".allOf"),
        ({"$ref": "https://example.com/schema.json"}, ""),
    ],
)
def test_schema_gemini_cannot_express_is_refused(schema: dict[str, Any], path: str) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": schema}}
    with pytest.raises(UnsupportedParameterError) as info:
        body(tools=[tool])
    assert info.value.param == "tools[0].function.parameters"
    assert f"Gemini cannot express the JSON Schema at tools[0].function.parameters{path}: " in str(info.value)


def test_schema_loosenings() -> None:
    schema = {
        "type": "object",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "email": {"type": "string", "format": "email", "examples": ["a@b.c"], "default": "x"},
            "kind": {"const": "fixed"},
            "either": {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
            "wrapped": {"allOf": [{"type": "integer", "minimum": 0}], "description": "count"},
        },
    }
    got = body(tools=[{"type": "function", "function": {"name": "f", "parameters": schema}}])
    assert got["tools"][0]["functionDeclarations"][0]["parameters"]["properties"] == {
        "when": {"type": "STRING", "format": "date-time"},
        "email": {"type": "STRING"},
        "kind": {"type": "STRING", "format": "enum", "enum": ["fixed"]},
        "either": {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}], "nullable": True},
        "wrapped": {"type": "INTEGER", "description": "count", "minimum": 0},
    }


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"logit_bias": {"1": 2}}, "logit_bias"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
    ],
)
def test_unsupported_parameters(kwargs: dict[str, Any], param: str) -> None:
    req = ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], **kwargs)
    assert gemini.unsupported_params(req) == [param]
    with pytest.raises(UnsupportedParameterError) as info:
        gemini.build_request(req, target())
    assert (info.value.param, info.value.provider) == (param, "Gemini")
    assert gemini.build_request(req, target(drop_unsupported_params=True)).json["contents"]


def test_embedding_requests() -> None:
    single = gemini.build_embeddings_request(
        EmbeddingRequest(model="m", input="hello", dimensions=8), target("text-embedding-004")
    )
    assert single.url.endswith("/v1beta/models/text-embedding-004:embedContent")
    assert single.json == {
        "model": "models/text-embedding-004",
        "content": {"parts": [{"text": "hello"}]},
        "outputDimensionality": 8,
    }
    batch = gemini.build_embeddings_request(
        EmbeddingRequest(model="m", input=["a", "b"]), target("gemini-embedding-001")
    )
    assert batch.url.endswith(":batchEmbedContents")
    assert [r["content"]["parts"][0]["text"] for r in batch.json["requests"]] == ["a", "b"]
    with pytest.raises(BadRequestError, match="Gemini embeds text only"):
        gemini.build_embeddings_request(
            EmbeddingRequest(model="m", input=[[1, 2, 3]]), target("gemini-embedding-001")
        )
