"""Shared fixtures: loopback servers for each protocol, and a guard against real network calls."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from tests.servers import openai_server
from tests.servers.http import LoopbackServer

_real_connect = socket.socket.connect
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _guarded_connect(self: socket.socket, address: object) -> None:
    host = address[0] if isinstance(address, tuple) else None
    if host is not None and host not in _LOOPBACK and self.family in (socket.AF_INET, socket.AF_INET6):
        raise RuntimeError(f"tests must not reach the network (tried {host!r}); use a loopback server")
    return _real_connect(self, address)  # type: ignore[arg-type]


_real_getaddrinfo = socket.getaddrinfo


def _guarded_getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
    if isinstance(host, bytes):
        host = host.decode()
    if host not in (*_LOOPBACK, None, ""):
        raise RuntimeError(f"tests must not reach the network (tried to resolve {host!r})")
    return _real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.getaddrinfo = _guarded_getaddrinfo  # type: ignore[assignment]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.getaddrinfo = _real_getaddrinfo


@pytest.fixture(autouse=True)
def _clean_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no real keys or endpoints from the developer's shell."""
    for name in list(os.environ):
        if name.endswith(("_API_KEY", "_BASE_URL")) or name in ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def openai_upstream() -> Iterator[LoopbackServer]:
    with LoopbackServer(openai_server.handle) as server:
        yield server


@pytest.fixture
def openai_url(openai_upstream: LoopbackServer) -> str:
    openai_upstream.reset_log()
    return openai_upstream.base_url + "/v1"
