"""Four processes on one budget, on SQLite and on Redis, with every kind of request: hedged (the
loser finishes unread and is charged), hedged streams (the loser is cancelled and charged its
prompt), an unpriced model (reserved and charged at the ceiling), streams with and without usage,
closed early and cut. The budget holds: every reservation is an upper bound of what its request is
charged (a hedged request reserves its two dearest candidates), so the settled spend never passes
the limit (``budgets.py``), and it fills up to less than one request's worst case per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.budgets import Budget, Budgets, Subject
from gateway.state import BackendConfig, open_backend
from tests.metering.conftest import RedisProcess
from tests.metering.ledger_server import LedgerServer

ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4
LIMIT = Decimal("1.5")


@pytest.fixture
def upstream() -> Iterator[LedgerServer]:
    with LedgerServer() as server:
        yield server


def _policy(tmp_path: Path, url: str, state: str) -> Path:
    path = tmp_path / "policy.yaml"
    price = "price: {input: 1000, output: 1000}, max_output: 200"
    path.write_text(
        f"""
version: 1
providers:
  up: {{kind: openai, base_url: "{url}", api_key: "sk-kinds"}}
models:
  slowa: {{provider: up, model: slow-600, {price}}}
  holda: {{provider: up, model: hold, {price}}}
  fastb: {{provider: up, model: ok, {price}}}
  mini: {{provider: up, model: ok, {price}}}
  cutc: {{provider: up, model: cut-3, {price}}}
  free: {{provider: up, model: ok}}
routes:
  hedged: {{candidates: [slowa, fastb], hedge: {{after_ms: 50}}}}
  hedged_stream: {{candidates: [holda, fastb], hedge: {{after_ms: 50}}}}
state: {state}
budgets: {{all: {{window: day, limit_usd: {LIMIT}}}}}
"""
    )
    return path


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_four_processes_hold_one_budget_with_every_kind_of_request(
    kind: str, tmp_path: Path, upstream: LedgerServer, redis_server: RedisProcess, redis_prefix: str
) -> None:
    if kind == "sqlite":
        url, prefix = f"sqlite:///{tmp_path / 'state.sqlite'}", ""
        state = f'{{backend: sqlite, path: "{tmp_path / "state.sqlite"}"}}'
    else:
        url, prefix = redis_server.url, redis_prefix
        state = f'{{backend: redis, url: "{url}", key_prefix: "{prefix}"}}'
    policy = _policy(tmp_path, upstream.base_url, state)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SWITCHYARD_USAGE_SPOOL": str(tmp_path / "spool")}
    worker = str(Path(__file__).with_name("budget_worker.py"))
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
        out, err = process.communicate(timeout=170)
        assert process.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    backend = open_backend(BackendConfig(url, key_prefix=prefix))
    try:
        [status] = Budgets(backend, [Budget("all", LIMIT, "usd", "day", "global")]).status(Subject())
    finally:
        backend.close()
    granted = sum(r["granted"] for r in results)
    billed = sum(e.prompt + e.completion for e in upstream.ledger.entries)
    print(f"\n{kind}: {granted} granted, {len(upstream.ledger.entries)} upstream calls, spend ${status.used}")
    assert granted >= 7 and all(r["refused"] >= 3 for r in results)  # every kind ran; the budget filled
    assert status.reserved == 0
    assert status.used <= LIMIT  # the bound: no request is charged more than it reserved
    assert status.used > LIMIT / 2
    assert billed > 0
