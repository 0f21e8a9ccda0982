"""Fixtures of the metering tests: a real redis-server, a scripted OpenAI loopback, an OTel SDK.

The Redis server is started from the ``redis-server`` binary on a free loopback port without
persistence; a missing binary fails the tests, it does not skip them.

The scripted upstream wraps the shared OpenAI loopback (``tests/servers/openai_server.py``); a
model name prefix picks a behaviour, the rest of the name is the model that answers:

- ``flaky2:<model>`` fails with a 500 (``retry-after: 0``) the first 2 times a given conversation is
  sent, then answers;
- ``limited1:<model>`` answers 429 (``retry-after: 0``) once per conversation, then answers;
- ``cached:<model>`` reports half the prompt as cached (``prompt_tokens_details.cached_tokens``);
- ``cut3:<model>`` streams 3 SSE events then drops the connection;
- ``echo401:<model>`` answers 401 with a message that echoes the bearer key, as some hosts do.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from gateway.core.attempts import AttemptRecord
from tests.servers import openai_server
from tests.servers.http import JSONReply, LoopbackServer, Recorded, Reply, SSEReply

_PREFIX = re.compile(r"^(flaky|limited|cut)(\d+):|^(cached|echo401):")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """A ``redis-server`` child process on a free port."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: the metering tests need the binary on PATH")
        self.port = free_port()
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
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
        client.close()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    server = RedisProcess()
    yield server
    server.stop()


@pytest.fixture
def redis_prefix(redis_server: RedisProcess) -> Iterator[str]:
    """A key prefix of the test's own; its keys are deleted at teardown."""
    prefix = f"metering-test:{uuid.uuid4().hex[:10]}:"
    yield prefix
    client = redis.Redis.from_url(redis_server.url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


class Scripted:
    """The scripted upstream's handler: counts conversations to fail the first N sends."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()

    def __call__(self, rec: Recorded) -> Reply:
        body = rec.json() or {}
        model = str(body.get("model", ""))
        match = _PREFIX.match(model)
        if match is None:
            return openai_server.handle(rec)
        kind, count = match[1] or match[3], int(match[2] or 0)
        inner = {**body, "model": model[match.end() :]}
        if kind == "echo401":
            key = rec.headers.get("authorization", "").removeprefix("Bearer ")
            message = (
                f"Incorrect API key provided: {key}. You can find your API key at https://example.invalid."
            )
            error = {
                "error": {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}
            }
            return JSONReply(status=401, body=error)
        if kind in ("flaky", "limited"):
            conversation = json.dumps(inner["messages"], sort_keys=True)
            with self.lock:
                sent = self.seen.get(conversation, 0)
                self.seen[conversation] = sent + 1
            if sent < count:
                if kind == "flaky":
                    failed = openai_server.error_reply(500)
                    failed.headers["retry-after"] = "0"  # retry at once: keeps the tests fast
                    return failed
                return openai_server.error_reply(429, retry_after="0")
        reply = openai_server.chat(inner)
        if kind == "cached" and isinstance(reply, JSONReply):
            reply = _with_cache(reply)
        if kind == "cut" and isinstance(reply, SSEReply):
            reply.cut_after = count
        return reply


def _with_cache(reply: JSONReply) -> JSONReply:
    body: dict[str, Any] = reply.body
    cached = body["usage"]["prompt_tokens"] // 2
    body["usage"]["prompt_tokens_details"]["cached_tokens"] = cached
    return JSONReply(body=body, headers=reply.headers, usage={**reply.usage, "cached": cached})


@pytest.fixture(scope="session")
def scripted_upstream() -> Iterator[LoopbackServer]:
    with LoopbackServer(Scripted()) as server:
        yield server


@pytest.fixture
def scripted_url(scripted_upstream: LoopbackServer) -> str:
    scripted_upstream.reset_log()
    scripted_upstream.handler.seen.clear()  # type: ignore[attr-defined]
    return scripted_upstream.base_url + "/v1"


class Recorder:
    """An observer that keeps every attempt record (to replay them)."""

    def __init__(self) -> None:
        self.records: list[AttemptRecord] = []

    def attempt_finished(self, record: AttemptRecord) -> None:
        self.records.append(record)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def served_totals(log: list[Recorded]) -> dict[str, int]:
    """What the upstream served: the sum of each reply's usage, per kind of token."""
    totals = {"prompt": 0, "cached": 0, "completion": 0}
    for rec in log:
        for kind in totals:
            totals[kind] += rec.served_tokens.get(kind, 0)
    return totals


def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def make_client() -> Iterator[Callable[..., Any]]:
    """``make_client(**kwargs)``: a ``gateway.OpenAI`` closed at teardown."""
    import gateway

    made: list[gateway.OpenAI] = []

    def make(**kwargs: Any) -> gateway.OpenAI:
        client = gateway.OpenAI(**kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
