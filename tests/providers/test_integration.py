"""Anthropic and Gemini through ``gateway.OpenAI``, against loopback servers speaking each protocol.

The same conversation gets the same answer from both (one deterministic brain behind every
protocol), so most tests run once per provider.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import gateway
from gateway.errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
    UnsupportedParameterError,
)
from tests.providers.replay import fold
from tests.servers.http import LoopbackServer

MODELS = {"anthropic": "anthropic/claude-sonnet-4-5", "gemini": "gemini/gemini-2.0-flash"}
ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
    500: InternalServerError,
}


@pytest.fixture(params=sorted(MODELS))
def provider(
    request: pytest.FixtureRequest, anthropic_env: LoopbackServer, gemini_env: LoopbackServer
) -> str:
    return str(request.param)


@pytest.fixture
def server(provider: str, anthropic_env: LoopbackServer, gemini_env: LoopbackServer) -> LoopbackServer:
    return anthropic_env if provider == "anthropic" else gemini_env


@pytest.fixture
def client() -> Iterator[gateway.OpenAI]:
    with gateway.OpenAI(max_retries=0) as c:
        yield c


def _upstream(server: LoopbackServer) -> dict[str, Any]:
    assert len(server.log) == 1, "max_retries=0 means exactly one upstream request"
    body: dict[str, Any] = server.log[0].json()
    return body


def test_plain_text(provider: str, server: LoopbackServer, client: gateway.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODELS[provider], messages=[{"role": "user", "content": "hello there"}]
    )
    message = reply.choices[0].message
    assert (message.role, message.content, message.tool_calls, reply.choices[0].finish_reason) == (
        "assistant",
        "Echo: hello there",
        None,
        "stop",
    )
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (2, 3, 5)
    assert gateway.info(reply) is not None and gateway.info(reply).provider == provider
    rec = server.log[0]
    key = rec.headers.get("x-api-key") or rec.headers.get("x-goog-api-key")
    assert key in ("sk-ant-test", "gm-test")
    _upstream(server)


def test_system_prompt_reaches_the_upstream(
    provider: str, server: LoopbackServer, client: gateway.OpenAI
) -> None:
    client.chat.completions.create(
        model=MODELS[provider],
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "hi"},
        ],
    )
    sent = _upstream(server)
    if provider == "anthropic":
        assert sent["system"] == "You are terse.\n\nAnswer in French."
    else:
        assert sent["systemInstruction"] == {
            "parts": [{"text": "You are terse."}, {"text": "Answer in French."}]
        }


def test_image_input(provider: str, server: LoopbackServer, client: gateway.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODELS[provider],
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "describe this"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                ],
            }
        ],
    )
    assert reply.choices[0].message.content == "Echo: describe this"
    parts = _upstream(server)["messages" if provider == "anthropic" else "contents"][0][
        "content" if provider == "anthropic" else "parts"
    ]
    assert len(parts) == 2


TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
        },
    },
]


@pytest.mark.parametrize("question", ["weather in Paris", "weather and time in both Paris"])
def test_tool_calls_round_trip(
    provider: str, server: LoopbackServer, client: gateway.OpenAI, question: str
) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": question}]
    reply = client.chat.completions.create(model=MODELS[provider], messages=messages, tools=TOOLS)
    choice = reply.choices[0]
    calls = choice.message.tool_calls or []
    expected = [("get_weather", {"city": "Paris"})] + (
        [("get_time", {"tz": "Paris"})] if "both" in question else []
    )
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == expected
    assert choice.finish_reason == "tool_calls"
    assert len({c.id for c in calls}) == len(calls)
    messages.append(choice.message.to_dict())
    for call in calls:
        messages.append(
            {"role": "tool", "tool_call_id": call.id, "content": f"result of {call.function.name}"}
        )
    # The servers refuse results that do not answer the calls of the turn before, as the real APIs do.
    final = client.chat.completions.create(model=MODELS[provider], messages=messages, tools=TOOLS)
    assert final.choices[0].message.content == f"The tool said: result of {calls[-1].function.name}"
    assert final.choices[0].finish_reason == "stop"


def test_gemini3_thought_signatures_survive_the_round_trip(
    gemini_env: LoopbackServer, client: gateway.OpenAI
) -> None:
    model = "gemini/gemini-3-pro-preview"
    messages: list[dict[str, Any]] = [{"role": "user", "content": "weather in Oslo"}]
    reply = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    call = (reply.choices[0].message.tool_calls or [])[0]
    assert "__thought__" in call.id
    messages += [
        reply.choices[0].message.to_dict(),
        {"role": "tool", "tool_call_id": call.id, "content": "cold"},
    ]
    final = client.chat.completions.create(model=model, messages=messages, tools=TOOLS)
    assert final.choices[0].message.content == "The tool said: cold"
    stripped = [
        *messages[:1],
        {**messages[1], "tool_calls": [{**messages[1]["tool_calls"][0], "id": "plain"}]},
        {**messages[2], "tool_call_id": "plain"},
    ]
    with pytest.raises(BadRequestError, match="thought_signature"):
        client.chat.completions.create(model=model, messages=stripped, tools=TOOLS)


def test_named_tool_choice(provider: str, server: LoopbackServer, client: gateway.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODELS[provider],
        messages=[{"role": "user", "content": "what time in both Lima"}],
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert [c.function.name for c in reply.choices[0].message.tool_calls or []] == ["get_time"]


def test_json_schema_output(provider: str, server: LoopbackServer, client: gateway.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model=MODELS[provider],
        messages=[{"role": "user", "content": "largest city in Peru"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "City", "schema": schema, "strict": True},
        },
    )
    assert json.loads(reply.choices[0].message.content or "") == {"city": "Peru", "population": 1}


def test_json_object_output(provider: str, server: LoopbackServer, client: gateway.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODELS[provider],
        messages=[{"role": "user", "content": "give JSON"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(reply.choices[0].message.content or "") == {"echo": "give JSON"}


def test_streaming_text_with_usage(provider: str, server: LoopbackServer, client: gateway.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODELS[provider],
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    folded = fold(list(stream))
    assert folded["choices"] == {
        0: {
            "role": "assistant",
            "content": "Echo: stream me please",
            "tool_calls": [],
            "finish_reason": "stop",
        }
    }
    assert (folded["usage"]["prompt_tokens"], folded["usage"]["completion_tokens"]) == (3, 4)
    _upstream(server)


def test_streaming_parallel_tool_calls(provider: str, server: LoopbackServer, client: gateway.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODELS[provider],
        messages=[{"role": "user", "content": "weather and time in both Rome"}],
        tools=TOOLS,
        stream=True,
    )
    state = fold(list(stream))["choices"][0]
    assert [(c["name"], json.loads(c["arguments"])) for c in state["tool_calls"]] == [
        ("get_weather", {"city": "Rome"}),
        ("get_time", {"tz": "Rome"}),
    ]
    assert state["finish_reason"] == "tool_calls"


def test_length_and_stop_finishes(provider: str, server: LoopbackServer, client: gateway.OpenAI) -> None:
    messages = [{"role": "user", "content": "one two three four five"}]
    cut = client.chat.completions.create(model=MODELS[provider], messages=messages, max_tokens=2)
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason) == ("Echo: one", "length")
    stopped = client.chat.completions.create(model=MODELS[provider], messages=messages, stop=["three"])
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == (
        "Echo: one two ",
        "stop",
    )


@pytest.mark.parametrize(
    ("model", "finish"),
    [
        ("anthropic/fixture:messages_refusal", "content_filter"),
        ("anthropic/fixture:messages_max_tokens", "length"),
        ("anthropic/fixture:messages_stop_sequence", "stop"),
        ("anthropic/fixture:messages_pause_turn", "stop"),
        ("gemini/fixture:generate_safety_finish", "content_filter"),
        ("gemini/fixture:generate_recitation", "content_filter"),
        ("gemini/fixture:generate_prompt_blocked", "content_filter"),
        ("gemini/fixture:generate_max_tokens", "length"),
        ("gemini/fixture:generate_function_call_gemini3", "tool_calls"),
    ],
)
def test_recorded_finish_reasons_through_the_client(
    model: str, finish: str, anthropic_env: LoopbackServer, gemini_env: LoopbackServer, client: gateway.OpenAI
) -> None:
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].finish_reason == finish


@pytest.mark.parametrize(
    ("model", "content"),
    [
        ("anthropic/fixture:messages_stream_text", "- Captain\n- Scoop"),
        ("gemini/fixture:stream_sse_text", "The capital of France is Paris.\n"),
        ("gemini/fixture:stream_jsonarray_text", "Scoop"),
    ],
)
def test_recorded_streams_through_the_client(
    model: str,
    content: str,
    anthropic_env: LoopbackServer,
    gemini_env: LoopbackServer,
    client: gateway.OpenAI,
) -> None:
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "x"}], stream=True
    )
    assert fold(list(stream))["choices"][0]["content"] == content


STATUS_CASES = [(p, s) for p in sorted(MODELS) for s in ERRORS] + [("anthropic", 529), ("gemini", 503)]


@pytest.mark.parametrize(("provider", "status"), STATUS_CASES)
def test_every_error_status(
    provider: str,
    status: int,
    anthropic_env: LoopbackServer,
    gemini_env: LoopbackServer,
    client: gateway.OpenAI,
) -> None:
    server = anthropic_env if provider == "anthropic" else gemini_env
    expected = OverloadedError if status == 529 else ERRORS.get(status, InternalServerError)
    with pytest.raises(APIStatusError) as info:
        client.chat.completions.create(
            model=f"{provider}/error:{status}", messages=[{"role": "user", "content": "x"}]
        )
    error = info.value
    assert type(error) is expected
    assert error.status_code == status
    assert str(error).startswith(f"Error code: {status} - ")
    assert isinstance(error.body, dict) and "message" in error.body
    if status == 429 and provider == "anthropic":
        assert error.response.headers.get("retry-after") == "1"
    if status == 429 and provider == "gemini":
        # Gemini says when to retry in the body; the provider turns RetryInfo into retry-after, but
        # the transport's attach() replaces the headers with the response's (see the report).
        assert error.body["details"][0]["retryDelay"] == "1s"  # type: ignore[index]
    assert len(server.log) == 1


def test_error_event_inside_a_stream_raises_overloaded(
    anthropic_env: LoopbackServer, client: gateway.OpenAI
) -> None:
    # before any content, the error is the answer's status: create() raises, as the SDK does for a 529
    with pytest.raises(OverloadedError) as info:
        list(
            client.chat.completions.create(
                model="anthropic/stream-error:overloaded_error",
                messages=[{"role": "user", "content": "x"}],
                stream=True,
            )
        )
    assert isinstance(info.value, InternalServerError) and info.value.status_code == 529
    with pytest.raises(OverloadedError, match="^Error code: 529 - Overloaded$"):
        client.chat.completions.create(
            model="anthropic/fixture:error_stream_overloaded",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
        )


def test_overloaded_is_retried(anthropic_env: LoopbackServer) -> None:
    with gateway.OpenAI(max_retries=1) as retrying, pytest.raises(OverloadedError):
        retrying.chat.completions.create(
            model="anthropic/error:529", messages=[{"role": "user", "content": "x"}]
        )
    assert len(anthropic_env.log) == 2


def test_unsupported_parameter_makes_no_call(
    provider: str, server: LoopbackServer, client: gateway.OpenAI
) -> None:
    with pytest.raises(UnsupportedParameterError, match="logit_bias"):
        client.chat.completions.create(
            model=MODELS[provider], messages=[{"role": "user", "content": "x"}], logit_bias={"1": 5}
        )
    assert server.log == []


def test_gemini_embeddings(gemini_env: LoopbackServer, client: gateway.OpenAI) -> None:
    many = client.embeddings.create(model="gemini/gemini-embedding-001", input=["a", "b"], dimensions=4)
    assert [(e.index, len(e.embedding)) for e in many.data] == [(0, 4), (1, 4)]
    one = client.embeddings.create(model="gemini/text-embedding-004", input="hello", dimensions=4)
    assert len(one.data) == 1
    assert [r.path for r in gemini_env.log] == [
        "/v1beta/models/gemini-embedding-001:batchEmbedContents",
        "/v1beta/models/text-embedding-004:embedContent",
    ]


async def _async_stream(model: str) -> dict[str, Any]:
    async with gateway.AsyncOpenAI(max_retries=0) as client:
        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "weather in both Kyiv"}],
            tools=TOOLS,
            stream=True,
            stream_options={"include_usage": True},
        )
        return fold([chunk async for chunk in stream])


def test_async_client_streams_tool_calls(provider: str, server: LoopbackServer) -> None:
    import asyncio

    folded = asyncio.run(_async_stream(MODELS[provider]))
    assert [c["name"] for c in folded["choices"][0]["tool_calls"]] == ["get_weather", "get_time"]
    assert folded["usage"]["total_tokens"] > 0


def test_capabilities() -> None:
    from providers import anthropic, gemini

    claude = anthropic.capabilities("claude-sonnet-4-5")
    assert (claude.usage_authoritative, claude.tokenizer, claude.n, claude.logprobs, claude.embeddings) == (
        True,
        "cl100k_base",
        False,
        False,
        False,
    )
    flash = gemini.capabilities("gemini-2.0-flash")
    assert (flash.usage_authoritative, flash.tokenizer, flash.n, flash.tools, flash.embeddings) == (
        True,
        "cl100k_base",
        True,
        True,
        False,
    )
    embed = gemini.capabilities("gemini-embedding-001")
    assert (embed.embeddings, embed.tools, embed.usage_authoritative) == (True, False, False)


def test_google_api_key_is_read_too(gemini_env: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("GOOGLE_API_KEY", "google-key")
    with gateway.OpenAI(max_retries=0) as client:
        client.chat.completions.create(model=MODELS["gemini"], messages=[{"role": "user", "content": "x"}])
    assert gemini_env.log[0].headers["x-goog-api-key"] == "google-key"


def test_gemini_n_candidates(gemini_env: LoopbackServer, client: gateway.OpenAI) -> None:
    messages = [{"role": "user", "content": "two please"}]
    reply = client.chat.completions.create(model=MODELS["gemini"], messages=messages, n=2)
    assert [(c.index, c.message.content) for c in reply.choices] == [
        (0, "Echo: two please"),
        (1, "Echo: two please"),
    ]
    assert gemini_env.log[0].json()["generationConfig"]["candidateCount"] == 2
    stream = client.chat.completions.create(model=MODELS["gemini"], messages=messages, n=2, stream=True)
    folded = fold(list(stream))["choices"]
    assert sorted(folded) == [0, 1]
    assert all(c["content"] == "Echo: two please" and c["finish_reason"] == "stop" for c in folded.values())


def test_anthropic_embeddings_are_refused_before_any_call(
    anthropic_env: LoopbackServer, client: gateway.OpenAI
) -> None:
    with pytest.raises(BadRequestError, match="Anthropic has no embeddings API"):
        client.embeddings.create(model="anthropic/claude-sonnet-4-5", input="x")
    assert anthropic_env.log == []


def test_cancel_mid_stream(provider: str, server: LoopbackServer, client: gateway.OpenAI) -> None:
    words = " ".join(f"w{i}" for i in range(50))
    with client.chat.completions.create(
        model=MODELS[provider], messages=[{"role": "user", "content": words}], stream=True
    ) as stream:
        chunks = iter(stream)
        assert next(chunks).choices[0].delta.role == "assistant"
        assert next(chunks).choices[0].delta.content == "Echo:"
    # The next request on the same client still works (the connection was released or closed).
    reply = client.chat.completions.create(
        model=MODELS[provider], messages=[{"role": "user", "content": "after"}]
    )
    assert reply.choices[0].message.content == "Echo: after"
