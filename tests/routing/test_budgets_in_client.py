"""A policy's budgets and rate limits, enforced by the client before any upstream call."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

import gateway
from tests.servers.http import LoopbackServer
from tests.servers.openai_server import handle

MESSAGES = [{"role": "user", "content": "spend some money please"}]


@pytest.fixture
def upstream() -> Iterator[LoopbackServer]:
    with LoopbackServer(handle) as server:
        yield server


def policy(tmp_path: Path, url: str, extra: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""
version: 1
providers:
  up: {{kind: openai, base_url: "{url}", api_key: "${{BUDGET_TEST_KEY}}"}}
models:
  pricey: {{provider: up, model: pricey-upstream, price: {{input: 1000, output: 1000}}, context_window: 8000, max_output: 100}}
  cheap: {{provider: up, model: cheap-upstream, price: {{input: 1, output: 1}}, context_window: 8000, max_output: 100}}
routes:
  chat: {{candidates: [pricey, cheap], weights: {{quality: 1, speed: 0, cost: 0}}}}
state: {{backend: sqlite, path: "{tmp_path / "state.sqlite"}"}}
{extra}
"""
    )
    return path


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDGET_TEST_KEY", "sk-budget")


def test_budget_refuses_before_any_upstream_call(upstream: LoopbackServer, tmp_path: Path) -> None:
    from gateway.budgets import Subject

    extra = "budgets: {team-a: {match: {team: a}, window: day, limit_usd: 0.05}}"
    with gateway.OpenAI(policy=policy(tmp_path, upstream.base_url, extra)) as client:
        # worst case: ~10 prompt + 20 output tokens at $1000/1M = $0.03 -> fits once
        first = client.chat.completions.create(
            model="route:chat", messages=MESSAGES, max_tokens=20, metadata={"team": "a"}
        )
        assert first.model == "pricey-upstream"
        with pytest.raises(gateway.BudgetExceededError) as info:
            client.chat.completions.create(
                model="route:chat", messages=MESSAGES, max_tokens=40, metadata={"team": "a"}
            )
        assert info.value.status_code == 429 and info.value.budget == "team-a"
        assert len(upstream.log) == 1
        # another team is not affected
        client.chat.completions.create(
            model="route:chat", messages=MESSAGES, max_tokens=20, metadata={"team": "b"}
        )
    with gateway.OpenAI(policy=policy(tmp_path, upstream.base_url, extra)) as client:
        used = client._switchyard.runtime.guard.budgets.status(Subject(team="a"))[0].used
    usage = upstream.log[0].served_tokens
    assert used == Decimal(usage["prompt"] + usage["completion"]) * 1000 / 1_000_000


def test_cheaper_candidate_when_the_budget_is_tight(upstream: LoopbackServer, tmp_path: Path) -> None:
    extra = "budgets: {all: {window: day, limit_usd: 0.01, on_exceed: cheaper}}"
    with gateway.OpenAI(policy=policy(tmp_path, upstream.base_url, extra)) as client:
        reply = client.chat.completions.create(model="route:chat", messages=MESSAGES, max_tokens=20)
    assert reply.model == "cheap-upstream"


def test_rate_limit_refuses_with_retry_after(upstream: LoopbackServer, tmp_path: Path) -> None:
    extra = "rate_limits: {slow: {rpm: 60, burst: 2}}"
    with gateway.OpenAI(policy=policy(tmp_path, upstream.base_url, extra)) as client:
        for _ in range(2):
            client.chat.completions.create(model="route:chat", messages=MESSAGES, max_tokens=5)
        with pytest.raises(gateway.RateLimitError) as info:
            client.chat.completions.create(model="route:chat", messages=MESSAGES, max_tokens=5)
    assert int(info.value.response.headers["retry-after"]) >= 1
    assert len(upstream.log) == 2


def test_streams_settle_their_budget(upstream: LoopbackServer, tmp_path: Path) -> None:
    from gateway.budgets import Subject

    extra = "budgets: {team-s: {match: {team: s}, window: day, limit_tokens: 10000}}"
    with gateway.OpenAI(policy=policy(tmp_path, upstream.base_url, extra)) as client:
        stream = client.chat.completions.create(
            model="route:chat",
            messages=MESSAGES,
            max_tokens=20,
            metadata={"team": "s"},
            stream=True,
            stream_options={"include_usage": True},
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        status = client._switchyard.runtime.guard.budgets.status(Subject(team="s"))[0]
    assert text.startswith("Echo:")
    usage = upstream.log[0].served_tokens
    assert (status.used, status.reserved) == (usage["prompt"] + usage["completion"], 0)


def test_an_unpriced_model_counts_as_the_dearest_price_not_zero(
    upstream: LoopbackServer, tmp_path: Path
) -> None:
    from gateway.budgets import Subject

    path = tmp_path / "unpriced.yaml"
    path.write_text(
        f"""
version: 1
providers:
  up: {{kind: openai, base_url: "{upstream.base_url}", api_key: "${{BUDGET_TEST_KEY}}"}}
models:
  mystery: {{provider: up, model: mystery-upstream, max_output: 100}}
  pricey: {{provider: up, model: pricey-upstream, price: {{input: 1000, output: 2000}}, max_output: 100}}
state: {{backend: memory}}
budgets: {{all: {{window: day, limit_usd: 1}}}}
"""
    )
    with gateway.OpenAI(policy=path) as client:
        guard = client._switchyard.runtime.guard
        ceiling_in, ceiling_out = guard.ceiling()
        assert ceiling_in >= 1000 and ceiling_out >= 2000
        client.chat.completions.create(model="mystery", messages=MESSAGES, max_tokens=20)
        stream = client.chat.completions.create(
            model="mystery", messages=MESSAGES, max_tokens=20, stream=True
        )
        for _ in stream:
            pass
        [status] = guard.budgets.status(Subject())
    served = [rec.served_tokens for rec in upstream.log]
    expected = sum(Decimal(s["prompt"]) * ceiling_in + Decimal(s["completion"]) * ceiling_out for s in served)
    assert status.used == expected / 1_000_000 > 0


def test_budget_refusal_names_its_figures_and_retry_after_only_when_waiting_helps(
    upstream: LoopbackServer, tmp_path: Path
) -> None:
    extra = "budgets: {all: {window: day, limit_usd: 0.05}}"
    with gateway.OpenAI(policy=policy(tmp_path, upstream.base_url, extra), max_retries=0) as client:
        client.chat.completions.create(model="pricey", messages=MESSAGES, max_tokens=20)
        with pytest.raises(gateway.BudgetExceededError) as later:
            client.chat.completions.create(model="pricey", messages=MESSAGES, max_tokens=35)
        with pytest.raises(gateway.BudgetExceededError) as never:
            client.chat.completions.create(model="pricey", messages=MESSAGES, max_tokens=100000)
    body = later.value.body
    assert isinstance(body, dict)
    assert {k: body[k] for k in ("budget", "unit", "window", "limit", "reserved")} == {
        "budget": "all",
        "unit": "usd",
        "window": "day",
        "limit": "0.05",
        "reserved": "0",
    }
    assert Decimal(body["spent"]) > 0 and Decimal(body["requested"]) > Decimal("0.05") - Decimal(
        body["spent"]
    )
    assert later.value.response.headers.get("retry-after") is not None
    assert never.value.response.headers.get("retry-after") is None
    assert "never fit" in never.value.message
