"""The OpenAI Agents SDK over ``gateway.AsyncOpenAI``: ``OpenAIChatCompletionsModel`` and
``OpenAIResponsesModel`` with ``openai_client=``; ``Runner.run`` with text, a ``function_tool`` and
``output_type=``, and ``Runner.run_streamed``; once per provider (see conftest.py)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from tests.libraries.conftest import SKIP_REASON, Route

pytest.importorskip("agents", reason=SKIP_REASON)
from agents import (  # noqa: E402
    Agent,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_tracing_disabled,
)
from agents.items import MessageOutputItem, ToolCallItem, ToolCallOutputItem  # noqa: E402


class City(BaseModel):
    name: str
    population: int


@pytest.fixture(autouse=True)
def _no_tracing():
    """Tracing would export to OpenAI's servers from a background thread."""
    set_tracing_disabled(True)
    yield


seen: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    seen.append(city)
    return f"sunny in {city}"


@pytest.fixture(params=[OpenAIChatCompletionsModel, OpenAIResponsesModel], ids=["chat", "responses"])
def model(request: pytest.FixtureRequest, aclient, route: Route):
    return request.param(model=route.model, openai_client=aclient)


def upstream_path(model, route: Route) -> str:
    return route.responses_path if isinstance(model, OpenAIResponsesModel) else route.chat_path


async def test_text(model, route: Route) -> None:
    result = await Runner.run(Agent(name="echo", model=model), "Hello there")
    assert result.final_output == "Echo: Hello there"
    assert [type(item) for item in result.new_items] == [MessageOutputItem]
    usage = result.context_wrapper.usage
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (1, 2, 3)
    assert route.paths() == [upstream_path(model, route)]


async def test_function_tool(model, route: Route) -> None:
    seen.clear()
    agent = Agent(name="weather", model=model, tools=[get_weather])
    result = await Runner.run(agent, "What is the weather in Paris")
    assert result.final_output == "The tool said: sunny in Paris"
    assert seen == ["Paris"]
    assert [type(item) for item in result.new_items] == [ToolCallItem, ToolCallOutputItem, MessageOutputItem]
    assert route.paths() == [upstream_path(model, route)] * 2


async def test_output_type(model, route: Route) -> None:
    result = await Runner.run(Agent(name="cities", model=model, output_type=City), "Tell me about Paris")
    assert result.final_output == City(name="Paris", population=1)
    assert route.paths() == [upstream_path(model, route)]


async def test_run_streamed_with_a_tool(model, route: Route) -> None:
    agent = Agent(name="weather", model=model, tools=[get_weather])
    result = Runner.run_streamed(agent, "What is the weather in Paris")
    deltas = [
        event.data.delta
        async for event in result.stream_events()
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta"
    ]
    assert "".join(deltas) == "The tool said: sunny in Paris"
    assert len([d for d in deltas if d]) == 6, "the answer must arrive word by word"
    assert result.final_output == "The tool said: sunny in Paris"
    assert route.paths() == [upstream_path(model, route)] * 2
    assert all(record.json()["stream"] is True for record in route.server.log)
