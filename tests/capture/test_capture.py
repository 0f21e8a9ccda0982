"""Capture end to end through the real client and core: a loopback upstream, a policy with a
``capture:`` section, redaction, feedback by reply, and the export the tuner reads."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from gateway import OpenAI
from gateway.capture import CaptureConfig, DatasetStore, Redaction, Redactor, UnknownExampleError, feedback
from gateway.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from loopback_upstream import serve  # noqa: E402


def _policy(tmp_path: Path, base_url: str, extra: str = "") -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""version: 1
providers:
  up: {{kind: openai, base_url: "{base_url}", api_key: "sk-upstream-test-0123456789"}}
models:
  teacher: {{provider: up, model: teacher}}
routes:
  support:
    candidates: [teacher]
    capture:
      sample_rate: 1.0
      fields: [prompt, completion, metadata]
      redact: {{patterns: ["ACME-\\\\d{{6}}"]}}
      store: "{tmp_path}/captures.sqlite"{extra}
"""
    )
    return path


def test_redactor_builtin_detectors_patterns_and_env_keys() -> None:
    redact = Redactor.from_config(
        Redaction(patterns=[r"ACME-\d{6}"]), environ={"X_API_KEY": "s3cr3t-value-xyz"}
    )
    text = (
        "mail bob.smith@example.co.uk key sk-proj-abcdefghijklmnopqrstuvwx card 4111 1111 1111 1111 "
        "not-a-card 1234 5678 9012 3456 ticket ACME-123456 env s3cr3t-value-xyz Bearer abcdefghijklmnop1234"
    )
    assert redact(text) == (
        "mail [REDACTED:email] key [REDACTED:api_key] card [REDACTED:card_number] "
        "not-a-card 1234 5678 9012 3456 ticket [REDACTED:pattern] env [REDACTED:secret] [REDACTED:api_key]"
    )


def test_bad_capture_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="patterns\\[0\\] is not a regular expression"):
        CaptureConfig(redact={"patterns": ["("]})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_rate"):
        CaptureConfig(sample_rate=2)


def test_capture_feedback_and_export(tmp_path: Path) -> None:
    with serve("teacher") as base_url:
        policy = _policy(tmp_path, base_url)
        client = OpenAI(policy=str(policy), api_key="sk-client-key-0123456789abcdef")
        replies = []
        for i, content in enumerate(
            ["hello alice@example.com", "card 4111-1111-1111-1111", "hello alice@example.com"]
        ):
            replies.append(
                client.chat.completions.create(
                    model="route:support",
                    messages=[{"role": "user", "content": content}],
                    metadata={"n": str(i)},
                )
            )
        client.close()
    store = DatasetStore(tmp_path / "captures.sqlite")
    examples = list(store.examples("support"))
    assert [e.messages for e in examples] == [
        [{"role": "user", "content": "hello [REDACTED:email]"}],
        [{"role": "user", "content": "card [REDACTED:card_number]"}],
        [{"role": "user", "content": "hello [REDACTED:email]"}],
    ]
    assert examples[0].completion == "[teacher] Echo: hello [REDACTED:email]"
    dump = (tmp_path / "captures.sqlite").read_bytes()
    assert b"sk-client-key" not in dump and b"sk-upstream-test" not in dump and b"alice@" not in dump
    updated = feedback(replies[1], score=0.9, label="good", store=tmp_path / "captures.sqlite")
    assert (updated.score, updated.label) == (0.9, "good")
    with pytest.raises(UnknownExampleError):
        feedback("sy-nothing", score=1.0, store=tmp_path / "captures.sqlite")
    out = tmp_path / "export"
    assert (
        main(["data", "export", "support", "--policy", str(policy), "--out", str(out), "--min-examples", "1"])
        == 0
    )
    rows = [
        json.loads(line)
        for f in ("train.jsonl", "validation.jsonl")
        for line in (out / f).read_text().splitlines()
    ]
    assert len(rows) == 2  # the duplicate is left out
    assert all(row["messages"][-1]["role"] == "assistant" for row in rows)
    assert (
        main(["data", "export", "support", "--policy", str(policy), "--out", str(out), "--min-score", "0.5"])
        == 2
    )
    store.close()


def _stream_policy(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "stream-policy.yaml"
    path.write_text(
        f"""version: 1
providers:
  up: {{kind: openai, base_url: "{base_url}", api_key: "sk-upstream-test-0123456789"}}
models:
  teacher: {{provider: up, model: gpt-4o-mini}}
routes:
  support:
    candidates: [teacher]
    capture: {{sample_rate: 1.0, fields: [prompt, completion, tool_calls], store: "{tmp_path}/streams.sqlite"}}
"""
    )
    return path


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_a_stream_is_captured_as_the_completion_it_adds_up_to(tmp_path: Path) -> None:
    import asyncio

    from gateway import AsyncOpenAI
    from tests.servers.http import LoopbackServer
    from tests.servers.openai_server import handle

    with LoopbackServer(handle) as server:
        policy = _stream_policy(tmp_path, server.base_url + "/v1")
        client = OpenAI(policy=str(policy), api_key="sk-client-key-0123456789abcdef")
        asked = [{"role": "user", "content": "stream me for bob@example.com"}]
        whole = client.chat.completions.create(model="route:support", messages=asked)
        with client.chat.completions.create(model="route:support", messages=asked, stream=True) as stream:
            streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        with client.chat.completions.create(
            model="route:support", messages=[{"role": "user", "content": "closed early"}], stream=True
        ) as stream:
            next(iter(stream))  # the caller stops after one chunk: a partial answer is no example
        tools = client.chat.completions.create(
            model="route:support",
            messages=[{"role": "user", "content": "weather in Paris?"}],
            tools=[WEATHER_TOOL],
            tool_choice="required",
            stream=True,
        )
        streamed_calls = list(tools)

        async def in_async() -> None:
            aclient = AsyncOpenAI(policy=str(policy), api_key="sk-client-key-0123456789abcdef")
            stream = await aclient.chat.completions.create(
                model="route:support", messages=[{"role": "user", "content": "async stream"}], stream=True
            )
            async for _ in stream:
                pass
            await aclient.close()

        asyncio.run(in_async())
        client.close()
    assert streamed == whole.choices[0].message.content and streamed_calls
    store = DatasetStore(tmp_path / "streams.sqlite")
    examples = list(store.examples("support"))
    assert [e.messages[-1]["content"] for e in examples] == [
        "stream me for [REDACTED:email]",  # the unary reply
        "stream me for [REDACTED:email]",  # the same, streamed
        "weather in Paris?",
        "async stream",
    ]
    assert (
        examples[1].completion
        == examples[0].completion
        == whole.choices[0].message.content.replace("bob@example.com", "[REDACTED:email]")
    )
    calls = examples[2].tool_calls
    assert calls is not None and [c["function"]["name"] for c in calls] == ["get_weather"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    assert calls[0]["id"] and examples[3].completion
    store.close()


def test_export_holds_out_prompts_as_an_eval_set(tmp_path: Path) -> None:
    from gateway.capture import export_examples
    from gateway.capture.store import CapturedExample
    from gateway.evals.sets import load_set

    def example(
        i: int, prompt: str, completion: str | None, calls: list[dict[str, object]] | None = None
    ) -> CapturedExample:
        return CapturedExample(
            id=f"sy-{i}", route="support", created=1_700_000_000.0 + i,
            messages=[{"role": "user", "content": prompt}], completion=completion, model="teacher",
            provider="up", upstream_id=None, completion_id=None, tool_calls=calls, metadata={},
        )  # fmt: skip

    weather = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        }
    ]
    captured = [
        example(i, f"question {i % 10}", f"answer {i}") for i in range(30)
    ]  # 10 prompts, 3 answers each
    captured.append(example(99, "weather in Oslo?", None, weather))
    result = export_examples(
        captured, tmp_path / "out", held_out=0.25, route="support", seed=3, validation=0.1
    )
    assert result.held_out is not None and result.held_out_count == 3  # 25 % of 11 distinct prompts
    cases = load_set(result.held_out)
    assert cases.name == "support-held-out" and len(cases.cases) == 3
    held = {json.dumps(c.messages) for c in cases.cases}
    trained = [
        json.loads(line)
        for f in ("train.jsonl", "validation.jsonl")
        for line in (tmp_path / "out" / f).read_text().splitlines()
    ]
    assert not held & {
        json.dumps(row["messages"][:-1]) for row in trained
    }  # no held-out prompt, with any answer
    assert (
        result.train_count + result.validation_count + 3 <= 31
        and len(trained) == result.train_count + result.validation_count
    )
    every = export_examples(captured, tmp_path / "all", held_out=0.99, route="support", seed=0)
    tool_cases = [
        c
        for c in load_set(every.held_out).cases
        if c.expected == {"name": "get_weather", "arguments": {"city": "Oslo"}}
    ]  # type: ignore[arg-type]
    assert len(tool_cases) == 1
    with pytest.raises(ValueError, match="held_out"):
        export_examples(captured, tmp_path / "bad", held_out=1.0)
