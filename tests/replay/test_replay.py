"""``switchyard replay``: traffic recorded through a real client is re-planned from the usage store.

Two loopback upstreams serve a ``strong`` model (quality 0.9 by its eval score, $100 per 1M tokens)
and a ``light`` one (0.7, $1 in / $2 out). Route ``support`` pays $2.5 per quality point per 1k
requests, so a short prompt goes to ``strong`` and a long one (where strong's price outweighs twenty
quality points) to ``light``; route ``digest`` minimizes cost. A client with a SQLite state records
the traffic; ``switchyard replay`` then reads the same file.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

import gateway
from gateway.cli import main
from gateway.evals.results import ModelSummary
from gateway.evals.store import EvalStore
from gateway.state.sqlite import SQLiteBackend
from tests.servers.http import LoopbackServer
from tests.servers.openai_server import handle

SHORT = "where is my order " * 3
LONG = "please summarise this long complaint about a parcel that never came " * 60


@pytest.fixture
def upstreams() -> Iterator[tuple[LoopbackServer, LoopbackServer]]:
    with LoopbackServer(handle) as strong, LoopbackServer(handle) as light:
        yield strong, light


def write_policy(tmp_path: Path, name: str, urls: tuple[str, str], support: str) -> Path:
    path = tmp_path / name
    path.write_text(
        f"""
version: 1
providers:
  up-strong: {{kind: openai, base_url: "{urls[0]}", api_key: "sk-replay"}}
  up-light: {{kind: openai, base_url: "{urls[1]}", api_key: "sk-replay"}}
models:
  strong: {{provider: up-strong, model: strong-1, price: {{input: 100, output: 100}}, quality: 0.5, ttft_s: 0.2, tokens_per_s: 100}}
  light: {{provider: up-light, model: light-1, price: {{input: 1, output: 2}}, quality: 0.5, ttft_s: 0.2, tokens_per_s: 100}}
routes:
  support: {{candidates: [strong, light], eval_set: support, {support}}}
  digest: {{candidates: [strong, light], minimize: cost}}
state: {{backend: sqlite, path: "{tmp_path / "state.sqlite"}"}}
"""
    )
    return path


def store_evals(tmp_path: Path) -> None:
    backend = SQLiteBackend(str(tmp_path / "state.sqlite"))
    store = EvalStore(backend)
    for model, mean in (("strong", 0.9), ("light", 0.7)):
        store.put_summary(
            ModelSummary("support", "v1", model, 50, 50, mean, mean - 0.05, mean + 0.05, None, Decimal(0), None, None, 0, time.time())
        )  # fmt: skip
    backend.close()


def record_traffic(policy: Path) -> list[tuple[str, str]]:
    """Forty-two requests through a real client; returns (route, served upstream model) per request."""
    served = []
    with gateway.OpenAI(policy=str(policy)) as client:
        for i in range(30):
            text = LONG if i % 3 == 0 else SHORT
            messages = [{"role": "user", "content": f"{i}: {text}"}]
            if i % 5 == 4:  # some stream: the usage records mark them (a time to first token)
                stream = client.chat.completions.create(
                    model="route:support", messages=messages, stream=True, metadata={"team": "care"}
                )
                models = {chunk.model for chunk in stream}
                served.append(("support", models.pop()))
            else:
                reply = client.chat.completions.create(model="route:support", messages=messages)
                served.append(("support", reply.model))
        for i in range(12):
            reply = client.chat.completions.create(
                model="route:digest", messages=[{"role": "user", "content": f"digest {i}: {SHORT}"}]
            )
            served.append(("digest", reply.model))
        client.chat.completions.create(model="light", messages=[{"role": "user", "content": "direct"}])
    return served


def replay_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    capsys.readouterr()
    assert main(["replay", *args, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_replay_with_the_same_policy_reproduces_the_observed_cost(
    upstreams: tuple[LoopbackServer, LoopbackServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    strong, light = upstreams
    policy = write_policy(tmp_path, "old.yaml", (strong.base_url, light.base_url), "utility: {quality_usd_per_1k: 2.5, latency_usd_per_1k: 0}")  # fmt: skip
    store_evals(tmp_path)
    served = record_traffic(policy)
    # The traffic really was split by prompt length: short prompts to strong, long ones to light.
    support = [model for route, model in served if route == "support"]
    assert support.count("strong-1") == 20 and support.count("light-1") == 10
    assert {model for route, model in served if route == "digest"} == {"light-1"}

    report = replay_json(capsys, "--policy", str(policy), "--since", "1d")

    assert report["requests"] == 42 and report["skipped"] == {"direct": 1}
    for route in ("support", "digest"):
        observed, replayed = report["routes"][route]["observed"], report["routes"][route]["replayed"]
        cost_observed, cost_replayed = Decimal(observed["cost_usd"]), Decimal(replayed["cost_usd"])
        assert cost_observed > 0
        assert abs(cost_replayed - cost_observed) <= Decimal("0.05") * cost_observed, (route, report)
        assert replayed["models"] == observed["models"]
    assert report["routes"]["support"]["observed"]["models"] == {"strong": 20, "light": 10}
    # quality from the eval store: 20 x 0.9 + 10 x 0.7 over 30
    assert report["routes"]["support"]["replayed"]["quality"] == pytest.approx(
        (20 * 0.9 + 10 * 0.7) / 30, abs=1e-4
    )


def test_replay_of_a_new_policy_beside_the_baseline(
    upstreams: tuple[LoopbackServer, LoopbackServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    strong, light = upstreams
    urls = (strong.base_url, light.base_url)
    old = write_policy(
        tmp_path, "old.yaml", urls, "utility: {quality_usd_per_1k: 2.5, latency_usd_per_1k: 0}"
    )
    new = write_policy(tmp_path, "new.yaml", urls, "minimize: cost, min_quality: 0.8")
    store_evals(tmp_path)
    record_traffic(old)
    backend = SQLiteBackend(str(tmp_path / "state.sqlite"))
    records = [r for r in backend.usage_records(0) if r.route == "support"]
    backend.close()
    # min_quality 0.8 leaves only strong (0.9): every support request at strong's $100 per 1M
    expected = sum(Decimal(r.prompt_tokens + r.completion_tokens) * 100 / 1_000_000 for r in records)

    report = replay_json(capsys, "--policy", str(new), "--baseline", str(old), "--since", "1d")

    support = report["routes"]["support"]
    assert support["replayed"] == {
        "served": 30,
        "models": {"strong": 30},
        "share": {"strong": 1.0},
        "cost_usd": str(expected),
        "cost_per_1k_usd": str(round(expected * 1000 / 30, 6)),
        "unpriced": 0,
        "quality": 0.9,
        "latency_s": support["replayed"]["latency_s"],
        "not_served": {},
    }
    assert support["baseline"]["models"] == {"strong": 20, "light": 10}
    assert support["baseline"]["cost_usd"] == support["observed"]["cost_usd"]

    capsys.readouterr()
    chart = tmp_path / "charts" / "replay.png"
    assert (
        main(["replay", "--policy", str(new), "--baseline", str(old), "--since", "1d", "--chart", str(chart)])
        == 0
    )
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert "## route `support`: 30 requests" in text
    assert "| `strong` | 66.7 % (20) | 100.0 % (30) | 66.7 % (20) |" in text
    assert "| quality (mean, 0..1) | 0.833 | 0.900 | 0.833 |" in text


def test_replay_says_when_nothing_was_logged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = write_policy(
        tmp_path, "p.yaml", ("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1"), "minimize: cost"
    )
    SQLiteBackend(str(tmp_path / "state.sqlite")).close()
    assert main(["replay", "--policy", str(policy)]) == 1
    assert "no routed requests logged" in capsys.readouterr().err
    memory = tmp_path / "memory.yaml"
    memory.write_text("version: 1\nroutes: {r: {candidates: [gpt-4o-mini]}}\n")
    assert main(["replay", "--policy", str(memory)]) == 2
    assert "the policy's state is memory" in capsys.readouterr().err


def test_replay_filters_routes_and_refuses_a_bad_period(
    upstreams: tuple[LoopbackServer, LoopbackServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    strong, light = upstreams
    policy = write_policy(tmp_path, "p.yaml", (strong.base_url, light.base_url), "minimize: cost")
    record_traffic(policy)
    report = replay_json(capsys, "--policy", str(policy), "--route", "route:digest")
    assert list(report["routes"]) == ["digest"] and report["requests"] == 12
    assert main(["replay", "--policy", str(policy), "--since", "last tuesday"]) == 2
    assert "cannot read the time 'last tuesday'" in capsys.readouterr().err
    assert main(["replay", "--policy", str(policy), "--store", f"sqlite:///{tmp_path / 'none.sqlite'}"]) == 2
    assert "no SQLite store at" in capsys.readouterr().err
