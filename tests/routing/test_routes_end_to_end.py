"""``model="route:NAME"`` through the client: the router's order, fallback, reasons, hot reload."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import gateway
from tests.servers.http import LoopbackServer
from tests.servers.openai_server import error_reply, handle

MESSAGES = [{"role": "user", "content": "route me"}]


def write_policy(path: Path, primary: str, secondary: str, *, cheap_first: bool = True) -> Path:
    a_price, b_price = ("0.1", "5") if cheap_first else ("5", "0.1")
    path.write_text(
        f"""
version: 1
providers:
  alpha: {{kind: openai, base_url: "{primary}", api_key: "${{ROUTE_TEST_KEY}}"}}
  beta: {{kind: openai, base_url: "{secondary}", api_key: "${{ROUTE_TEST_KEY}}"}}
models:
  fast-a: {{provider: alpha, model: upstream-a, price: {{input: {a_price}, output: {a_price}}}, context_window: 8000}}
  fast-b: {{provider: beta, model: upstream-b, price: {{input: {b_price}, output: {b_price}}}, context_window: 8000}}
routes:
  chat:
    candidates: [fast-a, fast-b]
    minimize: cost
    retry: {{max_retries: 0}}
"""
    )
    return path


@pytest.fixture
def servers() -> Iterator[tuple[LoopbackServer, LoopbackServer]]:
    failing = {"on": False}

    def primary(rec):  # type: ignore[no-untyped-def]
        return error_reply(503) if failing["on"] else handle(rec)

    with LoopbackServer(primary) as a, LoopbackServer(handle) as b:
        a.failing = failing  # type: ignore[attr-defined]
        yield a, b


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTE_TEST_KEY", "sk-route-test")


def test_route_picks_the_cheapest_and_says_why(servers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = servers
    policy = write_policy(tmp_path / "p.yaml", a.base_url, b.base_url)
    with gateway.OpenAI(policy=policy) as client:
        reply = client.chat.completions.create(model="route:chat", messages=MESSAGES)
    assert reply.model == "upstream-a"
    assert gateway.info(reply) is not None
    assert (gateway.info(reply).route, gateway.info(reply).model, gateway.info(reply).provider) == (
        "chat",
        "fast-a",
        "alpha",
    )
    assert gateway.info(reply).reason and "minimize cost" in gateway.info(reply).reason
    assert (
        a.log[-1].json()["model"] == "upstream-a"
        and a.log[-1].headers["authorization"] == "Bearer sk-route-test"
    )
    assert b.log == []


def test_route_falls_back_when_the_primary_fails(servers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = servers
    a.failing["on"] = True
    policy = write_policy(tmp_path / "p.yaml", a.base_url, b.base_url)
    with gateway.OpenAI(policy=policy) as client:
        reply = client.chat.completions.create(model="route:chat", messages=MESSAGES)
    assert reply.model == "upstream-b"
    assert [(x.model, x.outcome, x.status_code) for x in gateway.info(reply).attempts] == [
        ("fast-a", "InternalServerError", 503),
        ("fast-b", "ok", 200),
    ]
    assert len(a.log) == 1 and len(b.log) == 1


def test_unknown_route_is_a_clear_error(servers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = servers
    with gateway.OpenAI(policy=write_policy(tmp_path / "p.yaml", a.base_url, b.base_url)) as client:
        with pytest.raises(gateway.NotFoundError, match="route 'chta' is not defined"):
            client.chat.completions.create(model="route:chta", messages=MESSAGES)


def test_policy_edit_is_picked_up_and_a_broken_edit_keeps_the_last_good(servers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    a, b = servers
    path = write_policy(tmp_path / "p.yaml", a.base_url, b.base_url)
    with gateway.OpenAI(policy=path) as client:
        assert client.chat.completions.create(model="route:chat", messages=MESSAGES).model == "upstream-a"
        write_policy(path, a.base_url, b.base_url, cheap_first=False)
        future = time.time() + 5
        os.utime(path, (future, future))
        deadline = time.monotonic() + 5
        model = ""
        while time.monotonic() < deadline and model != "upstream-b":
            model = client.chat.completions.create(model="route:chat", messages=MESSAGES).model
            time.sleep(0.05)
        assert model == "upstream-b"
        path.write_text("version: 1\nroutes: {chat: {candidates: [nope]}}\n")
        os.utime(path, (future + 5, future + 5))
        time.sleep(1.1)
        assert client.chat.completions.create(model="route:chat", messages=MESSAGES).model == "upstream-b"
