"""Four processes on one budget, streaming without usage (complete, closed early, cut), on SQLite
and on Redis: the budget holds within the bound ``budgets.py`` documents, and every stream is charged.

Each request reserves its worst case (the estimated prompt plus ``max_tokens``); what is charged is
the upstream's usage, or the estimate of a stream that never reported it. The bound: the settled
spend exceeds the limit by at most the overruns of the requests in flight when it filled, and no
stream here can overrun (its estimate and its reported usage stay under ``max_tokens``), so the
spend stays at or under the limit, and above zero for every kind of stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.budgets import Budget, Budgets, Subject
from gateway.state import BackendConfig, open_backend
from tests.metering.conftest import RedisProcess
from tests.servers.http import LoopbackServer

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4
LIMIT = Decimal("0.5")
WORST_CASE = Decimal("0.07")  # ~15 prompt tokens + max_tokens 50, at $1000 per 1M tokens


def _policy(tmp_path: Path, url: str, state: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""
version: 1
providers:
  up: {{kind: openai, base_url: "{url}", api_key: "${{SHARED_BUDGET_KEY}}"}}
models:
  mini: {{provider: up, model: gpt-4o-mini, price: {{input: 1000, output: 1000}}, max_output: 200}}
  cutmini: {{provider: up, model: "cut4:gpt-4o-mini", price: {{input: 1000, output: 1000}}, max_output: 200}}
state: {state}
budgets: {{all: {{window: day, limit_usd: {LIMIT}}}}}
"""
    )
    return path


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_four_processes_hold_one_budget_with_streams_without_usage(
    kind: str,
    tmp_path: Path,
    scripted_url: str,
    scripted_upstream: LoopbackServer,
    redis_server: RedisProcess,
    redis_prefix: str,
) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'state.sqlite'}"
        state = f'{{backend: sqlite, path: "{tmp_path / "state.sqlite"}"}}'
    else:
        url = redis_server.url
        state = f'{{backend: redis, url: "{url}", key_prefix: "{redis_prefix}"}}'
    policy = _policy(tmp_path, scripted_url, state)
    env = {**os.environ, "SHARED_BUDGET_KEY": "sk-shared", "PYTHONPATH": str(ROOT)}
    worker = str(Path(__file__).with_name("stream_worker.py"))
    processes = [
        subprocess.Popen(
            [sys.executable, worker, json.dumps({"policy": str(policy), "seed": seed, "stop_after": 3})],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in range(PROCESSES)
    ]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=110)
        assert process.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    granted = sum(r["granted"] for r in results)
    assert granted > 0 and all(r["refused"] >= 3 for r in results)
    backend = open_backend(BackendConfig(url, key_prefix=redis_prefix if kind == "redis" else ""))
    try:
        [status] = Budgets(backend, [Budget("all", LIMIT, "usd", "day", "global")]).status(Subject())
    finally:
        backend.close()
    assert status.reserved == 0
    assert status.used <= LIMIT
    # The budget filled: the last refusal left room for less than one worst case per process.
    assert status.used > LIMIT - PROCESSES * WORST_CASE
    # Every granted stream was charged: at least its prompt (the smallest here is ~15 tokens).
    served = [rec for rec in scripted_upstream.log if rec.path.endswith("/chat/completions")]
    assert len(served) == granted
    assert status.used >= Decimal(granted * 10) * 1000 / 1_000_000
