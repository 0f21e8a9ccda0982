"""Hostile upstreams, per protocol: every body is a typed error that falls back, never a crash or a hang.

A loopback server answers every request with the hostile body the test chose (JSON or SSE, for the
OpenAI, Anthropic and Gemini protocols); a second, healthy OpenAI-compatible candidate must then
serve the request. The matrix runs through both executors over real sockets; a sample runs through
``gateway.OpenAI`` (the SDK on top, errors as HTTP) so the wire path never turns one into a 500
``internal``. Hypothesis adds random bytes in both framings.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gateway
from gateway.core.attempts import Candidate, Plan
from gateway.core.errors import APIError
from gateway.resilience.deadline import Timeouts
from providers.base import Target
from tests.resilience.conftest import ANSWER, PROMPT, run_async, run_sync
from tests.servers import openai_server
from tests.servers.http import JSONReply, LoopbackServer, Recorded, Reply, SSEReply

KINDS = ("openai", "anthropic", "gemini")
DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
HUGE_INT = b"9" * 5_000

# (name, status, raw body): what a broken or hostile deployment can answer in JSON.
JSON_CORPUS: list[tuple[str, int, bytes]] = [
    ("empty", 200, b""),
    ("garbage", 200, b"\x00\xff\xfe not json"),
    ("invalid-utf8", 200, b'{"id": "\xff\xfe", "choices": []}'),
    ("html", 200, b"<html><body>502 Bad Gateway</body></html>"),
    ("deep-array", 200, DEEP),
    ("deep-object", 200, DEEP_OBJECT),
    ("huge-int", 200, b'{"usage": {"prompt_tokens": ' + HUGE_INT + b"}}"),
    ("inf-tokens", 200, b'{"usage": {"prompt_tokens": 1e400, "completion_tokens": 1e308}}'),
    ("nan", 200, b'{"usage": {"prompt_tokens": NaN}, "choices": NaN}'),
    ("null", 200, b"null"),
    ("list", 200, b"[1, 2, 3]"),
    ("string", 200, b'"hello"'),
    ("wrong-shapes", 200, b'{"choices": "x", "content": 5, "candidates": {"a": 1}, "usage": []}'),
    ("lone-surrogate", 200, b'{"choices": [{"message": {"content": "\\ud800"}}], "content": "\\udfff"}'),
    ("error-deep", 500, b'{"error": ' + DEEP + b"}"),
    ("error-garbage", 500, b"\xff\xfe\x00"),
    ("error-weird", 503, b'{"error": {"message": {"x": 1}, "code": [1], "type": 5}}'),
    ("error-huge-int", 500, b'{"error": {"code": ' + HUGE_INT + b"}}"),
]

# (name, pieces): what a broken deployment can stream.
SSE_CORPUS: list[tuple[str, list[bytes]]] = [
    ("garbage", [b"data: \xff\xfe\x00garbage\n\n"]),
    ("deep", [b"data: " + DEEP + b"\n\n"]),
    ("deep-object", [b"data: " + DEEP_OBJECT + b"\n\n"]),
    ("huge-int", [b'data: {"usage": {"prompt_tokens": ' + HUGE_INT + b"}}\n\n"]),
    ("nan", [b"data: NaN\n\n", b"data: [DONE]\n\n"]),
    ("wrong-shapes", [b'data: {"choices": 5, "candidates": "x", "type": 7}\n\n', b"data: [DONE]\n\n"]),
    ("null-events", [b"data: null\n\n", b"event: message_start\ndata: null\n\n", b"data: [DONE]\n\n"]),
    ("no-data", [b"event: content_block_delta\n\n", b": comment only\n\n"]),
    ("empty-body", []),
    ("too-large-event", [b"data: " + b"x" * (9 * 1024 * 1024) + b"\n\n"]),
    ("cut-mid-event", [b'data: {"choices": [{"index": 0, "delta": {"ro']),
    ("binary-lines", [bytes(range(256)) + b"\n\n"]),
]


class Hostile:
    """A handler answering whatever reply the test set last (the test suite runs one test at a time)."""

    def __init__(self) -> None:
        self.reply: Reply = JSONReply(raw=b"")

    def __call__(self, rec: Recorded) -> Reply:
        return self.reply


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[LoopbackServer, Hostile]]:
    handler = Hostile()
    with LoopbackServer(handler) as server:
        yield server, handler


@pytest.fixture(scope="module")
def healthy() -> Iterator[LoopbackServer]:
    with LoopbackServer(openai_server.handle) as server:
        yield server


def _target(kind: str, server: LoopbackServer) -> Target:
    base = server.base_url + ("/v1" if kind in ("openai", "anthropic") else "/v1beta")
    return Target(provider=f"hostile-{kind}", kind=kind, base_url=base, model="m", api_key="sk-test")


def _plan(kind: str, hostile: LoopbackServer, healthy: LoopbackServer) -> Plan:
    good = Target(provider="healthy", kind="openai", base_url=healthy.base_url + "/v1", model="gpt-4o-mini")
    return Plan(
        [Candidate(_target(kind, hostile), f"hostile-{kind}/m"), Candidate(good, "healthy/gpt-4o-mini")],
        timeouts=Timeouts(total_s=20.0),
    )


def _assert_fell_back(result: Any) -> None:
    assert result.error is None, repr(result.error)
    assert result.text == ANSWER
    assert result.outcomes[-1] == "ok", result.outcomes
    for outcome in result.outcomes[:-1]:  # each failed attempt was typed (an APIError class name)
        assert _is_api_error(outcome), outcome


def _is_api_error(name: str) -> bool:
    return any(cls.__name__ == name for cls in _subclasses(APIError))


def _subclasses(cls: type) -> Iterator[type]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _subclasses(sub)


def _run_both(plan: Plan, stream: bool) -> None:
    _assert_fell_back(run_sync(plan, stream=stream))
    _assert_fell_back(asyncio.run(run_async(plan, stream=stream)))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("name", "status", "raw"), JSON_CORPUS, ids=[c[0] for c in JSON_CORPUS])
def test_hostile_json_falls_back(
    hostile: tuple[LoopbackServer, Hostile],
    healthy: LoopbackServer,
    kind: str,
    name: str,
    status: int,
    raw: bytes,
) -> None:
    server, handler = hostile
    handler.reply = JSONReply(status=status, raw=raw)
    _run_both(_plan(kind, server, healthy), stream=False)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("name", "pieces"), SSE_CORPUS, ids=[c[0] for c in SSE_CORPUS])
def test_hostile_stream_falls_back(
    hostile: tuple[LoopbackServer, Hostile],
    healthy: LoopbackServer,
    kind: str,
    name: str,
    pieces: list[bytes],
) -> None:
    server, handler = hostile
    handler.reply = SSEReply(pieces=pieces)
    _run_both(_plan(kind, server, healthy), stream=True)


@pytest.mark.parametrize("kind", KINDS)
def test_wrong_content_types_fall_back(
    hostile: tuple[LoopbackServer, Hostile], healthy: LoopbackServer, kind: str
) -> None:
    server, handler = hostile
    handler.reply = SSEReply(pieces=[b"data: {}\n\n"], content_type="text/html")  # SSE where JSON is due
    _assert_fell_back(run_sync(_plan(kind, server, healthy)))
    handler.reply = JSONReply(raw=b'{"ok": true}', headers={"content-type": "text/plain"})
    _assert_fell_back(run_sync(_plan(kind, server, healthy), stream=True))


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(KINDS), body=st.binary(max_size=300), stream=st.booleans())
def test_random_bytes_fall_back(
    hostile: tuple[LoopbackServer, Hostile], healthy: LoopbackServer, kind: str, body: bytes, stream: bool
) -> None:
    server, handler = hostile
    handler.reply = SSEReply(pieces=[b"data: " + body + b"\n\n"]) if stream else JSONReply(raw=body)
    _assert_fell_back(run_sync(_plan(kind, server, healthy), stream=stream))


def _policy(tmp_path: Path, kind: str, hostile: LoopbackServer, healthy: LoopbackServer) -> Path:
    base = hostile.base_url + ("/v1" if kind in ("openai", "anthropic") else "/v1beta")
    path = tmp_path / "hostile.yaml"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "providers": {
                    "bad": {"kind": kind, "base_url": base, "api_key": "sk-test"},
                    "good": {"kind": "openai", "base_url": healthy.base_url + "/v1", "api_key": "sk-test"},
                },
                "models": {
                    "bad-m": {"provider": "bad", "model": "m"},
                    "good-m": {"provider": "good", "model": "gpt-4o-mini"},
                },
                "routes": {"r": {"candidates": ["bad-m", "good-m"], "retry": {"max_retries": 0}}},
            }
        )
    )
    return path


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", ["deep-array", "invalid-utf8", "nan", "huge-int", "error-deep"])
def test_through_the_sdk_client(
    hostile: tuple[LoopbackServer, Hostile],
    healthy: LoopbackServer,
    tmp_path: Path,
    kind: str,
    case: str,
) -> None:
    server, handler = hostile
    _, status, raw = next(c for c in JSON_CORPUS if c[0] == case)
    handler.reply = JSONReply(status=status, raw=raw)
    messages: Any = [{"role": "user", "content": PROMPT}]
    with gateway.OpenAI(policy=_policy(tmp_path, kind, server, healthy), max_retries=0) as client:
        reply = client.chat.completions.create(model="route:r", messages=messages)
        assert reply.choices[0].message.content == ANSWER
        chunks = client.chat.completions.create(model="route:r", messages=messages, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
