"""Fixtures of the replay tests: a real redis-server started on a free port (the state tests' helper)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.state.conftest import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()
