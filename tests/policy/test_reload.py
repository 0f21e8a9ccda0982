"""Hot reload: throttled stats, atomic swap on a valid edit, the last good policy kept on a broken one."""

from __future__ import annotations

import logging
import os
from decimal import Decimal

import pytest

from gateway.core.errors import PolicyError
from gateway.policy import PolicyWatcher

GOOD = "version: 1\nroutes:\n  r: {candidates: [gpt-4o]}\n"
BETTER = "version: 1\nroutes:\n  r: {candidates: [gpt-4o-mini, gpt-4o]}\n"
BROKEN = "version: 1\nroutes:\n  r: {candidates: [gpt4o]}\n"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _write(path, text: str, bump: int) -> None:
    path.write_text(text)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + bump * 1_000_000_000))


@pytest.fixture
def setup(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text(GOOD)
    clock = Clock()
    return path, clock, PolicyWatcher(path, clock=clock, interval_s=1.0, env={})


def test_reload_is_throttled_then_swaps(setup) -> None:
    path, clock, watcher = setup
    first = watcher.current()
    _write(path, BETTER, 1)
    clock.now += 0.5
    assert watcher.current() is first  # not looked at yet
    clock.now += 0.5
    assert watcher.current().routes["r"].candidates == ["gpt-4o-mini", "gpt-4o"]
    assert (watcher.reloads, watcher.last_error) == (1, None)


def test_unchanged_file_is_not_reloaded(setup) -> None:
    path, clock, watcher = setup
    first = watcher.current()
    clock.now += 10
    assert watcher.current() is first and watcher.reloads == 0


def test_broken_edit_keeps_the_last_good_policy_and_warns_once(setup, caplog) -> None:
    path, clock, watcher = setup
    good = watcher.current()
    _write(path, BROKEN, 1)
    with caplog.at_level(logging.WARNING, logger="gateway.policy"):
        for _ in range(3):
            clock.now += 2
            assert watcher.current() is good
    assert len(caplog.records) == 1 and "keeping the last good policy" in caplog.records[0].getMessage()
    assert isinstance(watcher.last_error, PolicyError)
    assert watcher.last_error.errors[0].code == "policy.unknown-model"
    _write(path, BETTER, 2)
    clock.now += 2
    assert watcher.current().routes["r"].candidates == ["gpt-4o-mini", "gpt-4o"]
    assert watcher.last_error is None


def test_a_deleted_file_keeps_the_policy(setup) -> None:
    path, clock, watcher = setup
    good = watcher.current()
    path.unlink()
    clock.now += 2
    assert watcher.current() is good


def test_an_invalid_file_at_start_raises(tmp_path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(BROKEN)
    with pytest.raises(PolicyError):
        PolicyWatcher(path, env={})


def _client_policy(url: str, *, price: str, limit_usd: str, rpm: int | None) -> str:
    limits = f"rate_limits: {{all: {{rpm: {rpm}}}}}" if rpm is not None else ""
    return f"""
version: 1
providers:
  up: {{kind: openai, base_url: "{url}", api_key: sk-reload}}
models:
  mini: {{provider: up, model: gpt-4o-mini, price: {{input: {price}, output: {price}}}, max_output: 50}}
budgets: {{all: {{window: day, limit_usd: {limit_usd}}}}}
{limits}
"""


def test_a_running_client_follows_reloaded_budgets_rate_limits_and_prices(tmp_path) -> None:
    import gateway
    from tests.servers.http import LoopbackServer
    from tests.servers.openai_server import handle

    messages = [{"role": "user", "content": "reload me"}]
    path, clock = tmp_path / "policy.yaml", Clock()
    with LoopbackServer(handle) as upstream:
        path.write_text(_client_policy(upstream.base_url, price="1", limit_usd="100", rpm=None))
        watcher = PolicyWatcher(path, clock=clock, interval_s=1.0, env={})
        with gateway.OpenAI(policy=watcher.current) as client:
            runtime = client._switchyard.runtime

            def spent() -> object:
                runtime.meter.flush()
                return sum(total.cost_usd for total in runtime.backend.query_usage(0))

            def served(i: int) -> int:
                usage = upstream.log[i].served_tokens
                return int(usage["prompt"] + usage["completion"])

            client.chat.completions.create(model="mini", messages=messages, max_tokens=5)
            assert spent() == Decimal(served(0)) / 1_000_000

            # x1000 price and 2 requests a minute: the next requests obey, without a restart
            _write(path, _client_policy(upstream.base_url, price="1000", limit_usd="100", rpm=2), 1)
            clock.now += 2
            for _ in range(2):
                client.chat.completions.create(model="mini", messages=messages, max_tokens=5)
            with pytest.raises(gateway.RateLimitError, match="rate limit 'all.rpm' exceeded"):
                client.chat.completions.create(model="mini", messages=messages, max_tokens=5)
            assert len(upstream.log) == 3
            assert (
                spent() == Decimal(served(0)) / 1_000_000 + Decimal(served(1) + served(2)) * 1000 / 1_000_000
            )
            price = runtime.meter.prices.lookup("mini")
            assert price is not None and (price.input, price.output) == (Decimal(1000), Decimal(1000))

            # a $0.000001 budget refuses the next request before any upstream call
            _write(path, _client_policy(upstream.base_url, price="1000", limit_usd="0.000001", rpm=None), 2)
            clock.now += 2
            with pytest.raises(gateway.BudgetExceededError) as refused:
                client.chat.completions.create(model="mini", messages=messages, max_tokens=5)
            assert refused.value.budget == "all" and "0.000001" in str(refused.value)
            assert len(upstream.log) == 3
            assert watcher.reloads == 2
            # every usage record names the policy version it was planned and priced under
            runtime.meter.flush()
            revisions = [r.policy_revision for r in runtime.backend.usage_records(0)]
            assert len(revisions) == 3 and revisions[0] != revisions[1] == revisions[2]
            assert all(r is not None and len(r) == 12 for r in revisions)
