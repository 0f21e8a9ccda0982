"""Helpers for fixture tests: read recorded bodies, feed streams to a provider, fold chunks up."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from gateway.core.types import ChatCompletionChunk, ChatRequest
from gateway.transports.sse import SSEDecoder
from providers.base import ProviderModule, ServerSentEvent, Target

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT / "tests" / "fixtures" / "recorded"  # a verbatim copy of shared/fixtures
OWN = ROOT / "tests" / "fixtures"
CREATED = 1_700_000_000


def stems(folder: Path, suffix: str) -> list[str]:
    return sorted(p.name.removesuffix(suffix) for p in folder.glob(f"*{suffix}"))


def status_of(folder: Path, name: str) -> int:
    meta = folder / f"{name}.meta.json"
    if meta.exists():
        response = json.loads(meta.read_text()).get("response") or {}
        if "status" in response:
            return int(response["status"])
    head = name.removeprefix("batch_embed_")
    return int(head.split("_")[1]) if head.startswith("error_") else 200


def events_of(path: Path) -> list[ServerSentEvent]:
    """A recorded stream as SSE events: raw SSE as decoded; a JSON array or JSONL one event per item."""
    raw = path.read_bytes()
    if path.name.endswith(".sse"):
        decoder = SSEDecoder()
        return decoder.feed(raw) + decoder.flush()
    if path.name.endswith(".jsonarray"):
        return [ServerSentEvent(data=json.dumps(item)) for item in json.loads(raw)]
    return [ServerSentEvent(data=line) for line in raw.decode().splitlines() if line.strip()]


def run_stream(
    module: ProviderModule, target: Target, events: Iterable[ServerSentEvent], *, usage: bool = True
) -> list[ChatCompletionChunk]:
    req = ChatRequest(
        model=target.model,
        messages=[{"role": "user", "content": "x"}],
        stream=True,
        stream_options={"include_usage": usage},
    )
    state = module.new_stream(req, target)
    chunks = [chunk for event in events for chunk in module.parse_stream_event(event, state)]
    return chunks + module.end_stream(state)


def fold(chunks: list[ChatCompletionChunk]) -> dict[str, Any]:
    """The message a client would assemble from ``chunks`` (as the openai SDK's stream helper does)."""
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    for chunk in chunks:
        assert chunk.id == chunks[0].id and chunk.created == chunks[0].created
        if chunk.usage is not None:
            assert not chunk.choices, "usage comes in its own final chunk"
            usage = chunk.usage.to_dict(exclude_none=True)
        for choice in chunk.choices:
            state = choices.setdefault(choice.index, {"role": None, "content": "", "tool_calls": {}})
            delta = choice.delta
            state["role"] = state["role"] or delta.role
            state["content"] += delta.content or ""
            for call in delta.tool_calls or []:
                slot = state["tool_calls"].setdefault(call.index, {"id": None, "name": None, "arguments": ""})
                if call.id:
                    assert slot["id"] is None, "a tool call id is sent once"
                    slot["id"] = call.id
                if call.function and call.function.name:
                    slot["name"] = call.function.name
                if call.function and call.function.arguments:
                    slot["arguments"] += call.function.arguments
            if choice.finish_reason is not None:
                assert "finish_reason" not in state, "one finish chunk per choice"
                state["finish_reason"] = choice.finish_reason
    for state in choices.values():
        state["tool_calls"] = [state["tool_calls"][i] for i in sorted(state["tool_calls"])]
        assert sorted(range(len(state["tool_calls"]))) == list(range(len(state["tool_calls"])))
    return {"id": chunks[0].id, "model": chunks[0].model, "choices": choices, "usage": usage}


def dump(reply: Any) -> dict[str, Any]:
    """A reply as a dict without ``None`` fields, its ``created`` timestamp fixed for comparison."""
    data: dict[str, Any] = reply.to_dict(exclude_none=True)
    data["created"] = CREATED
    return data
