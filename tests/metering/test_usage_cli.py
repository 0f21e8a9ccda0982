"""``switchyard usage``: totals from SQLite and Redis stores, as a table, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.metering import UsageRecord
from gateway.state.redis import RedisBackend
from gateway.state.sqlite import SQLiteBackend
from tests.metering.conftest import RedisProcess

DAY1 = datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp()
DAY2 = datetime(2026, 11, 21, 23, 59, tzinfo=UTC).timestamp()
RECORDS = [
    UsageRecord(
        "a",
        0,
        DAY1,
        "openai/gpt-4o-mini",
        "openai",
        100,
        0,
        20,
        0,
        Decimal("0.001"),
        team="search",
        route="chat",
    ),
    UsageRecord(
        "b", 0, DAY1 + 60, "openai/gpt-4o", "openai", 50, 0, 10, 0, Decimal("0.002"), team="ads", route="chat"
    ),
    UsageRecord(
        "b", 1, DAY2, "openai/gpt-4o", "openai", 50, 0, 10, 0, Decimal("0.002"), team="ads", route="summarize"
    ),
    UsageRecord("c", 0, DAY2, "mystery", "groq", 7, 0, 3, 0, None, team="search", route="chat"),
]


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """CLI arguments naming a store that holds ``RECORDS``."""
    if request.param == "sqlite":
        backend = SQLiteBackend(str(tmp_path / "usage.sqlite"))
        args = ["--store", f"sqlite://{tmp_path / 'usage.sqlite'}"]
    else:
        server: RedisProcess = request.getfixturevalue("redis_server")
        prefix = request.getfixturevalue("redis_prefix")
        backend = RedisBackend(server.url, key_prefix=prefix)
        args = ["--store", server.url, "--key-prefix", prefix]
    backend.append_usage([r.to_state() for r in RECORDS])
    backend.close()
    return args


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["usage", *args, "--since", "2026-11-01", "--until", "2026-12-01"]) == 0
    return capsys.readouterr().out


def test_by_team_as_json(store: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    rows = json.loads(run([*store, "--by", "team", "--format", "json"], capsys))
    assert rows == [
        {
            "team": "ads",
            "requests": 2,
            "prompt_tokens": 100,
            "completion_tokens": 20,
            "total_tokens": 120,
            "cost_usd": "0.004",
        },
        {
            "team": "search",
            "requests": 2,
            "prompt_tokens": 107,
            "completion_tokens": 23,
            "total_tokens": 130,
            "cost_usd": "0.001",
        },
    ]


def test_by_day_as_csv(store: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    rows = list(csv.reader(io.StringIO(run([*store, "--by", "day", "--format", "csv"], capsys))))
    assert rows == [
        ["day", "requests", "prompt_tokens", "completion_tokens", "total_tokens", "cost_usd"],
        ["2026-11-20", "2", "150", "30", "180", "0.003"],
        ["2026-11-21", "2", "57", "13", "70", "0.002"],
    ]


def test_by_model_and_route_as_table(store: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    table = run([*store, "--by", "model"], capsys).splitlines()
    assert table[0].split() == [
        "model",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cost_usd",
    ]
    assert [line.split()[0] for line in table[2:-2]] == ["mystery", "openai/gpt-4o", "openai/gpt-4o-mini"]
    assert table[-1].split() == ["TOTAL", "4", "207", "43", "250", "0.005"]
    routes = run([*store, "--by", "route"], capsys).splitlines()
    assert [line.split()[:2] for line in routes[2:-2]] == [["chat", "3"], ["summarize", "1"]]


def test_since_narrows_the_period(store: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", *store, "--since", "2026-11-21", "--until", "2026-12-01", "--format", "json"]) == 0
    assert sum(r["requests"] for r in json.loads(capsys.readouterr().out)) == 2


def test_missing_file_and_unreachable_redis_are_clear_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["usage", "--store", f"sqlite://{tmp_path / 'nope.sqlite'}"]) == 2
    assert "no SQLite store at" in capsys.readouterr().err
    assert not (tmp_path / "nope.sqlite").exists()
    assert main(["usage", "--store", "redis://:hunter2secret@127.0.0.1:1/0"]) == 2
    err = capsys.readouterr().err
    assert "cannot read redis://" in err and "hunter2secret" not in err
    assert main(["usage", "--store", "sqlite:///x", "--since", "yesterday-ish"]) == 2
    assert "cannot read the time" in capsys.readouterr().err
