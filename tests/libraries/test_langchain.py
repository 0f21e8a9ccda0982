"""langchain-openai's ``ChatOpenAI`` over Switchyard's clients (``client=``, ``root_client=``,
``async_client=``, ``root_async_client=``): ``invoke``, ``bind_tools``, ``with_structured_output``,
``stream``, each through chat completions and through the Responses API; once per provider."""

from __future__ import annotations

from unittest.mock import ANY

import pytest
from pydantic import BaseModel

from tests.libraries.conftest import SKIP_REASON, Route

pytest.importorskip("langchain_openai", reason=SKIP_REASON)
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage  # noqa: E402
from langchain_core.tools import tool  # noqa: E402
from langchain_openai import ChatOpenAI  # noqa: E402


class City(BaseModel):
    """A city and its population."""

    name: str
    population: int


PARIS = City(name="Paris", population=1)


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@pytest.fixture(params=[False, True], ids=["chat", "responses"])
def llm(request: pytest.FixtureRequest, client, aclient, route: Route) -> ChatOpenAI:
    return ChatOpenAI(
        model=route.model,
        client=client.chat.completions,
        async_client=aclient.chat.completions,
        root_client=client,
        root_async_client=aclient,
        use_responses_api=request.param,
        stream_usage=True,  # chat streams then ask for stream_options.include_usage
    )


def upstream_path(llm: ChatOpenAI, route: Route) -> str:
    return route.responses_path if llm.use_responses_api else route.chat_path


def test_invoke(llm: ChatOpenAI, route: Route) -> None:
    message = llm.invoke("Hello there")
    assert message.text == "Echo: Hello there"
    assert message.usage_metadata == {
        "input_tokens": 2,
        "output_tokens": 3,
        "total_tokens": 5,
        **_details(message),
    }
    assert message.response_metadata["model_name"] == route.model.split("/")[-1]
    assert route.paths() == [upstream_path(llm, route)]


def _details(message: AIMessage) -> dict:
    """langchain adds token-detail keys when the reply has them; those are not what this test is about."""
    return {k: v for k, v in (message.usage_metadata or {}).items() if k.endswith("_details")}


async def test_ainvoke(llm: ChatOpenAI, route: Route) -> None:
    message = await llm.ainvoke("Hello there")
    assert message.text == "Echo: Hello there"
    assert route.paths() == [upstream_path(llm, route)]


def test_bind_tools_round_trip(llm: ChatOpenAI, route: Route) -> None:
    with_tools = llm.bind_tools([get_weather])
    question = HumanMessage("What is the weather in Paris")
    call = with_tools.invoke([question])
    assert call.tool_calls == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": ANY, "type": "tool_call"}
    ]
    result = get_weather.invoke(call.tool_calls[0]["args"])
    answer = with_tools.invoke([question, call, ToolMessage(result, tool_call_id=call.tool_calls[0]["id"])])
    assert answer.text == "The tool said: sunny in Paris"
    assert route.paths() == [upstream_path(llm, route)] * 2


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_with_structured_output(llm: ChatOpenAI, route: Route, method: str) -> None:
    structured = llm.with_structured_output(City, method=method)
    assert structured.invoke("Tell me about Paris") == PARIS
    assert route.paths() == [upstream_path(llm, route)]


async def test_with_structured_output_async(llm: ChatOpenAI, route: Route) -> None:
    assert await llm.with_structured_output(City).ainvoke("Tell me about Paris") == PARIS


def test_stream(llm: ChatOpenAI, route: Route) -> None:
    chunks = list(llm.stream("Hello stream"))
    assert [chunk.text for chunk in chunks if chunk.text] == ["Echo:", " Hello", " stream"]
    total = sum(chunks[1:], chunks[0])
    assert total.text == "Echo: Hello stream"
    assert total.usage_metadata is not None and total.usage_metadata["output_tokens"] == 3
    assert route.paths() == [upstream_path(llm, route)]
    assert route.server.log[0].json()["stream"] is True


async def test_astream_tool_call(llm: ChatOpenAI, route: Route) -> None:
    chunks = [chunk async for chunk in llm.bind_tools([get_weather]).astream("What is the weather in Paris")]
    total = sum(chunks[1:], chunks[0])
    assert total.tool_calls == [
        {"name": "get_weather", "args": {"city": "Paris"}, "id": ANY, "type": "tool_call"}
    ]
