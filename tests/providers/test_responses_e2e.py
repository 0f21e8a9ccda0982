"""The Responses API through ``gateway.OpenAI`` against every protocol's loopback server.

OpenAI (the client's own endpoint) is relayed natively; Anthropic and Gemini are translated through
the chat schema. Each: plain text, streamed, function tools with a second turn, structured output,
sync and async, usage, and routing information.
"""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel

import gateway
from tests.servers.http import LoopbackServer

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


class City(BaseModel):
    name: str
    population: int


MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "anthropic/claude-haiku-4-5",
    "gemini": "gemini/gemini-2.0-flash",
}


@pytest.fixture(params=sorted(MODELS))
def provider(
    request: pytest.FixtureRequest, anthropic_env: LoopbackServer, gemini_env: LoopbackServer
) -> str:
    return str(request.param)


@pytest.fixture
def client(openai_url: str) -> gateway.OpenAI:
    return gateway.OpenAI(api_key="sk-responses-test", base_url=openai_url, max_retries=0)


def test_text_and_usage(client: gateway.OpenAI, provider: str) -> None:
    reply = client.responses.create(model=MODELS[provider], input="Hello there", instructions="Be brief.")
    assert isinstance(reply, openai.types.responses.Response)
    assert reply.output_text == "Echo: Hello there"
    assert reply.status == "completed" and reply.usage is not None and reply.usage.output_tokens > 0
    info = gateway.info(reply)
    assert info is not None and info.provider == provider


def test_stream_events_and_final_response(client: gateway.OpenAI, provider: str) -> None:
    with client.responses.stream(model=MODELS[provider], input="Hello there") as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert final.output_text == "Echo: Hello there" and final.usage is not None
    assert gateway.info(stream) is not None


def test_function_tools_round_trip(client: gateway.OpenAI, provider: str) -> None:
    model = MODELS[provider]
    first = client.responses.create(model=model, input="What's the weather in Paris?", tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather"] and json.loads(calls[0].arguments) == {"city": "Paris"}
    second = client.responses.create(
        model=model,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "What's the weather in Paris?"},
            {
                "type": "function_call",
                "call_id": calls[0].call_id,
                "name": "get_weather",
                "arguments": calls[0].arguments,
            },
            {"type": "function_call_output", "call_id": calls[0].call_id, "output": "sunny"},
        ],
    )
    assert "sunny" in second.output_text


def test_structured_output_parses(client: gateway.OpenAI, provider: str) -> None:
    parsed = client.responses.parse(model=MODELS[provider], input="Give a city", text_format=City)
    assert isinstance(parsed.output_parsed, City)


def test_streamed_tool_call_arguments(client: gateway.OpenAI, provider: str) -> None:
    stream = client.responses.create(
        model=MODELS[provider], input="What's the weather in Rome?", tools=[WEATHER], stream=True
    )
    events = list(stream)
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    assert json.loads(deltas) == {"city": "Rome"}
    assert events[-1].type == "response.completed"


async def test_async_create_and_stream(openai_url: str, provider: str) -> None:
    async with gateway.AsyncOpenAI(api_key="sk-responses-test", base_url=openai_url) as client:
        reply = await client.responses.create(model=MODELS[provider], input="Hello async")
        assert reply.output_text == "Echo: Hello async"
        stream = await client.responses.create(model=MODELS[provider], input="Hello async", stream=True)
        kinds = [event.type async for event in stream]
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed"


@pytest.mark.parametrize(
    "feature", [{"previous_response_id": "resp_1"}, {"store": True}, {"background": True}]
)
def test_stateful_features_are_refused_by_translated_providers(
    client: gateway.OpenAI, anthropic_env: LoopbackServer, feature: dict[str, object]
) -> None:
    anthropic_env.reset_log()
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=MODELS["anthropic"], input="x", **feature)  # type: ignore[arg-type]
    name = next(iter(feature))
    assert name in info.value.message and not anthropic_env.log


def test_stateful_features_reach_openai_natively(
    client: gateway.OpenAI, openai_upstream: LoopbackServer
) -> None:
    client.responses.create(model="gpt-4o-mini", input="hello", previous_response_id="resp_abc", store=True)
    sent = openai_upstream.log[-1].json()
    assert openai_upstream.log[-1].path == "/v1/responses"
    assert sent["previous_response_id"] == "resp_abc" and sent["store"] is True


@pytest.mark.parametrize("slash", ["", "/"])
def test_a_policy_provider_at_the_clients_own_endpoint_is_relayed_natively(
    openai_url: str, openai_upstream: LoopbackServer, tmp_path, slash: str
) -> None:
    """Whatever the provider is called, and with or without a trailing slash on either URL."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"""
version: 1
providers:
  house: {{kind: openai, base_url: "{openai_url}{slash}", api_key: "sk-house"}}
models:
  mini: {{provider: house, model: gpt-4o-mini}}
routes:
  chat: {{candidates: [mini]}}
"""
    )
    with gateway.OpenAI(api_key="sk-x", base_url=openai_url, policy=str(policy), max_retries=0) as client:
        client.responses.create(model="route:chat", input="hello", previous_response_id="resp_abc")
    [sent] = openai_upstream.log
    assert sent.path == "/v1/responses" and sent.json()["previous_response_id"] == "resp_abc"


def test_builtin_tools_on_a_translated_provider_name_the_tool(
    client: gateway.OpenAI, anthropic_env: LoopbackServer
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model=MODELS["anthropic"], input="x", tools=[{"type": "web_search"}])
    assert "web_search" in info.value.message
