"""The client surface beyond the drop-in programs: options, bad input, malformed upstreams, async."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pydantic
import pytest

import gateway
from gateway import OpenAI
from tests.servers.http import JSONReply, LoopbackServer, Recorded, Reply, SSEReply, sse_pieces

MESSAGES = [{"role": "user", "content": "hello world"}]


@pytest.fixture
def client(openai_url: str) -> Iterator[OpenAI]:
    with OpenAI(api_key="sk-test", base_url=openai_url, max_retries=0) as c:
        yield c


def test_request_reaches_the_upstream_unchanged(client: OpenAI, openai_upstream: LoopbackServer) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        temperature=0.3,
        seed=7,
        logit_bias={"50256": -100},
        metadata={"team": "search"},
        reasoning_effort="low",
        extra_body={"brand_new_param": {"x": 1}},
        extra_headers={"x-trace": "t-1"},
    )
    rec = openai_upstream.log[-1]
    assert rec.json() == {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "temperature": 0.3,
        "seed": 7,
        "logit_bias": {"50256": -100},
        "metadata": {"team": "search"},
        "reasoning_effort": "low",
        "brand_new_param": {"x": 1},
    }
    assert rec.headers["authorization"] == "Bearer sk-test"
    assert rec.headers["x-trace"] == "t-1"


def test_unknown_keyword_is_a_type_error(client: OpenAI) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'temprature'"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temprature=1)  # type: ignore[call-arg]


def test_invalid_values_reach_the_upstream_for_openai_hosts(
    client: OpenAI, openai_upstream: LoopbackServer
) -> None:
    # The API judges values; the gateway passes them through (the loopback echoes).
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, temperature="hot")  # type: ignore[arg-type]
    assert openai_upstream.log[-1].json()["temperature"] == "hot"


def test_not_given_and_omit_are_dropped(client: OpenAI, openai_upstream: LoopbackServer) -> None:
    client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, temperature=gateway.NOT_GIVEN, seed=gateway.omit
    )
    assert openai_upstream.log[-1].json() == {"model": "gpt-4o-mini", "messages": MESSAGES}


def test_with_options_overrides_and_shares_the_pool(client: OpenAI, openai_upstream: LoopbackServer) -> None:
    other = client.with_options(max_retries=5, default_headers={"x-team": "a"})
    assert (other.max_retries, client.max_retries) == (5, 0)
    assert other._client is client._client  # the SDK's HTTP client (and its pool) is shared
    other.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(TypeError):
        client.with_options(not_an_option=1)


def test_parse_fills_parsed_and_raises_on_length(client: OpenAI) -> None:
    class Answer(pydantic.BaseModel):
        city: str
        score: int

    reply = client.chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES, response_format=Answer)
    assert reply.choices[0].message.parsed == Answer(city="world", score=1)
    with pytest.raises(gateway.LengthFinishReasonError):
        client.chat.completions.parse(
            model="gpt-4o-mini", messages=MESSAGES, response_format=Answer, max_tokens=0
        )


def test_parse_refusal_fixture_sets_refusal_not_parsed(client: OpenAI) -> None:
    class Location(pydantic.BaseModel):
        city: str

    reply = client.chat.completions.parse(
        model="fixture:sdk_parse_pydantic_model_refusal.nonstream",
        messages=MESSAGES,
        response_format=Location,
    )
    message = reply.choices[0].message
    assert message.parsed is None and message.refusal


def _malformed(rec: Recorded) -> Reply:
    model = (rec.json() or {}).get("model")
    if model == "not-json":
        return JSONReply(raw=b"<html>oops</html>")
    if model == "wrong-shape":
        return JSONReply(body={"id": "x", "choices": "nope"})
    if model == "truncated-stream":
        return SSEReply(
            sse_pieces(
                [
                    {
                        "id": "x",
                        "object": "chat.completion.chunk",
                        "created": 1,
                        "model": "m",
                        "choices": [{"index": 0, "delta": {"content": "hi"}}],
                    }
                ],
                done=False,
            )
        )
    return JSONReply(raw=b'{"id": "x", "choices": [')


@pytest.mark.parametrize("model", ["not-json", "wrong-shape", "cut-json"])
def test_malformed_upstream_is_a_typed_error(model: str) -> None:
    with (
        LoopbackServer(_malformed) as server,
        OpenAI(api_key="k", base_url=server.base_url, max_retries=0) as c,
    ):
        with pytest.raises(gateway.InternalServerError) as info:
            c.chat.completions.create(model=model, messages=MESSAGES)
    # a bad gateway: the answer could not be read, and no other candidate could replace it
    assert info.value.status_code == 502 and "openai" in str(info.value)
    assert info.value.response.headers["x-switchyard-error"] == "invalid_response"


def test_truncated_stream_raises_after_delivered_chunks() -> None:
    with (
        LoopbackServer(_malformed) as server,
        OpenAI(api_key="k", base_url=server.base_url, max_retries=0) as c,
    ):
        stream = c.chat.completions.create(model="truncated-stream", messages=MESSAGES, stream=True)
        got = []
        with pytest.raises(gateway.APIError) as info:
            for chunk in stream:
                got.append(chunk.choices[0].delta.content)
    assert got == ["hi"] and info.value.code == "stream_interrupted"
    assert isinstance(info.value.body, dict) and info.value.body["chunks_delivered"] == 1


def test_stream_close_stops_reading(client: OpenAI) -> None:
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    with stream:
        first = next(stream)
    assert first.choices[0].delta.role == "assistant"
    with pytest.raises(StopIteration):
        next(stream)


def test_streams_reuse_the_connection(openai_url: str, openai_upstream: LoopbackServer) -> None:
    with OpenAI(api_key="k", base_url=openai_url) as c:
        c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        before = openai_upstream.connections
        for _ in range(5):
            for _chunk in c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
                pass
        assert openai_upstream.connections == before


def test_http_client_is_used(openai_url: str) -> None:
    seen: list[str] = []
    http = httpx.Client(event_hooks={"request": [lambda r: seen.append(str(r.url))]})
    with OpenAI(api_key="k", base_url=openai_url, http_client=http) as c:
        c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    http.close()
    # the hook sees the SDK's request (answered by Switchyard) and Switchyard's upstream call
    assert seen == [openai_url + "/chat/completions"] * 2


def test_secrets_stay_out_of_reprs(openai_url: str) -> None:
    c = OpenAI(api_key="sk-canary-0123456789", base_url=openai_url)
    assert "canary" not in repr(c) and "canary" not in repr(c._switchyard.core.planner.plan("gpt-4o-mini"))
    c.close()


def test_missing_key_for_a_provider_is_clear() -> None:
    with OpenAI(api_key="k") as c, pytest.raises(gateway.AuthenticationError, match="GROQ_API_KEY"):
        c.chat.completions.create(model="groq/llama-3.1-8b-instant", messages=MESSAGES)


async def test_async_client_complete_stream_and_embeddings(openai_url: str) -> None:
    async with gateway.AsyncOpenAI(api_key="k", base_url=openai_url) as c:
        reply = await c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert reply.choices[0].message.content == "Echo: hello world"
        stream = await c.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        assert (
            "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "Echo: hello world"
        )
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5
        assert gateway.info(stream) is not None and gateway.info(stream).attempts[-1].outcome == "ok"
        emb = await c.embeddings.create(model="text-embedding-3-small", input="x", dimensions=4)
        assert len(emb.data[0].embedding) == 4
        assert [m.id async for m in c.models.list()] == ["gpt-4o-mini", "gpt-4o"]


def test_unknown_fields_from_the_upstream_are_kept(client: OpenAI) -> None:
    reply = client.chat.completions.create(
        model="fixture:chat_stream_text_usage", messages=MESSAGES, stream=True
    )
    chunk = next(iter(reply))
    reply.close()
    assert "obfuscation" in json.loads(chunk.model_dump_json())


def test_reply_gateway_carries_the_cost_when_the_price_is_known(client: OpenAI) -> None:
    reply = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert gateway.info(reply) is not None and reply.usage is not None
    # the catalog's gpt-4o-mini price per 1M tokens, times this reply's usage
    from decimal import Decimal

    from gateway.metering.pricing import PriceTable

    price = PriceTable.from_catalog().lookup("openai/gpt-4o-mini")
    assert price is not None
    expected = price.cost(reply.usage.prompt_tokens, reply.usage.completion_tokens)
    assert gateway.info(reply).cost_usd is not None and Decimal(gateway.info(reply).cost_usd) == expected > 0
    unpriced = client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert gateway.info(unpriced) is not None and gateway.info(unpriced).cost_usd is None
