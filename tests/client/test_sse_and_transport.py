"""The SSE decoder against every way a byte stream can be cut, and the one httpx error boundary."""

from __future__ import annotations

import inspect

import httpx
import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway._redact import redact, redact_headers
from gateway.core.errors import APIConnectionError, APITimeoutError
from gateway.transports.http import map_http_error
from gateway.transports.sse import SSEDecoder
from providers.base import ServerSentEvent

BODY = (
    b": comment\r\n"
    b'event: message_start\r\ndata: {"a": 1}\r\n\r\n'
    b"data: line one\ndata: line two\n\n"
    b"id: 7\rretry: 100\rdata: cr only\r\r"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    ServerSentEvent(data='{"a": 1}', event="message_start"),
    ServerSentEvent(data="line one\nline two"),
    ServerSentEvent(data="cr only", id="7", retry=100),
    ServerSentEvent(data="[DONE]", id="7"),
]


def decode(pieces: list[bytes]) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [e for piece in pieces for e in decoder.feed(piece)]
    return events + decoder.flush()


def test_whole_body() -> None:
    assert decode([BODY]) == EXPECTED


@given(st.lists(st.integers(min_value=0, max_value=len(BODY)), max_size=12))
def test_any_split_gives_the_same_events(cuts: list[int]) -> None:
    points = sorted(set(cuts))
    pieces = [BODY[a:b] for a, b in zip([0, *points], [*points, len(BODY)], strict=True)]
    assert decode(pieces) == EXPECTED


def test_cut_body_reports_pending() -> None:
    decoder = SSEDecoder()
    decoder.feed(b'data: {"partial"')
    assert decoder.pending
    assert decoder.flush() == [ServerSentEvent(data='{"partial"')]


def _all_httpx_errors() -> list[type[Exception]]:
    """Every error class of both HTTP packages the openai SDK runs on (httpx for 2.x, httpx2 for 3.x)."""
    return [
        cls
        for module in (httpx, httpx2)
        for cls in vars(module).values()
        if inspect.isclass(cls) and issubclass(cls, module.HTTPError) and cls is not module.HTTPStatusError
    ]


@pytest.mark.parametrize(
    "cls", _all_httpx_errors(), ids=lambda c: f"{c.__module__.split('.')[0]}.{c.__name__}"
)
def test_every_httpx_error_maps_to_a_gateway_error(cls: type[Exception]) -> None:
    module = httpx2 if cls.__module__.startswith("httpx2") else httpx
    request = module.Request("POST", "https://user:pw@example.com/v1/x?key=secret-value")
    exc = (
        cls("boom https://user:pw@example.com/?key=secret-value", request=request)  # type: ignore[call-arg]
        if cls is not module.HTTPError
        else cls("boom")
    )
    mapped = map_http_error(exc, request)
    expected = APITimeoutError if issubclass(cls, module.TimeoutException) else APIConnectionError
    assert isinstance(mapped, expected)
    assert "secret-value" not in str(mapped) and "pw@" not in str(mapped)


def test_redaction_covers_headers_userinfo_and_key_params() -> None:
    headers = {
        "Authorization": "Bearer sk-abcdefghijkl",
        "x-api-key": "sk-ant-123456789",
        "x-goog-api-key": "AIzaXXXXXXXX",
        "api-key": "azure-key-123",
        "proxy-authorization": "Basic Zm9vOmJhcg==",
        "content-type": "application/json",
    }
    assert redact_headers(headers) == {
        "Authorization": "<redacted>",
        "x-api-key": "<redacted>",
        "x-goog-api-key": "<redacted>",
        "api-key": "<redacted>",
        "proxy-authorization": "<redacted>",
        "content-type": "application/json",
    }
    assert redact("redis://:hunter22@host:6379/0 and https://x/y?key=AIzaSECRET&alt=sse") == (
        "redis://<redacted>@host:6379/0 and https://x/y?key=<redacted>&alt=sse"
    )
    assert (
        redact("Incorrect API key provided: Bearer sk-live-1234")
        == "Incorrect API key provided: Bearer <redacted>"
    )


def test_provider_key_shapes_are_redacted_wherever_they_appear() -> None:
    """A key pasted into a prompt or echoed in an upstream's error body, not only in headers."""
    from gateway._redact import redact

    keys = [
        # built at run time from a filler, so that no key-shaped literal is committed
        "sk-" + "proj-" + "x" * 24,
        "sk-" + "ant-api03-" + "x" * 16,
        "gsk" + "_" + "x" * 26,
        "xai" + "-" + "x" * 26,
        "hf" + "_" + "x" * 32,
        "AIza" + "x" * 35,
        "ghp" + "_" + "x" * 36,
    ]
    text = "here: " + " / ".join(keys) + "."
    assert redact(text) == "here: " + " / ".join(["<redacted>"] * len(keys)) + "."
    # words that only look a little like keys are left alone
    assert redact("model sk-1, a task-list, skeleton keys") == "model sk-1, a task-list, skeleton keys"
