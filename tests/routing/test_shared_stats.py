"""Live estimates and in-flight counts shared through the state backend (SQLite file, real Redis).

Two client runtimes on one state play two processes: each has its own ``LiveStats`` and
``InFlight``, and a fresh one routes on the picture the other built once both have synced
(``LiveStats.sync()`` is the round the sharing thread runs every second; the tests call it so that
nothing depends on timing).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import gateway
from gateway.core.attempts import AttemptRecord, Candidate
from gateway.core.types import ChatRequest, CompletionUsage
from gateway.state.live import LiveBoard
from gateway.state.memory import MemoryBackend
from gateway.state.sqlite import SQLiteBackend
from gateway.stats import LiveStats
from providers.base import Target
from tests.servers.http import LoopbackServer, Recorded, Reply
from tests.servers.openai_server import handle
from tests.state.conftest import RedisServer

MESSAGES = [{"role": "user", "content": "which deployment is quicker?"}]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


class Gate:
    """An upstream handler that sleeps ``delay_s``, or holds requests until ``open`` is set."""

    def __init__(self, delay_s: float = 0.0, hold: bool = False) -> None:
        self.delay_s, self.hold = delay_s, hold
        self.open = threading.Event()
        self.waiting = 0
        self._lock = threading.Lock()

    def __call__(self, rec: Recorded) -> Reply:
        if self.hold:
            with self._lock:
                self.waiting += 1
            self.open.wait(10)
        time.sleep(self.delay_s)
        return handle(rec)


def write_policy(tmp_path: Path, state: str, slow_url: str, fast_url: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""
version: 1
providers:
  slow-host: {{kind: openai, base_url: "{slow_url}", api_key: sk-live}}
  fast-host: {{kind: openai, base_url: "{fast_url}", api_key: sk-live}}
models:
  primary: {{provider: slow-host, model: primary-1, price: {{input: 1, output: 1}}, ttft_s: 0.05, tokens_per_s: 1000}}
  backup: {{provider: fast-host, model: backup-1, price: {{input: 1, output: 1}}, ttft_s: 0.05, tokens_per_s: 1000}}
routes:
  fast: {{candidates: [primary, backup], minimize: latency, retry: {{max_retries: 0}}}}
  busy: {{candidates: [primary, backup], balance: least_busy, retry: {{max_retries: 0}}}}
state: {state}
"""
    )
    return path


def state_section(kind: str, tmp_path: Path, redis_server: RedisServer | None) -> str:
    if kind == "sqlite" or redis_server is None:
        return f'{{backend: sqlite, path: "{tmp_path / "state.sqlite"}"}}'
    return f'{{backend: redis, url: "{redis_server.url}", key_prefix: "live-{uuid.uuid4().hex[:8]}:"}}'


def head(client: Any, route: str) -> str:
    """The first candidate the client's own planner would try now."""
    request = ChatRequest(model=f"route:{route}", messages=MESSAGES)
    return str(client._switchyard.core.planner.plan(f"route:{route}", request).candidates[0].name)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_fresh_runtime_routes_on_the_slowness_another_one_saw(kind, tmp_path, redis_server) -> None:  # type: ignore[no-untyped-def]
    with LoopbackServer(Gate(delay_s=0.3)) as slow, LoopbackServer(handle) as quick:
        policy = write_policy(
            tmp_path, state_section(kind, tmp_path, redis_server), slow.base_url, quick.base_url
        )
        with gateway.OpenAI(policy=str(policy)) as a, gateway.OpenAI(policy=str(policy)) as b:
            served = [
                a.chat.completions.create(model="route:fast", messages=MESSAGES).model for _ in range(3)
            ]
            assert served == ["primary-1", "backup-1", "backup-1"]  # a saw the primary's 0.3 s
            assert head(b, "fast") == "primary"  # b knows nothing yet: equal priors, declared order
            a._switchyard.runtime.stats.sync()
            b._switchyard.runtime.stats.sync()
            assert head(b, "fast") == "backup"
            shared = b._switchyard.runtime.stats.snapshot().models["primary"]
            assert shared.samples == 1 and shared.ttft_s is not None and shared.ttft_s > 0.25


CHILD = """
import sys
import gateway

with gateway.OpenAI(policy=sys.argv[1]) as client:
    served = [client.chat.completions.create(model="route:fast", messages=[{"role": "user", "content": "hi"}]).model
              for _ in range(3)]
    client._switchyard.runtime.stats.sync()
print(" ".join(served))
"""


def test_a_fresh_process_routes_on_what_another_process_saw(tmp_path: Path) -> None:
    with LoopbackServer(Gate(delay_s=0.3)) as slow, LoopbackServer(handle) as quick:
        policy = write_policy(
            tmp_path, state_section("sqlite", tmp_path, None), slow.base_url, quick.base_url
        )  # type: ignore[arg-type]
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(policy)], capture_output=True, text=True, timeout=120, cwd=REPO
        )
        assert child.returncode == 0, child.stderr[-2000:]
        assert child.stdout.split() == ["primary-1", "backup-1", "backup-1"]
        with gateway.OpenAI(policy=str(policy)) as fresh:
            assert head(fresh, "fast") == "primary"
            fresh._switchyard.runtime.stats.sync()  # the child's entry outlives it for the board's TTL
            assert head(fresh, "fast") == "backup"
            assert fresh.chat.completions.create(model="route:fast", messages=MESSAGES).model == "backup-1"


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_in_flight_counts_add_up_across_runtimes(kind, tmp_path, redis_server) -> None:  # type: ignore[no-untyped-def]
    gate = Gate(hold=True)
    with LoopbackServer(gate) as one, LoopbackServer(gate) as two:
        policy = write_policy(
            tmp_path, state_section(kind, tmp_path, redis_server), one.base_url, two.base_url
        )
        with gateway.OpenAI(policy=str(policy)) as a, gateway.OpenAI(policy=str(policy)) as b:
            calls = [
                threading.Thread(
                    target=a.chat.completions.create, kwargs={"model": "route:busy", "messages": MESSAGES}
                )
                for _ in range(3)
            ]
            for call in calls:
                call.start()
                deadline = time.monotonic() + 10
                while gate.waiting < calls.index(call) + 1 and time.monotonic() < deadline:
                    time.sleep(0.005)  # one at a time, so a's own counts spread them 2/1
            mine = a._switchyard.runtime.observer.counts()
            assert mine == {"primary": 2, "backup": 1}
            a._switchyard.runtime.stats.sync()
            b._switchyard.runtime.stats.sync()
            seen = b._switchyard.runtime.stats.snapshot().models
            assert {name: seen[name].in_flight for name in mine} == mine
            assert head(b, "busy") == "backup"  # the less busy one, by a's count
            gate.open.set()
            for call in calls:
                call.join(10)
            a._switchyard.runtime.stats.sync()
            b._switchyard.runtime.stats.sync()
            seen = b._switchyard.runtime.stats.snapshot().models
            assert {name: seen[name].in_flight for name in mine} == {"primary": 0, "backup": 0}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def attempt(model: str, ttft_s: float, outcome: str = "ok") -> AttemptRecord:
    return AttemptRecord(
        request_id=uuid.uuid4().hex,
        attempt=0,
        candidate=Candidate(Target("p", "openai", "", model), model),
        route="r",
        started=0.0,
        duration_s=ttft_s,
        ttft_s=None,
        outcome=outcome,
        status_code=None,
        usage=CompletionUsage(prompt_tokens=5, completion_tokens=1, total_tokens=6),
    )


def test_merge_weights_each_mean_by_its_decayed_weight(tmp_path: Path) -> None:
    backend = SQLiteBackend(str(tmp_path / "state.sqlite"))
    wall, mono = Clock(1_800_000_000.0), Clock(0.0)
    a = LiveStats(clock=mono, wall=wall, board=LiveBoard(backend, process_id="a"))
    b = LiveStats(clock=mono, wall=wall, board=LiveBoard(backend, process_id="b"))
    for _ in range(4):
        a.attempt_finished(attempt("m", 1.0))
        b.attempt_finished(attempt("m", 0.2))
    b.attempt_finished(attempt("m", 0.2, outcome="InternalServerError"))  # a censored failure
    a.sync()
    b.sync()
    mine = b.export()["m"]
    merged = b.snapshot().models["m"]
    # a's 4 observations at 1.0 beside b's own: b's mean and weight as it exports them
    assert merged.ttft_s == pytest.approx((4 * 1.0 + mine[0] * mine[1]) / (4 + mine[1]))
    assert merged.weight == pytest.approx(4 + mine[1])
    assert merged.failure_rate == pytest.approx((0 * 4 + mine[4] * mine[5]) / (4 + mine[5]))
    assert merged.samples == 9
    # one half-life later, a's entry (not republished) counts half as much
    wall.now += b.half_life_s
    later = b.snapshot().models["m"]
    assert later.ttft_s == pytest.approx((2 * 1.0 + mine[0] * mine[1]) / (2 + mine[1]))
    backend.close()


def test_writes_are_bounded_and_dead_publishers_expire() -> None:
    backend = MemoryBackend()
    wall = Clock(1_800_000_000.0)
    a = LiveStats(wall=wall, board=LiveBoard(backend, process_id="a", ttl_s=30), share_interval_s=1.0)
    b = LiveStats(wall=wall, board=LiveBoard(backend, process_id="b", ttl_s=30))
    for _ in range(100):
        a.maybe_sync()  # a plan per request, at one instant: one round only
    assert a.publishes == 1
    wall.now += 0.5
    assert not a.maybe_sync() and a.publishes == 1
    wall.now += 0.5
    assert a.maybe_sync() and a.publishes == 2
    assert b.board is not None
    assert b.board.read(wall.now) == [(wall.now, {})]
    wall.now += 31  # a stopped publishing: its entry is past the TTL
    b.sync()
    assert b.board.read(wall.now) == [] and backend.get_json("live:processes") == ["b"]


def test_a_clients_board_has_a_connection_of_its_own(tmp_path: Path) -> None:
    from gateway.policy import parse_policy

    assert LiveBoard.for_state(parse_policy("version: 1").state) is None  # memory: nothing to share
    state = parse_policy(f'version: 1\nstate: {{backend: sqlite, path: "{tmp_path / "s.sqlite"}"}}').state
    board = LiveBoard.for_state(state)
    assert board is not None and not (tmp_path / "s.sqlite").exists()  # opened on first use only
    board.publish({}, now=1.0)
    assert (tmp_path / "s.sqlite").exists()
    board.close()
    with pytest.raises(RuntimeError, match="closed"):
        board.read(now=2.0)


def test_a_dropped_client_lets_its_sharing_thread_end(tmp_path: Path) -> None:
    import gc

    stats = LiveStats(board=LiveBoard(MemoryBackend()), share_interval_s=0.01)
    stats.snapshot()  # starts the thread
    thread = stats._thread
    assert thread is not None and thread.is_alive()
    del stats
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()
