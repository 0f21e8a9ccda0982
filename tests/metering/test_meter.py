"""Pricing, the meter's rules per attempt, and the buffered writers in front of the sinks."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.catalog import load_catalog
from gateway.core.attempts import AttemptRecord, Candidate
from gateway.core.errors import InternalServerError
from gateway.core.types import CompletionTokensDetails, CompletionUsage, PromptTokensDetails
from gateway.metering import (
    BufferedWriter,
    CallbackSink,
    MemorySink,
    Meter,
    ModelPrice,
    PriceTable,
    UsageRecord,
    api_key_id,
    count_text,
    usage_record,
)
from providers.base import Target

PRICE = ModelPrice(
    input=Decimal("2.50"), output=Decimal("10.00"), cached_input=Decimal("1.25"), reasoning=Decimal("20")
)
PRICES = PriceTable({"openai/gpt-4o": PRICE})
KEY = "sk-unit-test-key-0123456789"


def attempt(
    *,
    outcome: str = "ok",
    usage: CompletionUsage | None = None,
    streamed: str = "",
    attempt_no: int = 0,
    model: str = "gpt-4o",
    metadata: dict[str, str] | None = None,
    error: BaseException | None = None,
) -> AttemptRecord:
    target = Target(
        provider="openai", kind="openai", base_url="http://127.0.0.1:9/v1", model=model, api_key=KEY
    )
    return AttemptRecord(
        request_id="req1",
        attempt=attempt_no,
        candidate=Candidate(target, model),
        route="support",
        started=time.perf_counter() - 0.25,
        duration_s=0.25,
        ttft_s=0.1 if streamed else None,
        outcome=outcome,
        status_code=200 if outcome == "ok" else 500,
        usage=usage,
        usage_estimated=usage is None and bool(streamed),
        streamed_text=streamed,
        metadata=metadata or {},
        user="u-42",
        error=error,
    )


def usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
        completion_tokens_details=CompletionTokensDetails(reasoning_tokens=reasoning),
    )


# --- pricing -----------------------------------------------------------------------------------------


def test_cost_splits_cached_and_reasoning_tokens() -> None:
    cost = PRICE.cost(
        prompt_tokens=1_000_000, completion_tokens=1_000_000, cached_tokens=400_000, reasoning_tokens=250_000
    )
    assert cost == Decimal("1.5") + Decimal("0.5") + Decimal("7.5") + Decimal("5")


def test_unpriced_parts_fall_back_to_input_and_output() -> None:
    plain = ModelPrice(input=Decimal("1"), output=Decimal("4"))
    assert plain.cost(1_000_000, 1_000_000, cached_tokens=500_000, reasoning_tokens=500_000) == Decimal("5")
    assert plain.cost(0, 0) == Decimal(0)
    assert str(plain.cost(10_000_000, 0)) == "10"


def test_catalog_prices_and_lenient_lookup() -> None:
    table = PriceTable.from_catalog(load_catalog())
    spec = load_catalog().models["openai/gpt-4o-mini"]
    price = table.lookup("gpt-4o-mini")
    assert price == ModelPrice(spec.input_price, spec.output_price, spec.cached_input_price)  # type: ignore[arg-type]
    assert table.lookup("gpt-4o-mini", "openai") == table.lookup("openai/gpt-4o-mini") == price
    assert "gpt-4o-mini" in table and "no-such-model" not in table


def test_unknown_model_costs_none_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    table = PriceTable()
    with caplog.at_level(logging.WARNING, logger="gateway.metering"):
        assert table.cost("mystery-1", prompt_tokens=5, completion_tokens=5) is None
        assert table.cost("mystery-1", prompt_tokens=5, completion_tokens=5) is None
    assert [r.getMessage() for r in caplog.records if "mystery-1" in r.getMessage()][0].startswith(
        "no price for model 'mystery-1'"
    )
    assert len([r for r in caplog.records if "mystery-1" in r.getMessage()]) == 1


# --- one attempt, one record ---------------------------------------------------------------------------


def test_reported_usage_is_priced_and_attributed() -> None:
    record = usage_record(
        attempt(usage=usage(1000, 200, cached=600, reasoning=50), metadata={"team": "search", "env": "prod"}),
        PRICES,
        now=1_800_000_000.0,
    )
    assert record == UsageRecord(
        request_id="req1",
        attempt=0,
        ts=1_800_000_000.0,
        model="gpt-4o",
        provider="openai",
        prompt_tokens=1000,
        cached_tokens=600,
        completion_tokens=200,
        reasoning_tokens=50,
        cost_usd=(400 * PRICE.input + 600 * PRICE.cached_input + 150 * PRICE.output + 50 * PRICE.reasoning)
        / 1_000_000,  # type: ignore[operator]
        user="u-42",
        key_id=api_key_id(KEY),
        team="search",
        tags=(("env", "prod"),),
        route="support",
        latency_s=0.25,
        ttft_s=None,
        outcome="ok",
        status_code=200,
        estimated=False,
    )
    assert record.record_id == "req1:0"
    assert UsageRecord.from_dict(record.to_dict()) == record
    assert KEY[:8] not in record.to_json() and record.key_id.startswith("key_")


def test_stream_without_usage_is_counted_and_marked() -> None:
    record = usage_record(attempt(streamed="Hello there, friend"), PRICES, now=0.0)
    assert record is not None
    assert (record.completion_tokens, record.estimated, record.ttft_s) == (
        count_text("Hello there, friend", "gpt-4o").tokens,
        True,
        0.1,
    )


def test_cut_stream_is_partial_and_failure_without_tokens_has_no_record() -> None:
    error = InternalServerError("boom", body=None, status_code=500)
    cut = usage_record(attempt(outcome="partial", streamed="Hel", error=error), PRICES, now=0.0)
    assert cut is not None and cut.outcome == "partial" and cut.estimated
    assert usage_record(attempt(outcome="InternalServerError", error=error), PRICES, now=0.0) is None
    zero = usage(0, 0)
    assert (
        usage_record(attempt(outcome="InternalServerError", usage=zero, error=error), PRICES, now=0.0) is None
    )


def test_unknown_model_is_recorded_with_cost_none() -> None:
    record = usage_record(attempt(usage=usage(10, 5), model="mystery-2"), PriceTable(), now=0.0)
    assert record is not None and record.cost_usd is None and record.to_state().cost_usd == Decimal(0)


def test_meter_drops_replays_and_counts() -> None:
    sink = MemorySink()
    with Meter(sink, prices=PRICES) as meter:
        first = attempt(usage=usage(10, 5))
        meter.attempt_finished(first)
        meter.attempt_finished(first)
        meter.attempt_finished(attempt(attempt_no=1, outcome="InternalServerError"))
        assert meter.flush()
        stats = meter.stats()
    assert [r.record_id for r in sink.records] == ["req1:0"]
    assert (stats.records, stats.replays, stats.skipped, stats.dropped) == (1, 1, 1, 0)


# --- buffered writers --------------------------------------------------------------------------------


def make(i: int) -> UsageRecord:
    return UsageRecord(f"r{i}", 0, 0.0, "gpt-4o", "openai", prompt_tokens=1)


class SlowSink(MemorySink):
    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def write(self, records):  # type: ignore[no-untyped-def]
        self.gate.wait(10)
        super().write(records)


def test_full_queue_is_counted_and_reported_not_blocking(caplog: pytest.LogCaptureFixture) -> None:
    sink = SlowSink()
    writer = BufferedWriter(sink, queue_size=10, batch_size=5, flush_interval_s=0.01)
    with caplog.at_level(logging.WARNING, logger="gateway.metering"):
        start = time.perf_counter()
        accepted = [writer.submit(make(i)) for i in range(100)]
        elapsed = time.perf_counter() - start
    assert elapsed < 0.1
    stats = writer.stats()
    assert stats.submitted == sum(accepted) and stats.dropped == 100 - sum(accepted) > 0
    assert any("records dropped" in r.getMessage() for r in caplog.records)
    sink.gate.set()
    writer.close()
    assert len(sink.records) == writer.stats().written == stats.submitted


def test_close_flushes_everything_and_later_records_are_counted() -> None:
    sink = MemorySink()
    writer = BufferedWriter(sink, flush_interval_s=60)  # only close can flush in time
    for i in range(1234):
        writer.submit(make(i))
    writer.close()
    assert len(sink.records) == 1234
    assert writer.submit(make(9999)) is False and writer.stats().dropped == 1


class FailingSink(MemorySink):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def write(self, records):  # type: ignore[no-untyped-def]
        if self.failures:
            self.failures -= 1
            raise ConnectionError("store down")
        super().write(records)


def test_failing_sink_is_retried_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    recovering = BufferedWriter(FailingSink(1), flush_interval_s=0.01)
    recovering.submit(make(1))
    assert recovering.flush(5)
    assert recovering.stats().written == 1
    recovering.close()
    with caplog.at_level(logging.WARNING, logger="gateway.metering"):
        broken = BufferedWriter(FailingSink(99), flush_interval_s=0.01, max_write_attempts=2)
        broken.submit(make(1))
        assert broken.flush(5)
        broken.close()
    assert broken.stats().failed == 1
    assert any("giving up" in r.getMessage() for r in caplog.records)


def test_callback_sink_receives_each_record() -> None:
    seen: list[UsageRecord] = []
    with Meter(CallbackSink(seen.append), prices=PRICES) as meter:
        meter.attempt_finished(attempt(usage=usage(3, 4)))
    assert [(r.prompt_tokens, r.completion_tokens) for r in seen] == [(3, 4)]


def test_records_are_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    db = tmp_path / "exit.sqlite"
    code = f"""
from gateway.metering import BufferedWriter, StateSink, UsageRecord
writer = BufferedWriter(StateSink.from_url("sqlite://{db}"), flush_interval_s=3600)
for i in range(50):
    writer.submit(UsageRecord(f"r{{i}}", 0, 1.0, "gpt-4o", "openai", prompt_tokens=2))
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    from gateway.state.sqlite import SQLiteBackend

    backend = SQLiteBackend(str(db))
    [total] = backend.query_usage(0)
    backend.close()
    assert (total.requests, total.prompt_tokens) == (50, 100)


# --- wiring ------------------------------------------------------------------------------------------


def test_meter_from_policy_uses_its_state_and_prices(tmp_path: Path) -> None:
    from gateway.policy import parse_policy
    from gateway.state.sqlite import SQLiteBackend

    db = tmp_path / "policy.sqlite"
    policy = parse_policy(
        f"version: 1\nstate: {{backend: sqlite, path: '{db}'}}\n"
        "models: {openai/gpt-4o: {price: {input: 1, output: 2}}}"
    )
    with Meter.from_policy(policy) as meter:
        assert meter.prices.lookup("gpt-4o") == ModelPrice(
            Decimal(1), Decimal(2), load_catalog().models["openai/gpt-4o"].cached_input_price
        )
        meter.attempt_finished(attempt(usage=usage(1_000_000, 1_000_000)))
    backend = SQLiteBackend(str(db))
    [total] = backend.query_usage(0)
    backend.close()
    assert (total.prompt_tokens, total.cost_usd) == (1_000_000, Decimal(3))


async def test_async_client_is_metered(scripted_url: str) -> None:
    import gateway

    sink = MemorySink()
    with Meter(sink, prices=PriceTable()) as meter:
        async with gateway.AsyncOpenAI(api_key="sk-test", base_url=scripted_url, observer=meter) as client:
            await client.chat.completions.create(
                model="flaky1:gpt-4o-mini", messages=[{"role": "user", "content": "a b"}]
            )
        meter.flush()
        assert [(r.attempt, r.prompt_tokens, r.completion_tokens, r.cost_usd) for r in sink.records] == [
            (1, 2, 3, None)
        ]


def test_local_streams_are_counted_with_the_local_tokenizer() -> None:
    sink = MemorySink()
    with Meter(sink, prices=PRICES, count_fns={"local/tiny": lambda text: len(text)}) as meter:
        meter.attempt_finished(attempt(streamed="abcdef", model="local/tiny"))
    [record] = sink.records
    assert (record.completion_tokens, record.estimated) == (6, True)
