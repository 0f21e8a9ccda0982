"""Every recorded Anthropic response, stream and error (and the ones written from the API reference)
translates to the right OpenAI-shaped result. Pure functions: no sockets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.core.errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    OverloadedError,
    PermissionDeniedError,
    RateLimitError,
)
from providers import anthropic
from providers.base import ServerSentEvent, Target
from tests.providers.replay import CREATED, OWN, SHARED, dump, events_of, fold, run_stream, stems

TARGET = Target("anthropic", "anthropic", "https://api.anthropic.com", "claude-sonnet-4-5", api_key="k")
RECORDED = SHARED / "anthropic"
WRITTEN = OWN / "anthropic"


def _path(name: str, suffix: str) -> Any:
    for folder in (RECORDED, WRITTEN):
        if (folder / f"{name}{suffix}").exists():
            return folder / f"{name}{suffix}"
    raise FileNotFoundError(name)


def completion(
    id: str,
    model: str,
    *,
    content: str | None = None,
    calls: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    finish: str = "stop",
    prompt: int,
    output: int,
    cached: int = 0,
    written: int = 0,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    if content is not None:
        message["content"] = content
    if calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}} for i, n, a in calls
        ]
    return {
        "id": id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "finish_reason": finish, "message": message}],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
            "prompt_tokens_details": {
                "cached_tokens": cached,
                **({"cache_write_tokens": written} if written else {}),
            },
        },
    }


SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"

COMPLETIONS: dict[str, dict[str, Any]] = {
    "messages_text_system": completion(
        "msg_01Fg1JVgvCYUHWsxrj9GkpEv",
        "claude-3-opus-20240229",
        content="The capital of France is Paris.",
        prompt=20,
        output=10,
    ),
    "messages_stop_sequence": completion(
        "msg_01376yZQxHcw9pER2Ab2SvQb", SONNET, content="The beautiful city of ", prompt=32, output=5
    ),
    "messages_tool_use.turn1": completion(
        "msg_012TXW181edhmR5JCsQRsBKx",
        SONNET,
        calls=[("toolu_01X9wcHKKAZD9tBC711xipPa", "get_user_country", "{}")],
        finish="tool_calls",
        prompt=445,
        output=23,
    ),
    "messages_tool_use.turn2": completion(
        "msg_01K4Fzcf1bhiyLzHpwLdrefj",
        SONNET,
        calls=[
            ("toolu_01LZABsgreMefH2Go8D5PQbW", "final_result", '{"city":"Mexico City","country":"Mexico"}')
        ],
        finish="tool_calls",
        prompt=497,
        output=56,
    ),
    # written from the API reference (tests/fixtures/anthropic/README.md)
    "messages_refusal": completion(
        "msg_01RefusalExample0000000000",
        SONNET,
        content="I can't help with that.",
        finish="content_filter",
        prompt=31,
        output=9,
    ),
    "messages_max_tokens": completion(
        "msg_01MaxTokensExample000000000",
        HAIKU,
        content="The capital of France",
        finish="length",
        prompt=14,
        output=4,
    ),
    "messages_pause_turn": completion(
        "msg_01PauseTurnExample000000000", SONNET, content="Let me search for that.", prompt=2150, output=48
    ),
    "messages_cache_usage": completion(
        "msg_01CacheUsageExample00000000",
        SONNET,
        content="The contract ends on 31 March.",
        prompt=21 + 188 + 1800,
        output=12,
        cached=1800,
        written=188,
    ),
    "messages_thinking_parallel_tools": completion(
        "msg_01ThinkingToolsExample00000",
        SONNET,
        content="I'll check both cities.",
        calls=[
            ("toolu_01ParallelA000000000000", "get_weather", '{"location":"Paris"}'),
            ("toolu_01ParallelB000000000000", "get_weather", '{"location":"Tokyo"}'),
        ],
        finish="tool_calls",
        prompt=512,
        output=140,
    ),
}
_THINKING = "The user wants the weather in two cities; I can call the tool for both at once."
COMPLETIONS["messages_thinking_parallel_tools"]["choices"][0]["message"].update(
    reasoning_content=_THINKING,
    thinking_blocks=[
        {
            "type": "thinking",
            "thinking": _THINKING,
            "signature": "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds",
        }
    ],
)


@pytest.mark.parametrize("name", sorted(COMPLETIONS))
def test_response_translates(name: str) -> None:
    reply = anthropic.parse_response(200, {}, _path(name, ".response.json").read_bytes(), TARGET)
    assert dump(reply) == COMPLETIONS[name]


def streamed(
    id: str,
    model: str,
    *,
    content: str = "",
    calls: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    finish: str,
    prompt: int,
    output: int,
    cached: int = 0,
) -> dict[str, Any]:
    return {
        "id": id,
        "model": model,
        "choices": {
            0: {
                "role": "assistant",
                "content": content,
                "tool_calls": [{"id": i, "name": n, "arguments": a} for i, n, a in calls],
                "finish_reason": finish,
            }
        },
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }


PELICAN = "pelican_name_generator"
STREAMS: dict[str, dict[str, Any]] = {
    "messages_stream_text": streamed(
        "msg_017A4s3HAsrqf5d2WvBmrpLr",
        SONNET,
        content="- Captain\n- Scoop",
        finish="stop",
        prompt=17,
        output=10,
    ),
    "messages_stream_multiturn": streamed(
        "msg_016sMi4YLMSjiUeyi1JQoSJZ",
        SONNET,
        content="- Capitaine\n- Bec (beak)",
        finish="stop",
        prompt=32,
        output=16,
    ),
    "messages_stream_json_output_format": streamed(
        "msg_01HGSyDK4y9Spcd6ySQumMNC",
        SONNET,
        content=(
            '{"name": "Biscuit", "age": 4, "bio": "Biscuit is a golden retriever with a gentle soul and '
            "boundless enthusiasm. He greets every person with a wagging tail and has an uncanny ability "
            "to sense when someone needs comfort. His favorite activities include playing fetch at the "
            'beach, napping in sunny spots, and stealing socks to add to his secret collection under the bed."}'
        ),
        finish="stop",
        prompt=230,
        output=94,
    ),
    "messages_stream_parallel_tool_use.turn1": streamed(
        "msg_01V2noLbAb2NgKnjaNw6Cn3w",
        HAIKU,
        calls=[
            ("toolu_01LtHJmixrs9NcWQkK8hu8hj", PELICAN, "{}"),
            ("toolu_01N8a4jWyf116qKTMqKKmjyt", PELICAN, "{}"),
        ],
        finish="tool_calls",
        prompt=542,
        output=62,
    ),
    "messages_stream_parallel_tool_use.turn2": streamed(
        "msg_01XMATm4UFnjP841TckVuNF4",
        HAIKU,
        content=(
            "Here are two great names for your pet pelican:\n\n1. **Charles** - A sophisticated and dignified "
            "name, perfect for a pelican with personality!\n2. **Sammy** - A friendly and playful name that "
            "gives off warm, approachable vibes.\n\nEither of these would make an excellent name for your "
            "feathered friend! 🦅"
        ),
        finish="stop",
        prompt=678,
        output=82,
    ),
    "messages_stream_stop_sequence": streamed(
        "msg_01KozUDYHvRtgs3NLgG7jzN9",
        HAIKU,
        content='\ndef pelican():\n    return "A large waterbird with a long bill and a throat pouch for catching fish."\n',
        finish="stop",
        prompt=16,
        output=28,
    ),
    "messages_stream_tool_use_input_json_delta.sdk_fixture": streamed(
        "msg_019Q1hrJbZG26Fb9BQhrkHEr",
        "claude-sonnet-4-20250514",
        content="I'll check the current weather in Paris for you.",
        calls=[("toolu_01NRLabsLyVHZPKxbKvkfSMn", "get_weather", '{"location": "Paris"}')],
        finish="tool_calls",
        prompt=377,
        output=65,
    ),
    "messages_stream_tool_use_only": streamed(
        "msg_01BnVamfF7ccY9Qt3nZHAyaG",
        HAIKU,
        calls=[("toolu_01CzN6riCPqw4pVSuTd9Dwn7", PELICAN, "{}")],
        finish="tool_calls",
        prompt=543,
        output=40,
    ),
    "messages_stream_tool_use_then_text.turn1": streamed(
        "msg_01JkKGRKoYijkdjA9GZkPyBG",
        HAIKU,
        calls=[("toolu_01UmKD1vMphVCN9vw8PEMk1q", "fixed_version", "{}")],
        finish="tool_calls",
        prompt=563,
        output=37,
    ),
    "messages_stream_tool_use_then_text.turn2": streamed(
        "msg_01YCYWvfbPCQ6d3brBEd45iz",
        HAIKU,
        content=(
            'The version is **0.32a0**.\n\nHere\'s a joke: I guess you could say this version is still in the "alpha" '
            "stages of being useful! 😄"
        ),
        finish="stop",
        prompt=617,
        output=41,
    ),
    "messages_stream_with_server_and_client_tool": streamed(
        "msg_01E3Wn1NynZw9FALZ68znj9S",
        "claude-sonnet-4-6",
        # Text blocks are joined as the non-streaming translation joins them; the server tool's
        # call and result are not part of the OpenAI message.
        content=(
            "Let me search for a tool that can provide current exchange rate information."
            "I found the right tool! Let me fetch the current USD to EUR exchange rate for you."
        ),
        calls=[
            (
                "toolu_01EFn5wTNBYA8Reni8rbmnHT",
                "get_exchange_rate",
                '{"from_currency": "USD", "to_currency": "EUR"}',
            )
        ],
        finish="tool_calls",
        prompt=1591,
        output=175,
    ),
    # written from the API reference
    "messages_stream_thinking_max_tokens": streamed(
        "msg_01StreamThinking0000000",
        SONNET,
        content="2 + 2 = 4",
        finish="length",
        prompt=125,
        output=30,
        cached=40,
    ),
}


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_stream_translates(name: str) -> None:
    chunks = run_stream(anthropic, TARGET, events_of(_path(name, ".response.sse")))
    assert fold(chunks) == STREAMS[name]


def test_stream_chunks_are_openai_shaped() -> None:
    """The whole chunk sequence of one recording: role first, deltas, finish, then usage alone."""
    chunks = run_stream(anthropic, TARGET, events_of(RECORDED / "messages_stream_text.response.sse"))
    created = chunks[0].created

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "msg_017A4s3HAsrqf5d2WvBmrpLr",
            "object": "chat.completion.chunk",
            "created": created,
            "model": SONNET,
            "choices": [{"index": 0, "delta": delta, **({"finish_reason": finish} if finish else {})}],
        }

    assert [c.to_dict(exclude_none=True) for c in chunks] == [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "-"}),
        chunk({"content": " Captain"}),
        chunk({"content": "\n- Sc"}),
        chunk({"content": "oop"}),
        chunk({}, "stop"),
        {
            "id": "msg_017A4s3HAsrqf5d2WvBmrpLr",
            "object": "chat.completion.chunk",
            "created": created,
            "model": SONNET,
            "choices": [],
            "usage": {
                "prompt_tokens": 17,
                "completion_tokens": 10,
                "total_tokens": 27,
                "prompt_tokens_details": {"cached_tokens": 0},
            },
        },
    ]


def test_tool_call_deltas_keep_a_stable_index() -> None:
    chunks = run_stream(
        anthropic, TARGET, events_of(RECORDED / "messages_stream_parallel_tool_use.turn1.response.sse")
    )
    deltas = [
        call.to_dict(exclude_none=True)
        for c in chunks
        for choice in c.choices
        for call in choice.delta.tool_calls or []
    ]
    assert deltas == [
        {
            "index": 0,
            "id": "toolu_01LtHJmixrs9NcWQkK8hu8hj",
            "type": "function",
            "function": {"name": PELICAN, "arguments": ""},
        },
        {"index": 0, "function": {"arguments": "{}"}},
        {
            "index": 1,
            "id": "toolu_01N8a4jWyf116qKTMqKKmjyt",
            "type": "function",
            "function": {"name": PELICAN, "arguments": ""},
        },
        {"index": 1, "function": {"arguments": "{}"}},
    ]


def test_no_usage_chunk_unless_asked() -> None:
    chunks = run_stream(
        anthropic, TARGET, events_of(RECORDED / "messages_stream_text.response.sse"), usage=False
    )
    assert all(c.usage is None and c.choices for c in chunks)


ERRORS: dict[str, tuple[type[APIStatusError], str]] = {
    "error_400_invalid_request": (
        BadRequestError,
        "This model does not support effort level 'xhigh'. Supported levels: high, low, max, medium.",
    ),
    "error_404_not_found": (NotFoundError, "model: claude-sonet-4-5"),
    "error_429_rate_limit": (
        RateLimitError,
        "This request would exceed your account's rate limit. Please try again later.",
    ),
    "error_529_overloaded": (OverloadedError, "Overloaded"),
    "error_401_authentication": (AuthenticationError, "invalid x-api-key"),
    "error_403_permission": (
        PermissionDeniedError,
        "Your API key does not have permission to use the specified resource.",
    ),
    "error_500_api": (InternalServerError, "Internal server error"),
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_error_translates(name: str) -> None:
    cls, message = ERRORS[name]
    raw = _path(name, ".response.json").read_bytes()
    status = int(name.split("_")[1])
    error = anthropic.map_error(status, {}, raw, TARGET)
    recorded = json.loads(raw)
    assert type(error) is cls
    assert (error.status_code, str(error), error.body) == (
        status,
        f"Error code: {status} - {message}",
        recorded["error"],
    )
    assert error.request_id == recorded["request_id"]
    assert error.type == recorded["error"]["type"]


def test_overloaded_is_a_retryable_server_error() -> None:
    error = anthropic.map_error(
        529, {}, (RECORDED / "error_529_overloaded.response.json").read_bytes(), TARGET
    )
    assert isinstance(error, InternalServerError)
    assert error.status_code == 529


def test_error_event_inside_a_200_stream_raises_overloaded() -> None:
    payload = (RECORDED / "error_stream_overloaded.event_data.json").read_text()
    start = events_of(RECORDED / "messages_stream_text.response.sse")[:2]
    state = anthropic.new_stream(
        anthropic_request(stream=True),
        TARGET,
    )
    for event in start:
        anthropic.parse_stream_event(event, state)
    with pytest.raises(OverloadedError) as info:
        anthropic.parse_stream_event(ServerSentEvent(data=payload, event="error"), state)
    error = info.value
    assert isinstance(error, InternalServerError)
    assert (error.status_code, str(error)) == (529, "Error code: 529 - Overloaded")
    assert error.body == {"details": None, "type": "overloaded_error", "message": "Overloaded"}
    assert error.request_id == "req_011CcHM6P2JkSnZJzjSRaJNJ"


def anthropic_request(**kwargs: Any) -> Any:
    from gateway.core.types import ChatRequest

    return ChatRequest(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}], **kwargs)


def test_every_fixture_file_is_exercised() -> None:
    """A new recording must get an expected result here, not slip through untested."""
    covered = set(COMPLETIONS) | set(STREAMS) | set(ERRORS) | {"error_stream_overloaded"}
    for folder in (RECORDED, WRITTEN):
        for path in folder.iterdir():
            if path.name == "README.md":
                continue
            stem = path.name
            for suffix in (
                ".response.json",
                ".response.sse",
                ".request.json",
                ".meta.json",
                ".event_data.json",
            ):
                stem = stem.removesuffix(suffix)
            assert stem in covered, f"{path.name} has no expected translation"
    assert stems(RECORDED, ".request.json")  # the requests are checked in test_anthropic_request


def test_stream_without_message_stop_is_incomplete() -> None:
    from gateway.core.errors import APIResponseValidationError

    events = events_of(RECORDED / "messages_stream_text.response.sse")
    assert json.loads(events[-1].data)["type"] == "message_stop"
    with pytest.raises(APIResponseValidationError, match="anthropic: the stream ended before message_stop"):
        run_stream(anthropic, TARGET, events[:-1])


def test_thinking_streams_as_reasoning_content() -> None:
    path = WRITTEN / "messages_stream_thinking_max_tokens.response.sse"
    chunks = run_stream(anthropic, TARGET, events_of(path))
    reasoning = [getattr(ch.delta, "reasoning_content", None) for c in chunks for ch in c.choices]
    assert [r for r in reasoning if r] == ["Simple arithmetic: 2 + 2 = 4."]


def test_stream_usage_is_known_without_a_usage_chunk() -> None:
    state = anthropic.new_stream(anthropic_request(stream=True), TARGET)
    for event in events_of(RECORDED / "messages_stream_text.response.sse"):
        anthropic.parse_stream_event(event, state)
    usage = anthropic.stream_usage(state)
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (17, 10)
