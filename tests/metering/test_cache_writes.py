"""Cache writes are priced apart: Anthropic's 5-minute writes at 1.25x input, 1-hour ones at 2x.

The upstream's usage is read where each protocol puts it (Anthropic's ``cache_creation_input_tokens``
and ``cache_creation`` split, OpenAI's ``prompt_tokens_details.cache_write_tokens``), carried in
``prompt_tokens_details``, priced by the meter and charged to budgets at the same figure.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import gateway
from gateway.budgets import Subject
from gateway.catalog import ModelSpec, load_catalog
from gateway.core.types import CompletionUsage, PromptTokensDetails
from gateway.metering import MemorySink, Meter, ModelPrice, PriceTable
from gateway.metering.pricing import usage_cost
from gateway.policy import load_policy
from providers import openai as openai_protocol
from providers._anthropic_response import usage_of
from providers.base import Target
from tests.servers.http import JSONReply, LoopbackServer, Recorded

SONNET = ModelPrice(
    input=Decimal(3), output=Decimal(15), cached_input=Decimal("0.30"), cache_write=Decimal("3.75"),
    cache_write_1h=Decimal(6),
)  # fmt: skip


def message(usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "msg_cache",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [{"type": "text", "text": "cached"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def test_anthropic_usage_keeps_cache_writes_and_their_ttl() -> None:
    usage = usage_of(
        {
            "input_tokens": 100,
            "cache_read_input_tokens": 50,
            "cache_creation_input_tokens": 10_300,
            "cache_creation": {"ephemeral_5m_input_tokens": 10_000, "ephemeral_1h_input_tokens": 300},
            "output_tokens": 20,
        },
        "usage",
    )
    assert usage == CompletionUsage(
        prompt_tokens=10_450,
        completion_tokens=20,
        total_tokens=10_470,
        prompt_tokens_details=PromptTokensDetails(
            cached_tokens=50, cache_write_tokens=10_300, cache_write_1h_tokens=300
        ),
    )
    # Without the split (older API versions) every write is a 5-minute one.
    plain = usage_of({"input_tokens": 1, "cache_creation_input_tokens": 7, "output_tokens": 1}, "usage")
    assert plain.prompt_tokens_details == PromptTokensDetails(cached_tokens=0, cache_write_tokens=7)


def test_a_10000_token_5_minute_write_is_priced_exactly() -> None:
    usage = usage_of({"input_tokens": 0, "cache_creation_input_tokens": 10_000, "output_tokens": 0}, "usage")
    # 10,000 x $3.75 / 1M: 1.25 x the $3 input price, not $0.03 as plain input
    assert usage_cost(SONNET, usage) == Decimal("0.0375")
    one_hour = usage_of(
        {
            "input_tokens": 0,
            "cache_creation_input_tokens": 10_000,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 10_000},
            "output_tokens": 0,
        },
        "usage",
    )
    assert usage_cost(SONNET, one_hour) == Decimal("0.06")


def test_a_claude_model_without_cache_write_prices_gets_anthropics_multiples() -> None:
    spec = ModelSpec(
        "mine/claude", "mine", "claude-sonnet-4-5", input_price=Decimal(4), output_price=Decimal(20)
    )
    price = ModelPrice.from_spec(spec)
    assert price == ModelPrice(Decimal(4), Decimal(20), None, None, Decimal("5.00"), Decimal(8))
    other = ModelPrice.from_spec(ModelSpec("x/y", "x", "y", input_price=Decimal(1), output_price=Decimal(2)))
    assert other == ModelPrice(Decimal(1), Decimal(2))  # writes billed at input
    assert other.cost(1000, 0, cache_write_tokens=1000) == Decimal("0.001")


def test_the_bundled_catalog_prices_anthropic_cache_writes() -> None:
    raw = json.loads((Path(gateway.__file__).parent / "catalog" / "models.json").read_text())
    for name, entry in raw["models"].items():
        if entry["provider"] == "anthropic":
            price = entry["price"]
            assert Decimal(price["cache_write"]) == Decimal(price["input"]) * Decimal("1.25"), name
            assert Decimal(price["cache_write_1h"]) == Decimal(price["input"]) * 2, name
    spec = load_catalog().models["anthropic/claude-sonnet-4-5"]
    assert (spec.cache_write_price, spec.cache_write_1h_price) == (Decimal("3.75"), Decimal(6))


def test_genai_prices_is_the_price_source_when_installed() -> None:
    genai_prices = pytest.importorskip("genai_prices")
    catalog = load_catalog()
    assert catalog.price_source == f"genai-prices {genai_prices.__version__}"
    # a model the bundled catalog lacks is priced by the database, by provider and name
    table = PriceTable.from_catalog()
    assert table.lookup("claude-3-7-sonnet-20250219", provider="anthropic") is not None
    assert table.lookup("claude-3-7-sonnet-20250219", provider="local") is None  # never guessed


def test_openai_cache_write_tokens_are_read() -> None:
    target = Target(provider="openai", kind="openai", base_url="http://127.0.0.1:9/v1", model="gpt-5")
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-5",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": {
            "prompt_tokens": 2000,
            "completion_tokens": 1,
            "total_tokens": 2001,
            "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 1500},
        },
    }
    reply = openai_protocol.parse_response(200, {}, json.dumps(body).encode(), target)
    assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cache_write_tokens == 1500
    relayed = openai_protocol.usage_from_response(
        {"usage": {"input_tokens": 9, "output_tokens": 1, "input_tokens_details": {"cache_write_tokens": 4}}}
    )
    assert relayed is not None and relayed.prompt_tokens_details is not None
    assert relayed.prompt_tokens_details.cache_write_tokens == 4


def test_client_meters_and_charges_an_anthropic_cache_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHE_TEST_KEY", "cache-test-credential")
    usage = {
        "input_tokens": 100,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 10_000,
        "cache_creation": {"ephemeral_5m_input_tokens": 10_000, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 200,
    }

    def handle(rec: Recorded) -> JSONReply:
        return JSONReply(body=message(usage))

    with LoopbackServer(handle) as upstream:
        path = tmp_path / "policy.yaml"
        path.write_text(
            f"""
version: 1
providers:
  claude: {{kind: anthropic, base_url: "{upstream.base_url}", api_key: "${{CACHE_TEST_KEY}}"}}
models:
  sonnet: {{provider: claude, model: claude-sonnet-4-5-20250929, price: {{input: 3, output: 15}}}}
budgets: {{all: {{window: day, limit_usd: 10}}}}
"""
        )
        sink = MemorySink()
        meter = Meter(sink, prices=PriceTable.from_policy(load_policy(path)))
        with gateway.OpenAI(policy=path, observer=meter) as client:
            reply = client.chat.completions.create(
                model="sonnet", messages=[{"role": "user", "content": "x"}]
            )
            spent = client._switchyard.runtime.guard.budgets.status(Subject())[0].used
        meter.close()
    assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cache_write_tokens == 10_000
    # 100 x $3 + 10,000 x $3.75 + 200 x $15 per 1M
    expected = Decimal("0.0408")
    [record] = sink.records
    assert (record.cache_write_tokens, record.cost_usd) == (10_000, expected)
    assert spent == expected
    info = gateway.info(reply)  # the reply's own figure agrees with the record and the budget
    assert info is not None and Decimal(str(info.cost_usd)) == expected


def _openai_reply(usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-cache",
        "object": "chat.completion",
        "created": 1,
        "model": "house-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
        "usage": usage,
    }


# (provider kind, the upstream's reply, its cache writes (5-minute, 1-hour), expected USD)
WRITES = {
    "anthropic": (
        message(
            {
                "input_tokens": 100,
                "cache_read_input_tokens": 0,
                "cache_creation_input_tokens": 12_000,
                "cache_creation": {"ephemeral_5m_input_tokens": 10_000, "ephemeral_1h_input_tokens": 2_000},
                "output_tokens": 200,
            }
        ),
        (12_000, 2_000),
        # 100 x $3 + 10,000 x $5 + 2,000 x $9 + 200 x $15 per 1M: the policy's write prices
        Decimal("0.0713"),
    ),
    "openai": (
        _openai_reply(
            {
                "prompt_tokens": 2_000,
                "completion_tokens": 100,
                "total_tokens": 2_100,
                "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 1_500},
            }
        ),
        (1_500, 0),
        # 500 x $3 + 1,500 x $5 + 100 x $15 per 1M (without the policy's price: 1,500 x $3)
        Decimal("0.0105"),
    ),
}


@pytest.mark.parametrize("kind", sorted(WRITES))
def test_policy_cache_write_prices_price_the_record_the_reply_and_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.setenv("CACHE_TEST_KEY", "cache-test-credential")
    body, writes, expected = WRITES[kind]

    def handle(rec: Recorded) -> JSONReply:
        return JSONReply(body=body)

    with LoopbackServer(handle) as upstream:
        base_url = upstream.base_url if kind == "anthropic" else f"{upstream.base_url}/v1"
        path = tmp_path / "policy.yaml"
        path.write_text(
            f"""
version: 1
providers:
  up: {{kind: {kind}, base_url: "{base_url}", api_key: "${{CACHE_TEST_KEY}}"}}
models:
  house:
    provider: up
    model: house-model
    price: {{input: 3, output: 15, cache_write: 5, cache_write_1h: 9}}
state: {{backend: sqlite, path: "{tmp_path / "state.sqlite"}"}}
budgets: {{all: {{window: day, limit_usd: 10}}}}
"""
        )
        sink = MemorySink()
        meter = Meter(sink, prices=PriceTable.from_policy(load_policy(path)))
        with gateway.OpenAI(policy=path, observer=meter) as client:
            reply = client.chat.completions.create(model="house", messages=[{"role": "user", "content": "x"}])
            spent = client._switchyard.runtime.guard.budgets.status(Subject())[0].used
        meter.close()
    [record] = sink.records
    assert (record.cache_write_tokens, record.cache_write_1h_tokens) == writes
    assert record.cost_usd == expected
    assert spent == expected
    info = gateway.info(reply)
    assert info is not None and Decimal(str(info.cost_usd)) == expected
