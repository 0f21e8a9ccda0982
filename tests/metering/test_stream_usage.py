"""Every stream is metered: without ``include_usage``, closed early by the caller, cut upstream.

A client with a policy asks the upstream for the stream's usage and keeps the usage chunk from a
caller who did not ask for it: the caller sees the chunks the openai SDK sees without the gateway.
A stream that never reported usage is counted (prompt by the tokenizer, completion from the text)
and marked estimated; budgets are charged for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

import gateway
from gateway.budgets import Subject
from gateway.metering import count_chat, count_text
from tests.metering.conftest import Recorder
from tests.servers.http import LoopbackServer

MESSAGES = [{"role": "user", "content": "stream one two three four five six"}]


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_USAGE_KEY", "sk-stream-usage")


def policy(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""
version: 1
providers:
  up: {{kind: openai, base_url: "{url}", api_key: "${{STREAM_USAGE_KEY}}"}}
models:
  mini: {{provider: up, model: gpt-4o-mini, price: {{input: 1000, output: 2000}}, max_output: 200}}
  cutmini: {{provider: up, model: "cut3:gpt-4o-mini", price: {{input: 1000, output: 2000}}, max_output: 200}}
state: {{backend: sqlite, path: "{tmp_path / "state.sqlite"}"}}
{extra}
"""
    )
    return path


@pytest.fixture
def client(tmp_path: Path, scripted_url: str, recorder: Recorder) -> Iterator[gateway.OpenAI]:
    extra = "budgets: {all: {window: day, limit_usd: 1000}}"
    with gateway.OpenAI(policy=policy(tmp_path, scripted_url, extra), observer=recorder) as made:
        yield made


def _normalized(chunk: Any) -> dict[str, Any]:
    data: dict[str, Any] = chunk.to_dict()
    data.pop("id", None)
    data.pop("created", None)
    return data


def test_caller_sees_the_sdks_stream_while_the_upstream_reports_usage(
    client: gateway.OpenAI, scripted_upstream: LoopbackServer, scripted_url: str, recorder: Recorder
) -> None:
    direct = openai.OpenAI(api_key="sk-direct", base_url=scripted_url, max_retries=0)
    expected = [
        _normalized(c)
        for c in direct.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    ]
    direct.close()
    scripted_upstream.reset_log()
    got = [
        _normalized(c) for c in client.chat.completions.create(model="mini", messages=MESSAGES, stream=True)
    ]
    assert got == expected
    assert all("usage" not in c for c in got)
    [sent] = scripted_upstream.log
    assert sent.json()["stream_options"] == {"include_usage": True}
    [record] = recorder.records
    served = sent.served_tokens
    assert record.usage is not None and not record.usage_estimated
    assert (record.usage.prompt_tokens, record.usage.completion_tokens) == (
        served["prompt"],
        served["completion"],
    )


def test_caller_who_asked_for_usage_gets_it_once(client: gateway.OpenAI, recorder: Recorder) -> None:
    chunks = list(
        client.chat.completions.create(
            model="mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0].choices == []
    record_usage = recorder.records[0].usage
    assert record_usage is not None
    assert record_usage.model_dump(exclude_unset=True) == usage_chunks[0].usage.model_dump(exclude_unset=True)


def test_stream_closed_early_is_estimated_and_charged(client: gateway.OpenAI, recorder: Recorder) -> None:
    stream = client.chat.completions.create(model="mini", messages=MESSAGES, stream=True)
    text = ""
    for chunk in stream:
        text += chunk.choices[0].delta.content or ""
        if text:
            break
    stream.close()
    [record] = recorder.records
    assert record.outcome == "closed" and record.usage_estimated
    assert record.usage is not None
    prompt = count_chat(MESSAGES, "mini").tokens
    assert record.usage.prompt_tokens == prompt > 0
    assert record.usage.completion_tokens >= count_text(text, "mini").tokens
    _assert_charged(client, record.usage.prompt_tokens, record.usage.completion_tokens)


def test_cut_stream_is_estimated_and_charged(client: gateway.OpenAI, recorder: Recorder) -> None:
    stream = client.chat.completions.create(model="cutmini", messages=MESSAGES, stream=True)
    delivered = ""
    with pytest.raises(gateway.APIError):
        for chunk in stream:
            delivered += chunk.choices[0].delta.content or ""
    [record] = recorder.records
    assert record.outcome == "partial" and record.usage_estimated and record.usage is not None
    assert record.usage.prompt_tokens == count_chat(MESSAGES, "cutmini").tokens
    assert record.usage.completion_tokens == count_text(delivered, "cutmini").tokens > 0
    _assert_charged(client, record.usage.prompt_tokens, record.usage.completion_tokens)


def _assert_charged(client: gateway.OpenAI, prompt: int, completion: int) -> None:
    guard = client._switchyard.runtime.guard
    [status] = guard.budgets.status(Subject())
    assert status.reserved == 0
    assert status.used == Decimal(prompt * 1000 + completion * 2000) / 1_000_000


def test_async_stream_without_usage_is_exact_and_hidden(
    tmp_path: Path, scripted_url: str, scripted_upstream: LoopbackServer, recorder: Recorder
) -> None:
    import asyncio

    async def main() -> list[dict[str, Any]]:
        async with gateway.AsyncOpenAI(policy=policy(tmp_path, scripted_url), observer=recorder) as made:
            stream = await made.chat.completions.create(model="mini", messages=MESSAGES, stream=True)
            return [_normalized(c) async for c in stream]

    got = asyncio.run(main())
    assert got and all("usage" not in c and c["choices"] for c in got)
    [record] = recorder.records
    served = scripted_upstream.log[-1].served_tokens
    assert record.usage is not None and not record.usage_estimated
    assert record.usage.prompt_tokens == served["prompt"]
