"""The state backends keep what replay needs of each usage record, and hand the records back."""

from __future__ import annotations

import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.metering.records import UsageRecord as MeteredRecord
from gateway.state.base import StateBackend, UsageRecord
from gateway.state.memory import MemoryBackend
from gateway.state.redis import RedisBackend
from gateway.state.sqlite import SQLiteBackend
from tests.state.conftest import RedisServer

T0 = 1_800_000_000.0


def _open(kind: str, tmp_path: Path, redis_server: RedisServer) -> StateBackend:
    if kind == "memory":
        return MemoryBackend()
    if kind == "sqlite":
        return SQLiteBackend(str(tmp_path / "state.sqlite"))
    return RedisBackend(redis_server.url, key_prefix=f"t-{uuid.uuid4().hex[:8]}:")


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
def test_usage_records_round_trip(kind: str, tmp_path: Path, redis_server: RedisServer) -> None:
    metered = MeteredRecord(
        "req-1",
        1,
        T0 + 5,
        "openai/gpt-4o-mini",
        "openai",
        prompt_tokens=12,
        completion_tokens=30,
        cost_usd=Decimal("0.0000198"),
        team="search",
        tags=(("feature", "faq"),),
        route="support",
        latency_s=0.42,
        ttft_s=0.1,
        outcome="partial",
    )
    old_style = UsageRecord("req-0:0", T0, "", "-", "", "openai", "openai/gpt-4o", 1, 2, Decimal("0.5"))
    backend = _open(kind, tmp_path, redis_server)
    try:
        backend.append_usage([metered.to_state(), old_style, metered.to_state()])
        records = sorted(backend.usage_records(T0), key=lambda r: r.ts)
        assert backend.usage_records(T0 + 1, until=T0 + 5) == []
    finally:
        backend.close()
    assert records == [
        old_style,
        UsageRecord(
            "req-1:1",
            T0 + 5,
            "search",
            "-",
            "support",
            "openai",
            "openai/gpt-4o-mini",
            12,
            30,
            Decimal("0.0000198"),
            attempt=1,
            latency_s=0.42,
            ttft_s=0.1,
            outcome="partial",
            tags=(("feature", "faq"),),
        ),
    ]
