"""instructor over ``gateway.OpenAI``: ``response_model=`` in tools and JSON-schema modes, partial and
iterable streaming, the async client; once per provider (see conftest.py)."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, field_validator

from tests.libraries.conftest import SKIP_REASON, Route

instructor = pytest.importorskip("instructor", reason=SKIP_REASON)
from instructor.core import InstructorRetryException  # noqa: E402

PROMPT = [{"role": "user", "content": "Tell me about Paris"}]
# The loopback brain fills a schema with the last word of the prompt for strings and 1 for integers.
PARIS = {"name": "Paris", "population": 1}


class City(BaseModel):
    name: str
    population: int


@pytest.mark.parametrize(
    "mode", [instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA], ids=["tools", "json_schema"]
)
def test_response_model(client, route: Route, mode) -> None:
    patched = instructor.from_openai(client, mode=mode)
    city, completion = patched.chat.completions.create_with_completion(
        model=route.model, response_model=City, messages=PROMPT
    )
    assert isinstance(city, City)
    assert city.model_dump() == PARIS
    assert completion.model == route.model.split("/")[-1]
    assert route.paths() == [route.chat_path]
    request = route.server.log[0].json()
    if route.server.log[0].path == "/v1/chat/completions":
        # instructor asked for what the mode means, and Switchyard passed it on.
        key = "tools" if mode is instructor.Mode.TOOLS else "response_format"
        assert key in request


def test_text_without_response_model(client, route: Route) -> None:
    patched = instructor.from_openai(client)
    completion = patched.chat.completions.create(model=route.model, response_model=None, messages=PROMPT)
    assert completion.choices[0].message.content == "Echo: Tell me about Paris"


def test_tool_call_passthrough(client, route: Route) -> None:
    """instructor hands ``tools=`` through untouched with ``response_model=None``."""
    patched = instructor.from_openai(client, mode=instructor.Mode.TOOLS)
    weather = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    completion = patched.chat.completions.create(
        model=route.model, response_model=None, messages=PROMPT, tools=[weather]
    )
    (call,) = completion.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    assert completion.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize(
    "mode", [instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA], ids=["tools", "json_schema"]
)
def test_partial_stream(client, route: Route, mode) -> None:
    patched = instructor.from_openai(client, mode=mode)
    partials = list(
        patched.chat.completions.create_partial(model=route.model, response_model=City, messages=PROMPT)
    )
    assert len(partials) >= 2, "the object must arrive in more than one piece"
    assert partials[-1].model_dump() == PARIS
    assert all(p.name in (None, "Paris") for p in partials)
    assert route.paths() == [route.chat_path]
    assert route.server.log[0].json()["stream"] is True


def test_partial_stream_with_partial_model(client, route: Route) -> None:
    """The other spelling: ``response_model=instructor.Partial[City], stream=True``."""
    patched = instructor.from_openai(client, mode=instructor.Mode.TOOLS)
    partials = list(
        patched.chat.completions.create(
            model=route.model, response_model=instructor.Partial[City], messages=PROMPT, stream=True
        )
    )
    assert partials[-1].model_dump() == PARIS


def test_iterable(client, route: Route) -> None:
    patched = instructor.from_openai(client, mode=instructor.Mode.TOOLS)
    cities = list(
        patched.chat.completions.create_iterable(model=route.model, response_model=City, messages=PROMPT)
    )
    assert [c.model_dump() for c in cities] == [PARIS]


async def test_async_response_model_and_partial(aclient, route: Route) -> None:
    patched = instructor.from_openai(aclient, mode=instructor.Mode.TOOLS)
    city = await patched.chat.completions.create(model=route.model, response_model=City, messages=PROMPT)
    assert city.model_dump() == PARIS
    stream = patched.chat.completions.create_partial(model=route.model, response_model=City, messages=PROMPT)
    partials = [p async for p in stream]
    assert partials[-1].model_dump() == PARIS
    assert route.paths() == [route.chat_path, route.chat_path]


def test_validation_retry_sends_the_error_back(client, route: Route) -> None:
    """A reply that fails validation is retried with the error in the conversation, through the gateway."""

    class Shouted(BaseModel):
        name: str

        @field_validator("name")
        @classmethod
        def upper(cls, value: str) -> str:
            if value != value.upper():
                raise ValueError("name must be upper case")
            return value

    patched = instructor.from_openai(client, mode=instructor.Mode.TOOLS)
    with pytest.raises(InstructorRetryException) as caught:
        patched.chat.completions.create(
            model=route.model, response_model=Shouted, messages=PROMPT, max_retries=1
        )
    assert caught.value.n_attempts == 2
    assert route.paths() == [route.chat_path, route.chat_path]
    retry_messages = route.server.log[1].json()["messages"]
    assert "name must be upper case" in str(retry_messages)
