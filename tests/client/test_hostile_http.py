"""A hostile or broken upstream, over real loopback sockets, written byte for byte (``tests/servers/raw.py``).

- header injection: a CR, LF or NUL in a header is refused with a 400 naming the header (never its
  value), and nothing at all reaches the upstream;
- malformed framing (a bad chunk size, a non-integer content-length, a truncated chunked body, a
  garbage status line, a connection closed without an answer) is a typed openai error, and a route
  falls back to its healthy second candidate;
- size caps (a body over ``Limits.max_body_bytes``, a gzip bomb, one SSE event over
  ``Limits.max_event_bytes``) are refused with a typed error, and fall back;
- nothing is re-sent behind the caller's back: a kept-alive connection that closes without
  answering is one error, and the upstream saw exactly the attempts the observer heard of.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import openai
import pytest

import gateway
from gateway.transports.http import DEFAULT_LIMITS
from tests.servers.http import LoopbackServer
from tests.servers.openai_server import handle
from tests.servers.raw import RawAnswer, RawRequest, RawServer, response

MESSAGES: Any = [{"role": "user", "content": "hostile"}]
OK_BODY = json.dumps(
    {
        "id": "chatcmpl-raw",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "fine"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
).encode()


def ok(request: RawRequest, *, keep_open: bool = True) -> RawAnswer:
    headers = {"content-type": "application/json", "content-length": str(len(OK_BODY))}
    return RawAnswer(response("200 OK", headers, OK_BODY), keep_open=keep_open)


class Attempts:
    """An observer that keeps every attempt record."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def attempt_finished(self, record: Any) -> None:
        self.records.append(record)


@pytest.fixture
def healthy() -> Iterator[LoopbackServer]:
    with LoopbackServer(handle) as server:
        yield server


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTILE_TEST_KEY", "sk-hostile-test")


def route_policy(path: Path, hostile: str, healthy: str) -> Path:
    """A route that tries the hostile upstream first, then the healthy one, with no retries."""
    path.write_text(
        f"""
version: 1
providers:
  hostile: {{kind: openai, base_url: "{hostile}/v1", api_key: "${{HOSTILE_TEST_KEY}}"}}
  healthy: {{kind: openai, base_url: "{healthy}/v1", api_key: "${{HOSTILE_TEST_KEY}}"}}
models:
  first: {{provider: hostile, model: upstream-hostile, price: {{input: 0.1, output: 0.1}}}}
  second: {{provider: healthy, model: upstream-healthy, price: {{input: 5, output: 5}}}}
routes:
  chat:
    candidates: [first, second]
    minimize: cost
    retry: {{max_retries: 0}}
"""
    )
    return path


# --- (a) header injection ------------------------------------------------------------------------

INJECTIONS = {
    "crlf": "a\r\nX-Smuggled: 1",
    "lf": "a\nX-Smuggled: 1",
    "cr": "a\rb",
    "nul": "a\0b",
    "smuggled-request": "a\r\ncontent-length: 0\r\n\r\nPOST /v1/smuggled HTTP/1.1\r\nhost: x\r\n\r\n",
}


def refused_header(error: openai.BadRequestError, name: str, value: str) -> None:
    assert error.status_code == 400
    assert (error.code, error.param) == ("invalid_header", f"headers.{name}")
    assert name in error.message
    assert value not in error.message and value not in json.dumps(error.body)
    assert "X-Smuggled" not in error.message and "smuggled" not in json.dumps(error.body)


@pytest.mark.parametrize("value", INJECTIONS.values(), ids=INJECTIONS.keys())
@pytest.mark.parametrize("where", ["default_headers", "extra_headers"])
def test_header_injection_is_refused_before_anything_is_sent(where: str, value: str) -> None:
    with RawServer(ok) as upstream:
        options: dict[str, Any] = {"default_headers": {"x-team": value}} if where == "default_headers" else {}
        call: dict[str, Any] = {"extra_headers": {"x-team": value}} if where == "extra_headers" else {}
        client = gateway.OpenAI(
            api_key="sk-test", base_url=upstream.base_url + "/v1", max_retries=0, **options
        )
        calls: list[Callable[[], object]] = [
            lambda: client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **call),
            lambda: client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, stream=True, **call
            ),
            lambda: client.responses.create(model="gpt-4o-mini", input="x", **call),
            lambda: client.embeddings.create(model="text-embedding-3-small", input="x", **call),
        ]
        with client:
            for send in calls:
                with pytest.raises(openai.BadRequestError) as caught:
                    send()
                refused_header(caught.value, "x-team", value)
        assert upstream.requests == []


def test_header_injection_through_a_route_reaches_neither_candidate(healthy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with RawServer(ok) as upstream:
        policy = route_policy(tmp_path / "p.yaml", upstream.base_url, healthy.base_url)
        with gateway.OpenAI(policy=policy, max_retries=0) as client:
            with pytest.raises(openai.BadRequestError) as caught:
                client.chat.completions.create(
                    model="route:chat", messages=MESSAGES, extra_headers={"x-trace": "a\r\nX-Smuggled: 1"}
                )
        refused_header(caught.value, "x-trace", "a\r\nX-Smuggled: 1")
        assert upstream.requests == []
        assert healthy.log == []


def test_header_injection_is_refused_by_the_async_client() -> None:
    async def main(base_url: str) -> openai.BadRequestError:
        async with gateway.AsyncOpenAI(api_key="sk-test", base_url=base_url, max_retries=0) as client:
            try:
                await client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-team": "a\0b"}
                )
            except openai.BadRequestError as exc:
                return exc
        raise AssertionError("no error")

    with RawServer(ok) as upstream:
        refused_header(asyncio.run(main(upstream.base_url + "/v1")), "x-team", "a\0b")
        assert upstream.requests == []


# --- (b) malformed framing -----------------------------------------------------------------------

JSON_HEAD = {"content-type": "application/json"}
CHUNKED = {"content-type": "application/json", "transfer-encoding": "chunked"}
SSE_CHUNKED = {"content-type": "text/event-stream", "transfer-encoding": "chunked"}

FRAMING: dict[str, RawAnswer] = {
    "bad-chunk-size": RawAnswer(response("200 OK", CHUNKED, b"zz\r\n{}\r\n0\r\n\r\n")),
    "non-integer-content-length": RawAnswer(
        response("200 OK", {**JSON_HEAD, "content-length": "abc"}, OK_BODY)
    ),
    "truncated-chunked-body": RawAnswer(response("200 OK", CHUNKED, b"400\r\n" + OK_BODY[:20])),
    "truncated-content-length": RawAnswer(
        response("200 OK", {**JSON_HEAD, "content-length": str(len(OK_BODY) + 100)}, OK_BODY)
    ),
    "garbage-status-line": RawAnswer(b"SPAM SPAM SPAM\r\n\r\n"),
    "closed-without-answer": RawAnswer(None),
}
STREAM_FRAMING: dict[str, RawAnswer] = {
    "bad-chunk-size": RawAnswer(response("200 OK", SSE_CHUNKED, b"zz\r\ndata: {}\r\n")),
    "truncated-chunked-body": RawAnswer(response("200 OK", SSE_CHUNKED, b'400\r\ndata: {"id"')),
    "garbage-status-line": RawAnswer(b"HTTP/1.1 two hundred\r\n\r\n"),
    "closed-without-answer": RawAnswer(None),
}


def fixed(answer: RawAnswer) -> Any:
    return lambda request: answer


@pytest.mark.parametrize("answer", FRAMING.values(), ids=FRAMING.keys())
def test_malformed_framing_is_a_typed_error(answer: RawAnswer) -> None:
    with RawServer(fixed(answer)) as upstream:
        with gateway.OpenAI(api_key="sk-test", base_url=upstream.base_url + "/v1", max_retries=0) as client:
            with pytest.raises(openai.APIError) as caught:
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert type(caught.value) is openai.APIConnectionError
        assert len(upstream.requests) == 1


@pytest.mark.parametrize("answer", STREAM_FRAMING.values(), ids=STREAM_FRAMING.keys())
def test_malformed_framing_of_a_stream_is_a_typed_error(answer: RawAnswer) -> None:
    with RawServer(fixed(answer)) as upstream:
        with gateway.OpenAI(api_key="sk-test", base_url=upstream.base_url + "/v1", max_retries=0) as client:
            with pytest.raises(openai.APIError) as caught:
                for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
                    pass
        assert type(caught.value) is openai.APIConnectionError
        assert len(upstream.requests) == 1


@pytest.mark.parametrize("answer", FRAMING.values(), ids=FRAMING.keys())
def test_malformed_framing_falls_back_to_the_second_candidate(  # type: ignore[no-untyped-def]
    answer: RawAnswer, healthy, tmp_path: Path
) -> None:
    with RawServer(fixed(answer)) as upstream:
        policy = route_policy(tmp_path / "p.yaml", upstream.base_url, healthy.base_url)
        with gateway.OpenAI(policy=policy, max_retries=0) as client:
            reply = client.chat.completions.create(model="route:chat", messages=MESSAGES)
            responses_reply = client.responses.create(model="route:chat", input="hostile")
        assert reply.choices[0].message.content == "Echo: hostile"
        assert responses_reply.output_text == "Echo: hostile"
        info = gateway.info(reply)
        assert info is not None and info.model == "second"
        assert len(upstream.requests) == 2
        assert [rec.json()["model"] for rec in healthy.log] == ["upstream-healthy"] * 2


@pytest.mark.parametrize("answer", STREAM_FRAMING.values(), ids=STREAM_FRAMING.keys())
def test_malformed_framing_of_a_stream_falls_back(  # type: ignore[no-untyped-def]
    answer: RawAnswer, healthy, tmp_path: Path
) -> None:
    with RawServer(fixed(answer)) as upstream:
        policy = route_policy(tmp_path / "p.yaml", upstream.base_url, healthy.base_url)
        with gateway.OpenAI(policy=policy, max_retries=0) as client:
            stream = client.chat.completions.create(model="route:chat", messages=MESSAGES, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "Echo: hostile"
        assert len(upstream.requests) == 1 and len(healthy.log) == 1


def test_malformed_framing_falls_back_with_the_async_client(healthy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    async def main(policy: Path) -> tuple[str, str]:
        async with gateway.AsyncOpenAI(policy=policy, max_retries=0) as client:
            reply = await client.chat.completions.create(model="route:chat", messages=MESSAGES)
            stream = await client.chat.completions.create(model="route:chat", messages=MESSAGES, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        return str(reply.choices[0].message.content), text

    with RawServer(fixed(FRAMING["bad-chunk-size"])) as upstream:
        policy = route_policy(tmp_path / "p.yaml", upstream.base_url, healthy.base_url)
        assert asyncio.run(main(policy)) == ("Echo: hostile", "Echo: hostile")
        assert len(upstream.requests) == 2


# --- (c) size caps -------------------------------------------------------------------------------


def oversized_body() -> RawAnswer:
    size = DEFAULT_LIMITS.max_body_bytes + 1024
    head = response("200 OK", {**JSON_HEAD, "content-length": str(size)})
    piece = b" " * (1024 * 1024)
    return RawAnswer([head, *([piece] * (size // len(piece))), b" " * (size % len(piece))])


@cache
def gzip_bomb() -> RawAnswer:
    body = gzip.compress(b'{"id": "' + b"a" * (DEFAULT_LIMITS.max_body_bytes + 1024) + b'"}', 9)
    headers = {**JSON_HEAD, "content-encoding": "gzip", "content-length": str(len(body))}
    assert len(body) < 200_000  # small on the wire, huge once decompressed
    return RawAnswer(response("200 OK", headers, body))


def oversized_event() -> RawAnswer:
    event = b"data: " + b"x" * (DEFAULT_LIMITS.max_event_bytes + 1024)
    head = response("200 OK", SSE_CHUNKED)
    return RawAnswer([head, f"{len(event):x}\r\n".encode(), event, b"\r\n0\r\n\r\n"])


CAPS = {"body-over-cap": oversized_body, "gzip-bomb": gzip_bomb}


@pytest.mark.parametrize("make", CAPS.values(), ids=CAPS.keys())
def test_a_body_over_the_cap_is_refused(make: Any) -> None:
    answer = make()
    with RawServer(fixed(answer)) as upstream:
        with gateway.OpenAI(api_key="sk-test", base_url=upstream.base_url + "/v1", max_retries=0) as client:
            with pytest.raises(openai.APIStatusError) as caught:
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert caught.value.status_code == 502
        assert str(DEFAULT_LIMITS.max_body_bytes) in caught.value.message
        assert len(upstream.requests) == 1


@pytest.mark.parametrize("make", CAPS.values(), ids=CAPS.keys())
def test_a_body_over_the_cap_falls_back(make: Any, healthy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    answer = make()
    with RawServer(fixed(answer)) as upstream:
        policy = route_policy(tmp_path / "p.yaml", upstream.base_url, healthy.base_url)
        with gateway.OpenAI(policy=policy, max_retries=0) as client:
            reply = client.chat.completions.create(model="route:chat", messages=MESSAGES)
        assert reply.choices[0].message.content == "Echo: hostile"
        assert len(upstream.requests) == 1 and len(healthy.log) == 1


def test_an_sse_event_over_the_cap_is_refused() -> None:
    with RawServer(fixed(oversized_event())) as upstream:
        with gateway.OpenAI(api_key="sk-test", base_url=upstream.base_url + "/v1", max_retries=0) as client:
            with pytest.raises(openai.APIError) as caught:
                for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
                    pass
        assert str(DEFAULT_LIMITS.max_event_bytes) in caught.value.message
        assert len(upstream.requests) == 1


def test_an_sse_event_over_the_cap_falls_back(healthy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with RawServer(fixed(oversized_event())) as upstream:
        policy = route_policy(tmp_path / "p.yaml", upstream.base_url, healthy.base_url)
        with gateway.OpenAI(policy=policy, max_retries=0) as client:
            stream = client.chat.completions.create(model="route:chat", messages=MESSAGES, stream=True)
            text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "Echo: hostile"
        assert len(upstream.requests) == 1 and len(healthy.log) == 1


# --- (d) no hidden re-send -----------------------------------------------------------------------


def first_then_drop(request: RawRequest) -> RawAnswer:
    """Answer the first request on each connection, keep it alive, then drop the second unanswered."""
    return ok(request) if request.index == 0 else RawAnswer(None)


def test_a_dropped_keep_alive_connection_is_one_error_and_no_resend() -> None:
    observer = Attempts()
    with RawServer(first_then_drop) as upstream:
        with gateway.OpenAI(
            api_key="sk-test", base_url=upstream.base_url + "/v1", max_retries=0, observer=observer
        ) as client:
            assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).id == "chatcmpl-raw"
            with pytest.raises(openai.APIConnectionError):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert [(r.connection, r.index) for r in upstream.requests] == [(0, 0), (0, 1)]
        assert [r.outcome for r in observer.records] == ["ok", "APIConnectionError"]
        assert len(observer.records) == len(upstream.requests)


def test_a_dropped_keep_alive_connection_is_one_error_and_no_resend_async() -> None:
    observer = Attempts()

    async def main(base_url: str) -> None:
        async with gateway.AsyncOpenAI(
            api_key="sk-test", base_url=base_url, max_retries=0, observer=observer
        ) as client:
            first = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            assert first.id == "chatcmpl-raw"
            with pytest.raises(openai.APIConnectionError):
                await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    with RawServer(first_then_drop) as upstream:
        asyncio.run(main(upstream.base_url + "/v1"))
        assert [(r.connection, r.index) for r in upstream.requests] == [(0, 0), (0, 1)]
        assert [r.outcome for r in observer.records] == ["ok", "APIConnectionError"]
        assert len(observer.records) == len(upstream.requests)


def test_a_dropped_stream_request_is_not_resent() -> None:
    observer = Attempts()
    with RawServer(first_then_drop) as upstream:
        with gateway.OpenAI(
            api_key="sk-test", base_url=upstream.base_url + "/v1", max_retries=0, observer=observer
        ) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            with pytest.raises(openai.APIConnectionError):
                for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
                    pass
        assert len(upstream.requests) == 2
        assert len(observer.records) == len(upstream.requests)


def test_a_dropped_connection_in_a_route_is_counted_once_and_falls_back(healthy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    observer = Attempts()
    with RawServer(first_then_drop) as upstream:
        policy = route_policy(tmp_path / "p.yaml", upstream.base_url, healthy.base_url)
        with gateway.OpenAI(policy=policy, max_retries=0, observer=observer) as client:
            first = client.chat.completions.create(model="route:chat", messages=MESSAGES)
            second = client.chat.completions.create(model="route:chat", messages=MESSAGES)
        assert (first.id, second.choices[0].message.content) == ("chatcmpl-raw", "Echo: hostile")
        assert [(r.candidate.name, r.outcome) for r in observer.records] == [
            ("first", "ok"),
            ("first", "APIConnectionError"),
            ("second", "ok"),
        ]
        assert len(upstream.requests) == 2 and len(healthy.log) == 1


def test_a_retry_after_a_dropped_connection_is_an_attempt_the_observer_hears_of() -> None:
    observer = Attempts()
    with RawServer(first_then_drop) as upstream:
        with gateway.OpenAI(
            api_key="sk-test", base_url=upstream.base_url + "/v1", max_retries=1, observer=observer
        ) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).id == "chatcmpl-raw"
        # the retry went out on a new connection, and nobody else re-sent anything
        assert [(r.connection, r.index) for r in upstream.requests] == [(0, 0), (0, 1), (1, 0)]
        assert [r.outcome for r in observer.records] == ["ok", "APIConnectionError", "ok"]


def test_a_connection_closed_after_a_reply_costs_no_hidden_attempt() -> None:
    """The server closes at once after answering (no ``connection: close``): the pool may notice or not."""
    observer = Attempts()
    with RawServer(lambda request: ok(request, keep_open=False)) as upstream:
        with gateway.OpenAI(
            api_key="sk-test", base_url=upstream.base_url + "/v1", max_retries=0, observer=observer
        ) as client:
            for _ in range(3):
                try:
                    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                except openai.APIConnectionError:
                    pass  # the close raced the next request: one typed error, still one attempt
        # never a hidden re-send: the server sees at most what was recorded (a request written to a
        # socket the server had already closed is an attempt it never read)
        assert len(observer.records) == 3 and len(upstream.requests) <= 3


def test_the_responses_relay_does_not_resend_a_dropped_request() -> None:
    observer = Attempts()
    with RawServer(first_then_drop) as upstream:
        with gateway.OpenAI(
            api_key="sk-test", base_url=upstream.base_url + "/v1", max_retries=0, observer=observer
        ) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            with pytest.raises(openai.APIConnectionError):
                client.responses.create(model="gpt-4o-mini", input="hostile")
        assert [r.path for r in upstream.requests] == ["/v1/chat/completions", "/v1/responses"]
        assert len(observer.records) == len(upstream.requests)


# --- the async client on one candidate -----------------------------------------------------------

ASYNC_CASES = {
    "bad-chunk-size": (FRAMING["bad-chunk-size"], False, openai.APIConnectionError),
    "garbage-status-line": (FRAMING["garbage-status-line"], False, openai.APIConnectionError),
    "closed-without-answer": (FRAMING["closed-without-answer"], False, openai.APIConnectionError),
    "stream-truncated": (STREAM_FRAMING["truncated-chunked-body"], True, openai.APIConnectionError),
    "gzip-bomb": (gzip_bomb(), False, openai.InternalServerError),
    "sse-event-over-cap": (oversized_event(), True, openai.InternalServerError),
}


@pytest.mark.parametrize(("answer", "stream", "expected"), ASYNC_CASES.values(), ids=ASYNC_CASES.keys())
def test_the_async_client_raises_the_same_typed_errors(
    answer: RawAnswer, stream: bool, expected: type
) -> None:
    async def main(base_url: str) -> BaseException:
        async with gateway.AsyncOpenAI(api_key="sk-test", base_url=base_url, max_retries=0) as client:
            try:
                if stream:
                    reply = await client.chat.completions.create(
                        model="gpt-4o-mini", messages=MESSAGES, stream=True
                    )
                    async for _ in reply:
                        pass
                else:
                    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            except openai.APIError as exc:
                return exc
        raise AssertionError("no error")

    with RawServer(fixed(answer)) as upstream:
        assert type(asyncio.run(main(upstream.base_url + "/v1"))) is expected
        assert len(upstream.requests) == 1


# --- the Responses API relay meets the same caps ---------------------------------------------------


def oversized_responses_event() -> RawAnswer:
    event = b"event: response.created\ndata: " + b"x" * (DEFAULT_LIMITS.max_event_bytes + 1024)
    head = response("200 OK", SSE_CHUNKED)
    return RawAnswer([head, f"{len(event):x}\r\n".encode(), event, b"\r\n0\r\n\r\n"])


def test_the_responses_relay_refuses_oversized_answers_and_falls_back(healthy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bomb, event = gzip_bomb(), oversized_responses_event()
    with RawServer(
        lambda request: event if b'"stream":true' in request.body.replace(b" ", b"") else bomb
    ) as upstream:
        with gateway.OpenAI(api_key="sk-test", base_url=upstream.base_url + "/v1", max_retries=0) as client:
            with pytest.raises(openai.InternalServerError):
                client.responses.create(model="gpt-4o-mini", input="hostile")
            with pytest.raises(openai.InternalServerError):
                for _ in client.responses.create(model="gpt-4o-mini", input="hostile", stream=True):
                    pass
        policy = route_policy(tmp_path / "p.yaml", upstream.base_url, healthy.base_url)
        with gateway.OpenAI(policy=policy, max_retries=0) as client:
            assert client.responses.create(model="route:chat", input="hostile").output_text == "Echo: hostile"
            events = client.responses.create(model="route:chat", input="hostile", stream=True)
            assert [e.type for e in events][-1] == "response.completed"
        assert len(upstream.requests) == 4 and len(healthy.log) == 2


# --- what h11 would refuse is refused first ------------------------------------------------------------------------------------


def test_a_header_value_h11_cannot_send_is_refused_like_an_injection() -> None:
    observer = Attempts()
    with RawServer(ok) as upstream:
        with gateway.OpenAI(
            api_key="sk-test", base_url=upstream.base_url + "/v1", max_retries=1, observer=observer
        ) as client:
            with pytest.raises(openai.BadRequestError) as caught:
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-team": "private\x0bvalue"}
                )
        refused_header(caught.value, "x-team", "private\x0bvalue")
        assert "private" not in caught.value.message
        assert upstream.requests == [] and observer.records == []
