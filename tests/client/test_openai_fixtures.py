"""Every recorded OpenAI and OpenAI-compatible fixture, replayed by the loopback server, must come
out of ``gateway.OpenAI`` exactly as it comes out of the official openai SDK (the oracle), and as
the recorded body says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

import gateway
from tests.servers.openai_server import FIXTURES

FOLDERS = [FIXTURES / "openai", FIXTURES / "openai_compatible"]


def _names(suffix: str) -> list[str]:
    return sorted(p.name.removesuffix(suffix) for folder in FOLDERS for p in folder.glob(f"*{suffix}"))


def _status(name: str) -> int:
    for folder in FOLDERS:
        meta = folder / f"{name}.meta.json"
        if meta.exists():
            response = json.loads(meta.read_text()).get("response") or {}
            if isinstance(response, dict) and "status" in response:
                return int(response["status"])
    return int(name.split("_")[1]) if name.startswith("error_") else 200


def _body(name: str) -> Any:
    for folder in FOLDERS:
        path = folder / f"{name}.response.json"
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(name)


@pytest.fixture
def clients(openai_url: str) -> Iterator[tuple[gateway.OpenAI, openai.OpenAI]]:
    with (
        gateway.OpenAI(api_key="sk-test", base_url=openai_url, max_retries=0) as ours,
        openai.OpenAI(api_key="sk-test", base_url=openai_url, max_retries=0) as sdk,
    ):
        yield ours, sdk


MESSAGES = [{"role": "user", "content": "replay"}]
JSON_NAMES = _names(".response.json")
SSE_NAMES = _names(".response.sse")


@pytest.mark.parametrize("name", [n for n in JSON_NAMES if _status(n) < 400])
def test_json_fixture_parses_like_the_sdk(name: str, clients: tuple[gateway.OpenAI, openai.OpenAI]) -> None:
    ours, sdk = clients
    if name.startswith("embeddings"):
        got = ours.embeddings.create(model=f"fixture:{name}", input="x")
        want = sdk.embeddings.create(model=f"fixture:{name}", input="x")
    else:
        got = ours.chat.completions.create(model=f"fixture:{name}", messages=MESSAGES)
        want = sdk.chat.completions.create(model=f"fixture:{name}", messages=MESSAGES)
    assert got.to_dict() == want.to_dict()
    if "base64" not in name:  # the SDK decodes base64 embeddings itself, for both clients alike
        assert got.to_dict() == _body(name)
    assert gateway.info(got) is not None and gateway.info(got).attempts[0].outcome == "ok"


@pytest.mark.parametrize("name", [n for n in JSON_NAMES if _status(n) >= 400])
def test_error_fixture_raises_like_the_sdk(name: str, clients: tuple[gateway.OpenAI, openai.OpenAI]) -> None:
    ours, sdk = clients
    call = (
        (lambda c: c.embeddings.create(model=f"fixture:{name}", input="x"))
        if "embeddings" in name
        else (lambda c: c.chat.completions.create(model=f"fixture:{name}", messages=MESSAGES))
    )
    with pytest.raises(openai.APIStatusError) as sdk_error:
        call(sdk)
    with pytest.raises(gateway.APIStatusError) as our_error:
        call(ours)
    got, want = our_error.value, sdk_error.value
    assert (type(got).__name__, got.status_code, got.body, got.message, got.code, got.type, got.param) == (
        type(want).__name__,
        want.status_code,
        want.body,
        want.message,
        want.code,
        want.type,
        want.param,
    )
    assert got.status_code == _status(name)


@pytest.mark.parametrize("name", SSE_NAMES)
def test_sse_fixture_streams_like_the_sdk(name: str, clients: tuple[gateway.OpenAI, openai.OpenAI]) -> None:
    ours, sdk = clients
    got = [
        c.to_dict()
        for c in ours.chat.completions.create(model=f"fixture:{name}", messages=MESSAGES, stream=True)
    ]
    want = [
        c.to_dict()
        for c in sdk.chat.completions.create(model=f"fixture:{name}", messages=MESSAGES, stream=True)
    ]
    assert got == want
    raw = next(
        f / f"{name}.response.sse" for f in FOLDERS if (f / f"{name}.response.sse").exists()
    ).read_text()
    events = [line[6:] for line in raw.splitlines() if line.startswith("data: ") and line != "data: [DONE]"]
    assert got == [json.loads(e) for e in events]


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("openai*/*.chunks.jsonl")), ids=lambda p: p.name)
def test_chunk_payloads_parse(path: Path) -> None:
    """vercel/ai's ``.chunks.jsonl``: one SSE data payload per line, fed straight to the parser."""
    from gateway.core.types import ChatRequest
    from providers import openai as protocol
    from providers.base import ServerSentEvent, Target

    target = Target(provider="groq", kind="openai", base_url="http://127.0.0.1", model="m")
    state = protocol.new_stream(ChatRequest(model="m", messages=MESSAGES), target)
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    chunks = [c for line in lines for c in protocol.parse_stream_event(ServerSentEvent(data=line), state)]
    assert [c.to_dict() for c in chunks] == [json.loads(line) for line in lines]
    calls: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                calls[call.index] = calls.get(call.index, "") + (
                    (call.function and call.function.arguments) or ""
                )
    assert calls and all(json.loads(arguments) is not None for arguments in calls.values())
    assert protocol.end_stream(state) == []
