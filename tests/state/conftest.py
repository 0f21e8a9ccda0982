"""Fixtures of the state tests: a real redis-server per session, backends, an injectable clock.

The Redis server is started from the ``redis-server`` binary on a free loopback port, without
persistence; a missing binary fails the tests (it does not skip them). Every test gets its own key
prefix, so tests never see each other's keys.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway.state.memory import MemoryBackend
from gateway.state.redis import RedisBackend
from gateway.state.sqlite import SQLiteBackend

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("worker.py")
BACKENDS = ["memory", "sqlite", "redis"]


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server child process that tests may pause, kill and restart on the same port."""

    def __init__(self, port: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: the Redis state tests need the binary on PATH")
        self.binary = binary
        self.port = port or free_port()
        self.extra_args = extra_args  # e.g. ("--appendonly", "yes", "--dir", path): data survives a kill
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            *self.extra_args,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"redis-server did not start on port {self.port}")
                time.sleep(0.02)
            finally:
                client.close()

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a stopped process would ignore SIGKILL's cleanup
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def key_prefix(redis_server: RedisServer) -> Iterator[str]:
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_server.url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend(
    backend_kind: str, clock: FakeClock, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """Each backend of the suite; memory and SQLite read TTLs from ``clock``, Redis from its own time."""
    if backend_kind == "memory":
        made: Any = MemoryBackend(clock=clock)
    elif backend_kind == "sqlite":
        made = SQLiteBackend(str(tmp_path / "state.sqlite"), clock=clock)
    else:
        server = request.getfixturevalue("redis_server")
        made = RedisBackend(server.url, key_prefix=request.getfixturevalue("key_prefix"))
    yield made
    made.close()


@pytest.fixture
def fresh_redis() -> Iterator[RedisServer]:
    """A redis-server of the test's own, which the test may pause, kill and restart."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """``shared_url(kind)``: a URL several processes can open (a SQLite file, the session's Redis)."""

    def make(kind: str) -> str:
        if kind == "sqlite":
            return f"sqlite://{tmp_path / 'shared.sqlite'}"
        return str(request.getfixturevalue("redis_server").url)

    return make


class Workers:
    """Runs ``worker.py`` in fresh interpreters; each prints its result as one JSON line."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, config: dict[str, Any]) -> subprocess.Popen[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        process = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(REPO),
        )
        self.started.append(process)
        return process

    @staticmethod
    def finish(process: subprocess.Popen[str], timeout: float = 60) -> dict[str, Any]:
        out, err = process.communicate(timeout=timeout)
        if process.returncode != 0:
            pytest.fail(f"worker failed ({process.returncode}):\n{err}")
        return dict(json.loads(out.strip().splitlines()[-1]))

    def run_all(self, configs: list[dict[str, Any]], timeout: float = 60) -> list[dict[str, Any]]:
        """Start every worker, wait until all are ready (imports done), then give them one start time."""
        processes = [self.start(config) for config in configs]
        for process in processes:
            assert process.stdout is not None
            if not process.stdout.readline():
                self.finish(process, timeout)  # it died: report its stderr
        start_at = time.time() + 0.2
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(json.dumps({"start_at": start_at}) + "\n")
            process.stdin.flush()
        return [self.finish(process, timeout) for process in processes]


@pytest.fixture
def workers() -> Iterator[Workers]:
    """Worker processes of a test; any still running at teardown are killed."""
    made = Workers()
    yield made
    for process in made.started:
        if process.poll() is None:
            process.kill()
            process.communicate()
