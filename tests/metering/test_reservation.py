"""Without ``max_tokens``, a request reserves its route's observed p99 output for the model, capped
by the model's maximum, instead of the maximum itself.

Real SQLite usage stores (filled with the records earlier answers would have left) and a loopback
upstream, through ``gateway.OpenAI`` built from a policy; the budget's 429 body says what was
reserved (``requested``).
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest

import gateway
from gateway.metering.observed import ObservedOutputs
from gateway.state.base import UsageRecord
from gateway.state.sqlite import SQLiteBackend
from tests.servers import openai_server
from tests.servers.http import LoopbackServer

MESSAGES = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def upstream():
    with LoopbackServer(openai_server.handle) as server:
        yield server


def _policy(tmp_path: Path, upstream: LoopbackServer, *, limit: int, max_output: int) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""
version: 1
providers:
  up: {{kind: openai, base_url: "{upstream.base_url}/v1", api_key: "sk-reservation"}}
models:
  mini: {{provider: up, model: gpt-4o-mini, price: {{input: 1, output: 1}}, max_output: {max_output}}}
routes:
  chat: {{candidates: [mini]}}
state: {{backend: sqlite, path: "{tmp_path / "state.sqlite"}"}}
budgets: {{all: {{window: day, limit_tokens: {limit}}}}}
"""
    )
    return path


def _history(tmp_path: Path, outputs: range, *, outcome: str = "ok", route: str = "chat") -> None:
    backend = SQLiteBackend(str(tmp_path / "state.sqlite"))
    now = time.time()
    backend.append_usage(
        [
            UsageRecord(
                f"{route}-{outcome}-{n}",
                now - 60,
                "",
                "-",
                route,
                "up",
                "mini",
                10,
                n,
                Decimal(0),
                outcome=outcome,
            )
            for n in outputs
        ]
    )
    backend.close()


def _requested(tmp_path: Path, upstream: LoopbackServer, *, limit: int = 1, max_output: int = 4096) -> int:
    """What one request without max_tokens reserves (the budget refuses it and says)."""
    with gateway.OpenAI(
        policy=str(_policy(tmp_path, upstream, limit=limit, max_output=max_output))
    ) as client:
        with pytest.raises(gateway.BudgetExceededError) as caught:
            client.chat.completions.create(model="route:chat", messages=MESSAGES)
    return int(caught.value.body["requested"])  # type: ignore[index]


def test_no_history_reserves_the_models_maximum_output(tmp_path: Path, upstream: LoopbackServer) -> None:
    _history(tmp_path, range(1, 20))  # 19 answers: too few for a percentile
    with_max = _requested(tmp_path, upstream, max_output=4096)
    assert _requested(tmp_path, upstream, max_output=1000) == with_max - 3096


def test_the_observed_p99_sizes_the_reservation(tmp_path: Path, upstream: LoopbackServer) -> None:
    without = _requested(tmp_path, upstream)
    _history(tmp_path, range(1, 101))  # outputs 1..100: the p99 (nearest rank) is 99
    _history(tmp_path, range(5000, 5010), outcome="partial")  # cut answers do not count
    _history(tmp_path, range(3000, 3100), route="other")  # nor another route's
    with_history = _requested(tmp_path, upstream)
    assert without - with_history == 4096 - 99
    assert _requested(tmp_path, upstream, max_output=60) == with_history - (99 - 60)  # capped by the max


def test_a_budget_that_refused_the_worst_case_admits_the_observed_one(
    tmp_path: Path, upstream: LoopbackServer
) -> None:
    policy = _policy(tmp_path, upstream, limit=500, max_output=4096)
    with gateway.OpenAI(policy=str(policy)) as client:
        with pytest.raises(gateway.BudgetExceededError):
            client.chat.completions.create(model="route:chat", messages=MESSAGES)
    _history(tmp_path, range(1, 101))
    with gateway.OpenAI(policy=str(policy)) as client:
        reply = client.chat.completions.create(model="route:chat", messages=MESSAGES)
    assert reply.choices[0].message.content


def test_observed_outputs_validates_and_refreshes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="percentile must be in"):
        ObservedOutputs(None, percentile=0)
    now = [time.time()]
    backend = SQLiteBackend(str(tmp_path / "state.sqlite"))
    outputs = ObservedOutputs(backend, min_samples=2, refresh_s=60, clock=lambda: now[0])
    assert outputs.bound("chat", "mini") is None
    _history(tmp_path, range(1, 11))
    assert outputs.bound("chat", "mini") is None  # read less than refresh_s ago
    now[0] += 61
    assert outputs.bound("chat", "mini") == 10
    backend.close()
