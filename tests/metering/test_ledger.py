"""One record per attempt that consumed tokens, reconciled with the upstream's own ledger.

Scenario by scenario, through ``gateway.AsyncOpenAI`` and ``gateway.OpenAI`` built from a policy:
a non-streamed hedge whose loser finishes unread, a streamed hedge whose loser is cancelled after
the upstream answered, a buffered stream cut inside its buffer and retried on the next candidate, a
stream cut after content reached the caller, and plain replies and streams. Each upstream request
has a ledger entry (what it billed, ``ledger_server.py``) and each one has exactly one usage record
with the same prompt and completion tokens; estimated records are the ones the upstream never
reported usage for, and are marked.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gateway
from gateway.budgets import Budget, Budgets, Subject
from gateway.metering import MemorySink, Meter, UsageRecord
from tests.metering.ledger_server import Billed, LedgerServer

LIMIT = 10_000_000


@pytest.fixture
def upstream() -> Iterator[LedgerServer]:
    with LedgerServer() as server:
        yield server


@pytest.fixture
def policy(tmp_path: Path, upstream: LedgerServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LEDGER_KEY", "sk-ledger")
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""
version: 1
providers:
  up: {{kind: openai, base_url: "{upstream.base_url}", api_key: "${{LEDGER_KEY}}"}}
models:
  slowa: {{provider: up, model: slow-600, price: {{input: 1, output: 1}}}}
  holda: {{provider: up, model: hold, price: {{input: 1, output: 1}}}}
  cuta: {{provider: up, model: cut-2, price: {{input: 1, output: 1}}}}
  cutc: {{provider: up, model: cut-6, price: {{input: 1, output: 1}}}}
  fastb: {{provider: up, model: ok, price: {{input: 1, output: 1}}}}
  fastb2: {{provider: up, model: ok, price: {{input: 1, output: 1}}}}
  fastb3: {{provider: up, model: ok, price: {{input: 1, output: 1}}}}
  bodycuta: {{provider: up, model: bodycut, price: {{input: 1, output: 1}}, max_output: 200}}
  fastb4: {{provider: up, model: ok, price: {{input: 1, output: 1}}}}
routes:
  # Candidates no request has been seen from tie, so each route tries them in the declared order.
  hedged: {{candidates: [slowa, fastb], hedge: {{after_ms: 50}}}}
  hedged_stream: {{candidates: [holda, fastb2], hedge: {{after_ms: 50}}}}
  buffered: {{candidates: [cuta, fastb3]}}
  late_cut: {{candidates: [cutc]}}
  plain: {{candidates: [fastb]}}
  cut_body: {{candidates: [bodycuta, fastb4], retry: {{max_retries: 0}}}}
state: {{backend: sqlite, path: "{tmp_path / "state.sqlite"}"}}
budgets: {{all: {{window: day, limit_tokens: {LIMIT}}}}}
"""
    )
    return path


MESSAGES = [{"role": "user", "content": "one two three four five six seven eight nine ten"}]


def _reconcile(ledger: list[Billed], records: list[UsageRecord]) -> list[tuple[str, str, bool]]:
    """Pair each ledger entry with one record (by model and tokens); return (model, outcome, estimated)."""
    upstream_model = {"slowa": "slow-600", "holda": "hold", "cuta": "cut-2", "cutc": "cut-6"}
    left = list(records)
    paired = []
    for entry in ledger:
        match = next(
            (
                r
                for r in left
                if upstream_model.get(r.model, "ok") == entry.model
                and (r.prompt_tokens, r.completion_tokens) == (entry.prompt, entry.completion)
            ),
            None,
        )
        assert match is not None, f"no record for {entry} among {left}"
        left.remove(match)
        paired.append((match.model, match.outcome, match.estimated))
    assert left == [], f"records without a ledger entry: {left}"
    return sorted(paired)


def _budget_used(tmp_path: Path) -> int:
    from gateway.state.sqlite import SQLiteBackend

    backend = SQLiteBackend(str(tmp_path / "state.sqlite"))
    try:
        [status] = Budgets(backend, [Budget("all", LIMIT, "tokens", "day", "global")]).status(Subject())
    finally:
        backend.close()
    assert status.reserved == 0
    return int(status.used)


def test_async_attempts_reconcile_with_the_upstream_ledger(
    policy: Path, upstream: LedgerServer, tmp_path: Path
):
    sink = MemorySink()
    meter = Meter(sink)

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        async with gateway.AsyncOpenAI(policy=str(policy), observer=meter, max_retries=0) as client:
            reply = await client.chat.completions.create(model="route:hedged", messages=MESSAGES)
            seen["hedged"] = gateway.info(reply).model  # answered first, so before the loser finished
            stream = await client.chat.completions.create(
                model="route:hedged_stream", messages=MESSAGES, stream=True
            )
            seen["hedged_stream"] = "".join(
                [c.choices[0].delta.content or "" async for c in stream if c.choices]
            )
            stream = await client.chat.completions.create(
                model="route:buffered", messages=MESSAGES, stream=True
            )
            seen["buffered"] = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            stream = await client.chat.completions.create(
                model="route:late_cut", messages=MESSAGES, stream=True
            )
            with pytest.raises(gateway.APIError):
                async for _ in stream:
                    pass
            await client.chat.completions.create(model="route:plain", messages=MESSAGES)
            stream = await client.chat.completions.create(
                model="route:plain", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
            )
            _ = [c async for c in stream]
            # The non-streamed hedge's loser is still answering (600 ms): wait for its record.
            deadline = time.monotonic() + 5
            while (
                len(upstream.ledger.entries) != len(meter_records(meter, sink))
                and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.02)
        return seen

    seen = asyncio.run(main())
    meter.close()
    assert seen["hedged"] == "fastb"
    assert (
        seen["hedged_stream"] == seen["buffered"] == "Echo: one two three four five six seven eight nine ten"
    )
    paired = _reconcile(upstream.ledger.entries, sink.records)
    assert paired == [
        # cut inside the buffer (prompt + the 2 chunks), retried twice, then fallen back to fastb3
        ("cuta", "error", True),
        ("cuta", "error", True),
        ("cuta", "error", True),
        ("cutc", "partial", True),  # cut after content reached the caller
        ("fastb", "ok", False),  # the non-streamed hedge's winner
        ("fastb", "ok", False),
        ("fastb", "ok", False),
        ("fastb2", "ok", False),  # the streamed hedge's winner
        ("fastb3", "ok", False),  # where the buffered stream fell back
        ("holda", "partial", True),  # the streamed hedge's loser: the upstream answered, then we hung up
        ("slowa", "partial", False),  # the non-streamed hedge's loser, finished unread: its own usage
    ]
    billed = sum(e.prompt + e.completion for e in upstream.ledger.entries)
    assert _budget_used(tmp_path) == billed  # the budget was charged every attempt, the late loser too


def meter_records(meter: Meter, sink: MemorySink) -> list[UsageRecord]:
    meter.flush()
    return sink.records


def test_sync_attempts_reconcile_with_the_upstream_ledger(
    policy: Path, upstream: LedgerServer, tmp_path: Path
):
    sink = MemorySink()
    meter = Meter(sink)
    with gateway.OpenAI(policy=str(policy), observer=meter, max_retries=0) as client:
        reply = client.chat.completions.create(model="route:hedged", messages=MESSAGES)
        assert gateway.info(reply).model == "fastb"  # the blocking client hedges too (hedge_sync.py)
        stream = client.chat.completions.create(model="route:hedged_stream", messages=MESSAGES, stream=True)
        hedged = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        stream = client.chat.completions.create(model="route:buffered", messages=MESSAGES, stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).startswith("Echo: one")
        stream = client.chat.completions.create(model="route:late_cut", messages=MESSAGES, stream=True)
        with pytest.raises(gateway.APIError):
            for _ in stream:
                pass
        # The non-streamed hedge's loser is still answering (600 ms) in its thread: wait for its record.
        deadline = time.monotonic() + 5
        while len(upstream.ledger.entries) != len(meter_records(meter, sink)) and time.monotonic() < deadline:
            time.sleep(0.02)
    meter.close()
    assert hedged == "Echo: one two three four five six seven eight nine ten"
    paired = _reconcile(upstream.ledger.entries, sink.records)
    cut_buffered = [("cuta", "error", True)] * 3
    assert paired == [
        *cut_buffered,
        ("cutc", "partial", True),
        ("fastb", "ok", False),  # the non-streamed hedge's winner
        ("fastb2", "ok", False),  # the streamed hedge's winner
        ("fastb3", "ok", False),
        ("holda", "partial", True),  # the streamed hedge's loser, stopped (its socket shut)
        ("slowa", "partial", False),  # the non-streamed hedge's loser, finished unread in its thread
    ]
    assert _budget_used(tmp_path) == sum(e.prompt + e.completion for e in upstream.ledger.entries)


@pytest.mark.parametrize(("max_tokens", "ceiling"), [(40, 40), (None, 200)])
def test_a_cut_body_is_never_charged_less_than_the_upstream_billed(
    policy: Path, upstream: LedgerServer, tmp_path: Path, max_tokens: int | None, ceiling: int
):
    """The upstream generated (and bills) the whole answer, the gateway saw half its body: the prompt
    reconciles exactly, the completion is charged at the ceiling (``max_tokens``, else the model's
    maximum the reservation held with no history), which is at least what was billed."""
    sink = MemorySink()
    meter = Meter(sink)
    limits = {} if max_tokens is None else {"max_tokens": max_tokens}
    with gateway.OpenAI(policy=str(policy), observer=meter, max_retries=0) as client:
        reply = client.chat.completions.create(model="route:cut_body", messages=MESSAGES, **limits)
        assert gateway.info(reply).model == "fastb4"
    meter.close()
    cut, served = upstream.ledger.entries
    assert (cut.model, cut.outcome, served.model) == ("bodycut", "cut", "ok")
    records = {r.model: r for r in sink.records}
    lost = records["bodycuta"]
    assert (lost.outcome, lost.estimated) == ("error", True)
    assert (lost.prompt_tokens, lost.completion_tokens) == (cut.prompt, ceiling)
    assert ceiling >= cut.completion > 0
    assert (records["fastb4"].prompt_tokens, records["fastb4"].completion_tokens) == (
        served.prompt,
        served.completion,
    )
    billed = cut.prompt + cut.completion + served.prompt + served.completion
    assert _budget_used(tmp_path) == billed + (ceiling - cut.completion) >= billed
