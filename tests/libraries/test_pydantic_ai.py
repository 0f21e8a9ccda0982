"""pydantic-ai over ``gateway.AsyncOpenAI``: ``OpenAIProvider(openai_client=...)`` with the chat and the
Responses models; an Agent's text, tool, structured output (tool and native) and ``run_stream``;
once per provider (see conftest.py)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from tests.libraries.conftest import SKIP_REASON, Route

pydantic_ai = pytest.importorskip("pydantic_ai", reason=SKIP_REASON)
from pydantic_ai import Agent, NativeOutput  # noqa: E402
from pydantic_ai.messages import TextPart, ToolCallPart, ToolReturnPart, UserPromptPart  # noqa: E402
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel  # noqa: E402
from pydantic_ai.providers.openai import OpenAIProvider  # noqa: E402


class City(BaseModel):
    name: str
    population: int


PARIS = City(name="Paris", population=1)


@pytest.fixture(params=[OpenAIChatModel, OpenAIResponsesModel], ids=["chat", "responses"])
def model(request: pytest.FixtureRequest, aclient, route: Route):
    return request.param(route.model, provider=OpenAIProvider(openai_client=aclient))


def upstream_path(model, route: Route) -> str:
    return route.responses_path if isinstance(model, OpenAIResponsesModel) else route.chat_path


async def test_text(model, route: Route) -> None:
    result = await Agent(model).run("Hello there")
    assert result.output == "Echo: Hello there"
    usage = result.usage
    assert (usage.requests, usage.input_tokens, usage.output_tokens) == (1, 2, 3)
    assert route.paths() == [upstream_path(model, route)]


async def test_tool(model, route: Route) -> None:
    agent = Agent(model)
    seen: list[str] = []

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    result = await agent.run("What is the weather in Paris")
    assert result.output == "The tool said: sunny in Paris"
    assert seen == ["Paris"]
    kinds = [type(part) for message in result.all_messages() for part in message.parts]
    assert kinds == [UserPromptPart, ToolCallPart, ToolReturnPart, TextPart]
    assert route.paths() == [upstream_path(model, route)] * 2


@pytest.mark.parametrize("wrap", [lambda t: t, NativeOutput], ids=["tool_output", "native_output"])
async def test_structured_output(model, route: Route, wrap) -> None:
    result = await Agent(model, output_type=wrap(City)).run("Tell me about Paris")
    assert result.output == PARIS
    assert route.paths() == [upstream_path(model, route)]


async def test_run_stream_text(model, route: Route) -> None:
    async with Agent(model).run_stream("Hello stream") as result:
        deltas = [delta async for delta in result.stream_text(delta=True, debounce_by=None)]
    assert deltas == ["Echo:", " Hello", " stream"]
    assert route.paths() == [upstream_path(model, route)]
    assert route.server.log[0].json()["stream"] is True


async def test_run_stream_structured(model, route: Route) -> None:
    async with Agent(model, output_type=City).run_stream("Tell me about Paris") as result:
        outputs = [output async for output in result.stream_output(debounce_by=None)]
    assert outputs[-1] == PARIS
    assert await result.get_output() == PARIS


async def test_run_stream_after_a_tool(model, route: Route) -> None:
    agent = Agent(model)

    @agent.tool_plain
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    async with agent.run_stream("What is the weather in Paris") as result:
        text = "".join([delta async for delta in result.stream_text(delta=True, debounce_by=None)])
    assert text == "The tool said: sunny in Paris"
    assert route.paths() == [upstream_path(model, route)] * 2
