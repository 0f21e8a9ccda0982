"""The on-disk usage spool: bounded, drained by whoever shares it, never drained twice.

Real files in ``tmp_path``, real SQLite and Redis backends; the Redis server is the test's own,
stopped to make the sink fail.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.metering import StateSink, UsageRecord
from gateway.metering.spool import DiskSpool
from gateway.state.redis import RedisBackend
from gateway.state.sqlite import SQLiteBackend
from tests.state.conftest import RedisServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def _records(n: int, request: str = "req") -> list[UsageRecord]:
    return [
        UsageRecord(
            f"{request}-{i}",
            0,
            1_800_000_000.0 + i,
            "gpt-4o-mini",
            "openai",
            prompt_tokens=10,
            completion_tokens=i,
        )
        for i in range(n)
    ]


def test_a_full_spool_refuses_counts_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    one = len(_records(1)[0].to_json()) + 1
    spool = DiskSpool(tmp_path, max_bytes=3 * one)
    assert spool.put(_records(2)) == 2
    with caplog.at_level(logging.ERROR, logger="gateway.metering"):
        assert spool.put(_records(2, "more")) == 0  # would pass the bound: refused whole
    assert spool.dropped == 2 and spool.pending() == 2
    assert "usage spool" in caplog.text and "2 usage records dropped" in caplog.text


def test_records_another_process_left_behind_are_written_by_the_next_sink(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    program = (
        "import sys, json; from gateway.metering.spool import DiskSpool; from gateway.metering import UsageRecord;"
        "DiskSpool(sys.argv[1]).put([UsageRecord.from_dict(json.loads(line)) for line in sys.stdin])"
    )
    lines = "".join(r.to_json() + "\n" for r in _records(5))
    subprocess.run(
        [sys.executable, "-c", program, str(spool_dir)], input=lines, text=True, check=True, cwd=ROOT
    )
    backend = SQLiteBackend(str(tmp_path / "state.sqlite"))
    sink = StateSink(backend, spool=DiskSpool(spool_dir))
    sink.tick()  # an idle writer drains it
    [total] = backend.query_usage(0)
    assert (total.requests, total.completion_tokens) == (5, 0 + 1 + 2 + 3 + 4)
    assert not list(spool_dir.iterdir())
    backend.close()


def test_a_failed_drain_puts_the_file_back_and_a_dead_drainers_claim_is_taken_back(
    tmp_path: Path, own_redis: RedisServer
) -> None:
    spool = DiskSpool(tmp_path)
    spool.put(_records(3))
    backend = RedisBackend(own_redis.url, key_prefix="spool-test:", timeout_s=0.3, retry_interval_s=0.0)
    own_redis.stop()
    sink = StateSink(backend, spool=spool, retry_interval_s=0.0)
    sink.write(_records(2, "late"))  # unreachable: spooled with the rest, no error
    sink.write(_records(1, "later"))  # its drain fails first: the file is put back, then this batch joins it
    assert spool.pending() == 6 and [p.suffix for p in tmp_path.iterdir()] == [".jsonl"]
    # A drainer that died holding a claim: its file comes back at the next spool's first drain.
    [path] = tmp_path.iterdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    path.rename(path.with_name(f"{path.stem}.{dead.stdout.strip()}.draining"))
    own_redis.start()
    again = StateSink(RedisBackend(own_redis.url, key_prefix="spool-test:"), spool=DiskSpool(tmp_path))
    again.write(_records(1, "fresh"))
    [total] = again.backend.query_usage(0)
    assert total.requests == 7 and not list(tmp_path.iterdir())
    again.backend.close()
    backend.close()


def test_spooled_records_round_trip_every_field(tmp_path: Path) -> None:
    record = UsageRecord(
        "r", 2, 1.5, "m", "p", prompt_tokens=3, cached_tokens=1, completion_tokens=4, reasoning_tokens=2,
        user="u", key_id="key_x", team="t", tags=(("a", "b"),), route="chat", latency_s=0.5, ttft_s=0.1,
        outcome="partial", status_code=200, estimated=True, cache_write_tokens=1, cache_write_1h_tokens=1,
    )  # fmt: skip
    spool = DiskSpool(tmp_path)
    spool.put([record])
    got: list[UsageRecord] = []
    spool.drain(got.extend)
    assert got == [record]
