"""Exactly once: the usage records sum to what the upstream served, token for token.

Traffic goes through ``gateway.OpenAI(observer=...)`` to the scripted loopback: plain replies, cached
prompts, retries after 500s and 429s, streams with usage, streams cut mid-way, and requests that
fail for good. The same records are written to memory, SQLite and Redis; replaying every attempt and
every record afterwards changes nothing.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

import gateway
from gateway.metering import MemorySink, Meter, ObserverGroup, PriceTable, StateSink, count_text
from gateway.metering.pricing import ModelPrice
from gateway.state.memory import MemoryBackend
from gateway.state.redis import RedisBackend
from gateway.state.sqlite import SQLiteBackend
from tests.metering.conftest import Recorder, RedisProcess, served_totals

PRICES = PriceTable({"openai/gpt-4o-mini": ModelPrice(Decimal("0.15"), Decimal("0.60"), Decimal("0.075"))})


def _traffic(client: gateway.OpenAI) -> dict[str, int]:
    """Send the mixed traffic; return how many calls raised, by error class."""
    failures: dict[str, int] = {}
    for i in range(6):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"hi {i} there"}]
        )
    client.chat.completions.create(
        model="cached:gpt-4o-mini", messages=[{"role": "user", "content": "a b c d e f"}]
    )
    client.chat.completions.create(
        model="flaky2:gpt-4o-mini", messages=[{"role": "user", "content": "retry me"}]
    )
    client.chat.completions.create(
        model="limited1:gpt-4o-mini", messages=[{"role": "user", "content": "slow down"}]
    )
    stream = client.chat.completions.create(
        model="flaky1:gpt-4o-mini",
        messages=[{"role": "user", "content": "stream me please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "Echo: stream me please"
    for model in ("flaky99:gpt-4o-mini", "error:400"):
        try:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "no"}])
        except gateway.APIStatusError as exc:
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
    cut = client.chat.completions.create(
        model="cut3:gpt-4o-mini",
        messages=[{"role": "user", "content": "one two three four five"}],
        stream=True,
    )
    delivered = []
    with pytest.raises(gateway.APIError):
        for chunk in cut:
            delivered.append(chunk.choices[0].delta.content or "")
    failures["cut"] = 1
    assert "".join(delivered) == "Echo: one"
    return failures


def test_usage_records_sum_to_what_was_served(
    scripted_url,
    scripted_upstream,
    recorder: Recorder,
    tmp_path: Path,
    redis_server: RedisProcess,
    redis_prefix: str,
) -> None:
    memory, sqlite_backend = MemorySink(), SQLiteBackend(str(tmp_path / "state.sqlite"))
    redis_backend = RedisBackend(redis_server.url, key_prefix=redis_prefix)
    memory_backend = MemoryBackend()
    meter = Meter(
        [memory, StateSink(memory_backend), StateSink(sqlite_backend), StateSink(redis_backend)],
        prices=PRICES,
    )
    client = gateway.OpenAI(
        api_key="sk-test-exactly-once",
        base_url=scripted_url,
        observer=ObserverGroup(meter, recorder),
        max_retries=2,
    )
    failures = _traffic(client)
    assert meter.flush(timeout=10)
    assert failures == {"InternalServerError": 1, "BadRequestError": 1, "cut": 1}

    records = memory.records
    reported = [r for r in records if not r.estimated]
    served = served_totals(scripted_upstream.log)
    assert {
        "prompt": sum(r.prompt_tokens for r in reported),
        "cached": sum(r.cached_tokens for r in reported),
        "completion": sum(r.completion_tokens for r in reported),
    } == served
    assert served["cached"] > 0
    print(
        f"\nexactly-once: {len(scripted_upstream.log)} upstream calls, {len(records)} records "
        f"({len(records) - len(reported)} estimated); served = recorded = {served}"
    )

    # Every attempt was observed once; only those that consumed tokens were metered.
    attempts = recorder.records
    assert len(attempts) == len(scripted_upstream.log)
    assert len({(a.request_id, a.attempt) for a in attempts}) == len(attempts)
    consumed = [a for a in attempts if a.usage is not None or a.streamed_text]
    assert len(records) == len(consumed) == 11
    assert meter.stats().skipped == len(attempts) - len(consumed)

    # The cut stream: estimated from the text that reached the caller, marked partial.
    [cut] = [r for r in records if r.estimated]
    assert (cut.outcome, cut.completion_tokens) == ("partial", count_text("Echo: one", "gpt-4o-mini").tokens)

    # Retried requests: one record for the attempt that answered, none for the failures before it.
    retried = [r for r in records if r.attempt > 0]
    assert sorted(r.attempt for r in retried) == [1, 1, 2]

    # Replays change nothing: the meter drops seen attempts, the stores drop seen record ids.
    for attempt in attempts:
        meter.attempt_finished(attempt)
    for backend in (memory_backend, sqlite_backend, redis_backend):
        backend.append_usage([r.to_state() for r in records])
    assert meter.flush(timeout=10)
    assert meter.stats().replays == len(attempts)
    assert memory.records == records
    expected_cost = sum((r.cost_usd for r in records if r.cost_usd is not None), Decimal(0))
    for backend in (memory_backend, sqlite_backend, redis_backend):
        [total] = backend.query_usage(0)
        assert (total.requests, total.prompt_tokens, total.completion_tokens, total.cost_usd) == (
            len(records),
            sum(r.prompt_tokens for r in records),
            sum(r.completion_tokens for r in records),
            expected_cost,
        ), backend
    meter.close()
    client.close()
    for backend in (memory_backend, sqlite_backend, redis_backend):
        backend.close()


def test_concurrent_traffic_is_metered_once(scripted_url, scripted_upstream) -> None:
    import concurrent.futures

    sink = MemorySink()
    with Meter(sink, prices=PRICES) as meter:
        client = gateway.OpenAI(api_key="sk-test", base_url=scripted_url, observer=meter)

        def call(i: int) -> None:
            client.chat.completions.create(
                model="flaky1:gpt-4o-mini", messages=[{"role": "user", "content": f"n {i}"}]
            )

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(call, range(64)))
        meter.flush()
    served = served_totals(scripted_upstream.log)
    assert len(sink.records) == 64
    assert sum(r.prompt_tokens for r in sink.records) == served["prompt"]
    assert sum(r.completion_tokens for r in sink.records) == served["completion"]
    client.close()


def test_fallback_between_deployments_is_metered_once_per_attempt(
    scripted_url, scripted_upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.policy import load_policy

    monkeypatch.setenv("METER_TEST_KEY", "sk-meter-fallback")
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""
version: 1
providers:
  alpha: {{kind: openai, base_url: "{scripted_url}", api_key: "${{METER_TEST_KEY}}"}}
  beta: {{kind: openai, base_url: "{scripted_url}", api_key: "${{METER_TEST_KEY}}"}}
models:
  broken: {{provider: alpha, model: "flaky99:gpt-4o-mini", price: {{input: 0.1, output: 0.1}}, context_window: 8000}}
  backup: {{provider: beta, model: "gpt-4o-mini", price: {{input: 2, output: 4}}, context_window: 8000}}
routes:
  chat: {{candidates: [broken, backup], minimize: cost, retry: {{max_retries: 1}}}}
state: {{backend: sqlite, path: "{tmp_path / "state.sqlite"}"}}
"""
    )
    policy = load_policy(path)
    sink = MemorySink()
    meter = Meter.from_policy(policy, sinks=[sink])
    with gateway.OpenAI(policy=policy, observer=meter) as client:
        for i in range(3):
            client.chat.completions.create(
                model="route:chat",
                messages=[{"role": "user", "content": f"fall back {i}"}],
                metadata={"team": "ops"},
            )
        stream = client.chat.completions.create(
            model="route:chat",
            messages=[{"role": "user", "content": "stream it"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        list(stream)
    meter.close()
    served = served_totals(scripted_upstream.log)
    assert len(scripted_upstream.log) == 4 * 3  # two tries on the broken deployment, one on the backup
    records = sink.records
    assert [(r.model, r.provider, r.route, r.attempt, r.team or "-") for r in records] == [
        ("backup", "beta", "chat", 2, "ops")
    ] * 3 + [("backup", "beta", "chat", 2, "-")]
    assert (sum(r.prompt_tokens for r in records), sum(r.completion_tokens for r in records)) == (
        served["prompt"],
        served["completion"],
    )
    assert all(
        r.cost_usd == (r.prompt_tokens * 2 + r.completion_tokens * 4) / Decimal(1_000_000) for r in records
    )
    backend = SQLiteBackend(str(tmp_path / "state.sqlite"))
    [total] = backend.query_usage(0, group_by=["route"])
    backend.close()
    assert (total.group, total.requests, total.prompt_tokens) == ((("route", "chat"),), 4, served["prompt"])
