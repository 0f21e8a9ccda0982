"""Secrets never leak: canary keys are absent from logs, spans, metrics, records, stores and CLI output.

Traffic with two canary keys (one passed as ``api_key=``, one read from ``OPENAI_API_KEY``) goes
through clients observed by a meter (memory, SQLite and Redis sinks) and telemetry, including a
provider 401 whose body echoes the key. Then every surface is searched for any 8-character piece of
either canary.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import gateway
from gateway.cli import main
from gateway.metering import MemorySink, Meter, ObserverGroup, StateSink
from gateway.state.redis import RedisBackend
from gateway.state.sqlite import SQLiteBackend
from gateway.telemetry import Telemetry
from tests.metering.conftest import RedisProcess

CANARIES = (
    "sk-canary-7f3e9a1c5b2d4e6f8a0b1c2d3e4f5a6b",  # api_key=
    "sk-canary-env-0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d",  # OPENAI_API_KEY
    "sk-canary-pol-5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b",  # a policy's ${SWITCHYARD_CANARY_KEY}
)
POLICY = """
version: 1
providers:
  alpha: {{kind: openai, base_url: "{url}", api_key: "${{SWITCHYARD_CANARY_KEY}}"}}
  beta: {{kind: openai, base_url: "{url}", api_key: "${{SWITCHYARD_CANARY_KEY}}"}}
models:
  refused: {{provider: alpha, model: "echo401:gpt-4o-mini", price: {{input: 0.1, output: 0.1}}, context_window: 8000}}
  good: {{provider: beta, model: "gpt-4o-mini", price: {{input: 1, output: 1}}, context_window: 8000}}
routes:
  chat: {{candidates: [refused, good], minimize: cost, fallback: {{on: [auth, server_error]}}}}
state: {{backend: sqlite, path: "{state}"}}
telemetry: {{capture_content: true}}
"""


def pieces(secret: str, size: int = 8) -> set[str]:
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


def leaks(text: str) -> list[str]:
    """Every 8-character piece of a canary found in ``text``."""
    return sorted({p for canary in CANARIES for p in pieces(canary) if p in text})


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.name, self.format(record)))


@pytest.fixture
def debug_logs() -> Iterator[Capture]:
    capture = Capture()
    root = logging.getLogger()
    names = ("", "httpx", "httpcore", "gateway", "gateway.metering", "redis", "opentelemetry")
    levels = {name: logging.getLogger(name).level for name in names}
    root.addHandler(capture)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield capture
    root.removeHandler(capture)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture
def surfaces(
    debug_logs: Capture,
    scripted_url: str,
    tmp_path: Path,
    redis_server: RedisProcess,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    make_client: Callable[..., gateway.OpenAI],
    capsys: pytest.CaptureFixture[str],
) -> dict[str, Any]:
    """Run the traffic; return every surface's text by name, and the exceptions raised."""
    monkeypatch.setenv("OPENAI_API_KEY", CANARIES[1])
    monkeypatch.setenv("SWITCHYARD_CANARY_KEY", CANARIES[2])
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(POLICY.format(url=scripted_url, state=tmp_path / "state.sqlite.policy"))
    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    meter_provider = MeterProvider(metric_readers=[reader])
    sqlite_path = tmp_path / "state.sqlite"
    memory = MemorySink()
    meter = Meter(
        [
            memory,
            StateSink(SQLiteBackend(str(sqlite_path)), owns_backend=True),
            StateSink(RedisBackend(redis_server.url, key_prefix=redis_prefix), owns_backend=True),
        ]
    )
    telemetry = Telemetry(
        tracer_provider=tracer_provider, meter_provider=meter_provider, capture_content=True
    )
    observer = ObserverGroup(meter, telemetry)
    clients = [
        make_client(api_key=CANARIES[0], base_url=scripted_url, observer=observer),
        make_client(base_url=scripted_url, observer=observer),
    ]
    errors: list[BaseException] = []
    for client in clients:
        client.chat.completions.create(
            model="flaky1:gpt-4o-mini",
            messages=[{"role": "user", "content": "hi"}],
            metadata={"team": "t1"},
            user="u1",
        )
        list(
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "stream"}], stream=True
            )
        )
        for model in ("echo401:gpt-4o-mini", "error:401"):
            try:
                client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
            except gateway.APIError as exc:
                errors.append(exc)
    assert len(errors) == 4
    from gateway.policy import load_policy

    policy = load_policy(policy_path)
    routed = make_client(policy=policy, observer=observer)
    clients.append(routed)
    replies = [
        routed.chat.completions.create(model="route:chat", messages=[{"role": "user", "content": "route"}]),
        routed.chat.completions.create(model="good", messages=[{"role": "user", "content": "direct"}]),
    ]
    assert gateway.info(replies[0]).model == "good"
    routed.close()
    assert main(["policy", "check", str(policy_path)]) in (0, 1)
    assert main(["policy", "explain", str(policy_path), "--route", "chat", "--prompt", "hello"]) == 0
    meter.close()
    telemetry.close()
    raw = redis.Redis.from_url(redis_server.url)
    redis_dump = []
    for key in raw.scan_iter(match="*", count=1000):
        kind = raw.type(key).decode()
        value: Any = {
            "string": lambda k: raw.get(k),
            "hash": lambda k: raw.hgetall(k),
            "zset": lambda k: raw.zrange(k, 0, -1, withscores=True),
            "list": lambda k: raw.lrange(k, 0, -1),
            "set": lambda k: raw.smembers(k),
        }.get(kind, lambda k: raw.dump(k))(key)
        redis_dump.append(f"{key!r} {value!r}")
    raw.close()
    sqlite_bytes = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("state.sqlite"))
    for args in (
        ["--store", f"sqlite://{sqlite_path}"],
        ["--store", redis_server.url, "--key-prefix", redis_prefix, "--format", "json"],
    ):
        assert main(["usage", *args, "--by", "team"]) == 0
    return {
        "logs": "\n".join(line for _, line in debug_logs.lines),
        "spans": "\n".join(s.to_json() for s in spans.get_finished_spans()),
        "metrics": reader.get_metrics_data().to_json(),  # type: ignore[union-attr]
        "clients": "\n".join(f"{c!r} {c!s} {c.chat!r} {c.with_options(max_retries=1)!r}" for c in clients),
        "records": "\n".join(f"{r!r} {r.to_json()}" for r in memory.records),
        "policy": f"{policy!r} {policy!s} {policy.providers!r} {policy.state!r}",
        "_plan": "\n".join(f"{gateway.info(r)!r} {gateway.info(r).model_dump_json()}" for r in replies),
        "sqlite": sqlite_bytes.decode("latin-1"),
        "redis": "\n".join(redis_dump),
        "cli": capsys.readouterr().out,
        "meter": f"{meter!r} {meter.stats()!r} {telemetry!r}",
        "_errors": errors,
        "_records": memory.records,
    }


def test_no_canary_piece_in_logs_spans_metrics_records_stores_or_cli(surfaces: dict[str, Any]) -> None:
    assert surfaces["_records"], "the traffic produced usage records"
    assert "echo401" in surfaces["spans"] and "key_" in surfaces["records"] and "TOTAL" in surfaces["cli"]
    # httpx's own request log was captured (the gateway's transports sit under httpx, not httpcore)
    assert "HTTP Request: POST" in surfaces["logs"]
    assert "t1" in surfaces["sqlite"] and "t1" in surfaces["redis"]
    found = {name: leaks(text) for name, text in surfaces.items() if not name.startswith("_")}
    assert found == {name: [] for name in found}
    assert "sk-canary-pol"[:8] in CANARIES[2]  # the policy's canary is among those searched


def test_exceptions_do_not_echo_keys(surfaces: dict[str, Any]) -> None:
    texts = [
        f"{e!s} {e!r} {getattr(e, 'message', '')} {getattr(e, 'body', '')!r}" for e in surfaces["_errors"]
    ]
    assert leaks("\n".join(texts)) == []


def test_the_plan_and_gateway_info_do_not_echo_keys(surfaces: dict[str, Any]) -> None:
    assert leaks(surfaces["_plan"]) == []
