"""Every recorded Gemini response, stream, embedding and error (and the ones written from the API
reference) translates to the right OpenAI-shaped result. Pure functions: no sockets."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.core.errors import (
    APIResponseValidationError,
    APIStatusError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
)
from providers import gemini
from providers.base import Target
from tests.providers.replay import CREATED, OWN, SHARED, dump, events_of, fold, run_stream, status_of

TARGET = Target(
    "gemini", "gemini", "https://generativelanguage.googleapis.com", "gemini-2.0-flash", api_key="k"
)
RECORDED = SHARED / "gemini"
WRITTEN = OWN / "gemini"
CALL_ID = re.compile(r"call_[0-9a-f]{24}")


def _path(name: str, *suffixes: str) -> Path:
    for folder in (RECORDED, WRITTEN):
        for suffix in suffixes:
            if (folder / f"{name}{suffix}").exists():
                return folder / f"{name}{suffix}"
    raise FileNotFoundError(name)


def _placeholders(value: Any) -> Any:
    """Synthesized ids (stable but opaque) become ``<call>``; a ``chatcmpl-`` id becomes ``<id>``."""
    if isinstance(value, dict):
        return {k: _placeholders(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_placeholders(v) for v in value]
    if isinstance(value, str):
        value = CALL_ID.sub("<call>", value)
        return "<id>" if re.fullmatch(r"chatcmpl-[0-9a-f]{24}", value) else value
    return value


def usage(prompt: int, output: int, *, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": output,
        "total_tokens": prompt + output,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def choice(
    content: str | None = None,
    calls: list[tuple[str, str, str]] = (),
    finish: str = "stop",
    index: int = 0,  # type: ignore[assignment]
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant"}
    if content is not None:
        message["content"] = content
    if calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": a}} for i, n, a in calls
        ]
    return {"index": index, "finish_reason": finish, "message": message}


def completion(id: str, model: str, choices: list[dict[str, Any]], use: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": choices,
        "usage": use,
    }


SIG3 = "EskgCsYgAb4+9vtF7/499YQS2bjZs3xcQI+iAl+ILn29nK1j0Kg6su7QsUUUk3nrAAfnS2w5WiVvlcCqu9fAebJ2cvfaEyBahEt5"
PARIS = "The capital of France is Paris.\n"
COMPLETIONS: dict[str, dict[str, Any]] = {
    "generate_text_system": completion(
        "41peaK-wOMSenvgPh-vRiAY", "gemini-2.0-flash", [choice(PARIS)], usage(13, 8)
    ),
    "generate_function_call.turn1": completion(
        "<id>",
        "gemini-2.0-flash-exp",
        [choice(calls=[("<call>", "get_capital", '{"country":"France"}')], finish="tool_calls")],
        usage(23, 5),
    ),
    "generate_function_call.turn2": completion("<id>", "gemini-2.0-flash-exp", [choice(PARIS)], usage(35, 8)),
    "generate_function_call_gemini3": completion(
        "m36LaZGyCLz1xs0PtNSB-QU",
        "gemini-3-pro-preview",
        [
            choice(
                calls=[(f"<call>__thought__{SIG3}", "weather", '{"location":"San Francisco"}')],
                finish="tool_calls",
            )
        ],
        usage(29, 15 + 893, reasoning=893),
    ),
    "generate_function_call_tool_output.turn1": completion(
        "LlteaIDvD9m7nvgPz5Sb0Aw",
        "gemini-2.0-flash",
        [choice(calls=[("<call>", "get_user_country", "{}")], finish="tool_calls")],
        usage(33, 5),
    ),
    "generate_json_schema": completion(
        "EfsgaZT5JPbXz7IPqtGJkQ8",
        "gemini-2.0-flash",
        [choice('{\n  "city": "Mexico City",\n  "country": "Mexico"\n}')],
        usage(8, 20),
    ),
    "generate_max_tokens": completion(
        "R5MoavWNNp_8qtsP2fWD2A0",
        "gemini-2.5-flash",
        [choice("The capital of France is", finish="length")],
        usage(15, 5),
    ),
    "generate_prompt_blocked": completion(
        "EXCPaojyHaDUjMcP656rqAk", "gemini-3.7-flash", [choice(finish="content_filter")], usage(9, 0)
    ),
    "generate_safety_finish": completion(
        "5lpeaLOIBf__698Pv8HGgAg", "gemini-1.5-flash", [choice(finish="content_filter")], usage(14, 0)
    ),
    "generate_stop_sequence": completion(
        "UB5DaMfEN7jFnvgPocrJaA",
        "gemini-1.5-flash",
        [choice("The most iconic city in France is ")],
        usage(25, 8),
    ),
    # written from the API reference (tests/fixtures/gemini/README.md)
    "generate_recitation": completion(
        "recitationExample0001",
        "gemini-2.0-flash",
        [choice("It was the best of times, it was the worst of times,", finish="content_filter")],
        usage(12, 14),
    ),
    "generate_cached_parallel_calls": completion(
        "parallelCallsExample01",
        "gemini-2.5-flash",
        [
            choice(
                calls=[
                    ("<call>", "get_weather", '{"location":"Paris"}'),
                    ("<call>", "get_weather", '{"location":"Tokyo"}'),
                ],
                finish="tool_calls",
            )
        ],
        usage(2100 + 10, 20 + 64, cached=2048, reasoning=64),
    ),
    "generate_two_candidates": completion(
        "twoCandidatesExample01",
        "gemini-2.0-flash",
        [choice("Pelly"), choice("Captain Scoop", finish="length", index=1)],
        usage(9, 6),
    ),
}


@pytest.mark.parametrize("name", sorted(COMPLETIONS))
def test_response_translates(name: str) -> None:
    raw = _path(name, ".response.json").read_bytes()
    reply = gemini.parse_response(200, {}, raw, TARGET)
    assert _placeholders(dump(reply)) == COMPLETIONS[name]
    again = gemini.parse_response(200, {}, raw, TARGET)
    assert again.id == reply.id, "synthesized ids are stable"
    assert [c.message.tool_calls for c in again.choices] == [c.message.tool_calls for c in reply.choices]


def test_parallel_calls_get_distinct_ids() -> None:
    reply = gemini.parse_response(
        200, {}, _path("generate_cached_parallel_calls", ".response.json").read_bytes(), TARGET
    )
    calls = reply.choices[0].message.tool_calls or []
    assert len({c.id for c in calls}) == 2


def streamed(
    id: str,
    model: str,
    use: dict[str, Any],
    *,
    content: str = "",
    calls: list[tuple[str, str, str]] = (),  # type: ignore[assignment]
    finish: str = "stop",
) -> dict[str, Any]:
    state = {
        "role": "assistant",
        "content": content,
        "tool_calls": [{"id": i, "name": n, "arguments": a} for i, n, a in calls],
        "finish_reason": finish,
    }
    return {"id": id, "model": model, "choices": {0: state}, "usage": use}


SIG_ARRAY = (
    "ClgBEU0yD8z3tYzbgjZ1jc6lL1fwUvm9/8OzTwh5uyHd3oc/nSNCBpsRWAFcF+8PscRgXvhCesOjie8txX87NXhaCaqynKKosUEl4w2N"
    "SfPT0Ag6Xb03vJK5Cp4BARFNMg9tOjzlvGVeodRcUkd1xZ9L+5Xu3Rl2LKFWOHdmgaXGVBh9/s7Lfg0jYNf7aGBEP7+thoyJE7jXqTvRAkU"
    "IRE8/wgObeUXOBM5y9Q66+TBVH++z2rd0J2Thj0jX9crzfhbM4LU5/H167LYHz0sJGlei/Ril/p1LARk70FX94Xun/ekK9ZM7C8ZovhzOYqoV"
    "K/AV84+gNm5AKlk="
)
SIG_CHUNKS = (
    "EqUCCqICAb4+9vsh8Pd5taZVoPzSvjWWwzBrvhEQWBLCGa7IdY8FBMm7Z6dCKFU3Ft0la15gF7RaHe1NlPRygQec0bFwPDfMwGcUOMNiJiNI"
    "KxusCs4ejCZRuouNYQ4etEIt7CujEUHiILLfZXSJZYhs4UCrD2bLqPq0sE0lWgYJnzHkkKUOnMsA2hKffAhtF4DWn5INYj8pPssvch/2VpDFW2F"
    "9XSE04zLDzkIWF2eztJX50Y0lTehRZC3FW7fOrXCzGx+PwdataD6eXlF5O1zn+86XtmktOs2DEp4o1PMvXFFAXe8GGvPt8Idf3UtHMq7AsapwMW9"
    "sjiKj+FJk54m+9LMTSaj7C86smfvoQryYBEHTVazr1bEnpl4bPG5JUtm2yAMkHj4="
)
PELICAN = "pelican_name_generator"
STREAMS: dict[str, dict[str, Any]] = {
    "stream_sse_text": streamed(
        "w1peaMz6INOvnvgPgYfPiQY", "gemini-2.0-flash-exp", usage(13, 8), content=PARIS
    ),
    "stream_sse_usage_mid_stream": streamed(
        "ru1garvBEoOiqtsP2fznmQw",
        "gemini-2.5-flash",
        usage(18, 80 + 35, reasoning=35),
        content="\n".join(str(i) for i in range(1, 31)),
    ),
    "stream_sse_function_call.turn1": streamed(
        "1lpeaMTxIpW1nvgP-O3vwQY",
        "gemini-2.0-flash",
        usage(52, 5),
        calls=[("<call>", "get_capital", '{"country":"France"}')],
        finish="tool_calls",
    ),
    "stream_sse_function_call.turn2": streamed(
        "11peaOXwBPH_2PgPh_z--AY",
        "gemini-2.0-flash",
        usage(64, 5),
        calls=[("<call>", "get_temperature", '{"city":"Paris"}')],
        finish="tool_calls",
    ),
    "stream_sse_function_call.turn3": streamed(
        "11peaI_ZJLq3nvgP0vasuQk",
        "gemini-2.0-flash",
        usage(79, 12),
        content="The temperature in Paris is 30°C.\n",
    ),
    # JSON-array recordings (no alt=sse), one event per element: the same pieces as alt=sse sends.
    "stream_jsonarray_text": streamed(
        "IopyaseNCL-s-8YP7urOoAY", "gemini-3.6-flash", usage(11, 2 + 291, reasoning=291), content="Scoop"
    ),
    "stream_jsonarray_function_call.turn1": streamed(
        "OYpyaqycKd2V_uMP65TsgA0",
        "gemini-2.5-flash",
        usage(32, 12 + 42, reasoning=42),
        calls=[(f"<call>__thought__{SIG_ARRAY}", PELICAN, "{}")],
        finish="tool_calls",
    ),
    "stream_jsonarray_function_call.turn2": streamed(
        "OopyavzdMqTQjrEPqLCdqAc",
        "gemini-2.5-flash",
        usage(105, 13),
        calls=[("<call>", PELICAN, "{}")],
        finish="tool_calls",
    ),
    "stream_jsonarray_function_call.turn3": streamed(
        "O4pyaoO6FrXO_uMPga2X6QY", "gemini-2.5-flash", usage(137, 6), content="How about Charles and Sammy?"
    ),
    "stream_chunks_tool_call": streamed(
        "b36LacjwM668nsEP2tbsgQQ",
        "gemini-3-pro-preview",
        usage(29, 15 + 45, reasoning=45),
        calls=[(f"<call>__thought__{SIG_CHUNKS}", "weather", '{"location":"San Francisco"}')],
        finish="tool_calls",
    ),
    # written from the API reference
    "stream_prompt_blocked": streamed(
        "blockedStreamExample01", "gemini-2.0-flash", usage(7, 0), finish="content_filter"
    ),
}


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_stream_translates(name: str) -> None:
    path = _path(name, ".response.sse", ".response.jsonarray", ".chunks.jsonl")
    chunks = run_stream(gemini, TARGET, events_of(path))
    assert _placeholders(fold(chunks)) == STREAMS[name]
    assert sum(1 for c in chunks if c.usage is not None) == 1, "usage is delivered once, at the end"


def test_streamed_and_whole_responses_get_the_same_call_ids() -> None:
    path = RECORDED / "stream_sse_function_call.turn1.response.sse"
    streamed_ids = [
        call.id
        for c in run_stream(gemini, TARGET, events_of(path))
        for ch in c.choices
        for call in ch.delta.tool_calls or []
    ]
    body = events_of(path)[0].data.encode()
    whole = gemini.parse_response(200, {}, body, TARGET).choices[0].message.tool_calls or []
    assert streamed_ids == [call.id for call in whole]


def test_truncated_stream_raises() -> None:
    with pytest.raises(APIResponseValidationError, match="gemini: the stream ended before every candidate"):
        run_stream(gemini, TARGET, events_of(WRITTEN / "stream_truncated.response.sse"))


ERRORS: dict[str, tuple[type[APIStatusError], str]] = {
    "error_400_api_key_invalid": (BadRequestError, "API key not valid. Please pass a valid API key."),
    "error_400_invalid_argument": (BadRequestError, "Penalty is not enabled for models/gemini-2.5-flash"),
    "error_404_model_not_found": (
        NotFoundError,
        "models/gemini-3.6-flahs is not found for API version v1beta, or is not supported for generateContent. "
        "Call ModelService.ListModels to see the list of available models and their supported methods.",
    ),
    "error_429_resource_exhausted": (RateLimitError, "Resource has been exhausted (e.g. check quota)."),
    "error_503_unavailable": (
        InternalServerError,
        "This model is currently experiencing high demand. Spikes in demand are usually temporary. "
        "Please try again later.",
    ),
    "batch_embed_error_404": (
        NotFoundError,
        "models/nonexistent-model is not found for API version v1beta, or is not supported for embedContent. "
        "Call ListModels to see the list of available models and their supported methods.",
    ),
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_error_translates(name: str) -> None:
    cls, message = ERRORS[name]
    folder = RECORDED
    raw = (folder / f"{name}.response.json").read_bytes()
    status = status_of(folder, name)
    error = gemini.map_error(status, {}, raw, TARGET)
    assert type(error) is cls
    assert (error.status_code, str(error), error.body) == (
        status,
        f"Error code: {status} - {message}",
        json.loads(raw)["error"],
    )


def test_api_key_invalid_is_a_bad_request_not_an_auth_error() -> None:
    error = gemini.map_error(
        400, {}, (RECORDED / "error_400_api_key_invalid.response.json").read_bytes(), TARGET
    )
    assert isinstance(error, BadRequestError)
    assert error.body["details"][0]["reason"] == "API_KEY_INVALID"  # type: ignore[index]


def test_retry_info_becomes_retry_after() -> None:
    body = {
        "error": {
            "code": 429,
            "message": "Quota exceeded",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}],
        }
    }
    error = gemini.map_error(429, {}, json.dumps(body).encode(), TARGET)
    assert isinstance(error, RateLimitError)
    assert error.headers["retry-after"] == "17"


EMBEDDINGS = {
    "batch_embed_dims768": (768, [-0.01530608, -0.0005849064, 0.037831143]),
    "batch_embed_task_type_dims": (768, [-0.039718185, 0.0070917504, 0.04710465]),
    "embed_content": (4, [0.013168523, -0.008711934, -0.046782676]),
}


@pytest.mark.parametrize("name", sorted(EMBEDDINGS))
def test_embeddings_translate(name: str) -> None:
    dims, head = EMBEDDINGS[name]
    target = Target("gemini", "gemini", "https://x", "gemini-embedding-001", api_key="k")
    reply = gemini.parse_embeddings_response(200, {}, _path(name, ".response.json").read_bytes(), target)
    assert len(reply.data) == 1
    vector = reply.data[0].embedding
    assert isinstance(vector, list) and len(vector) == dims and vector[:3] == head
    assert reply.model_dump(exclude={"data"}) == {
        "model": "gemini-embedding-001",
        "object": "list",
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }


def test_every_fixture_file_is_exercised() -> None:
    from tests.providers import test_gemini_request

    covered = (
        set(COMPLETIONS)
        | set(STREAMS)
        | set(ERRORS)
        | set(EMBEDDINGS)
        | {"stream_truncated"}
        | set(test_gemini_request.RECORDED_REQUESTS)
    )
    suffixes = (
        ".response.json",
        ".response.sse",
        ".response.jsonarray",
        ".chunks.jsonl",
        ".request.json",
        ".meta.json",
    )
    for folder in (RECORDED, WRITTEN):
        for path in folder.iterdir():
            if path.name == "README.md":
                continue
            stem = path.name
            for suffix in suffixes:
                stem = stem.removesuffix(suffix)
            assert stem in covered, f"{path.name} has no expected translation"


def test_error_object_inside_a_stream_raises_its_status() -> None:
    from providers.base import ServerSentEvent

    first = events_of(RECORDED / "stream_sse_text.response.sse")[0]
    error = (RECORDED / "error_503_unavailable.response.json").read_text()
    with pytest.raises(InternalServerError) as info:
        run_stream(gemini, TARGET, [first, ServerSentEvent(data=error)])
    assert info.value.status_code == 503
    assert str(info.value).startswith("Error code: 503 - This model is currently experiencing high demand.")


def test_thought_summaries_are_reasoning_not_content() -> None:
    chunks = run_stream(gemini, TARGET, events_of(RECORDED / "stream_jsonarray_text.response.jsonarray"))
    reasoning = "".join(
        getattr(ch.delta, "reasoning_content", None) or "" for c in chunks for ch in c.choices
    )
    assert reasoning.startswith("**Considering the Constraint**")
    body = json.loads((RECORDED / "stream_jsonarray_text.response.jsonarray").read_text())[0]
    message = gemini.parse_response(200, {}, json.dumps(body).encode(), TARGET).choices[0].message
    assert message.content is None and getattr(message, "reasoning_content", "").startswith("**Considering")


def test_stream_usage_is_known_without_a_usage_chunk() -> None:
    from gateway.core.types import ChatRequest

    req = ChatRequest(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
    state = gemini.new_stream(req, TARGET)
    for event in events_of(RECORDED / "stream_sse_usage_mid_stream.response.sse"):
        gemini.parse_stream_event(event, state)
    assert gemini.end_stream(state) == []
    usage = gemini.stream_usage(state)
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (18, 115)
