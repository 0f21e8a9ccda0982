"""Loopback Anthropic and Gemini servers, and environments that point the gateway at them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import anthropic_server, gemini_server
from tests.servers.http import LoopbackServer


@pytest.fixture(scope="session")
def anthropic_upstream() -> Iterator[LoopbackServer]:
    with LoopbackServer(anthropic_server.handle) as server:
        yield server


@pytest.fixture(scope="session")
def gemini_upstream() -> Iterator[LoopbackServer]:
    with LoopbackServer(gemini_server.handle) as server:
        yield server


@pytest.fixture
def anthropic_env(anthropic_upstream: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> LoopbackServer:
    """``ANTHROPIC_API_KEY``/``ANTHROPIC_BASE_URL`` point at the loopback server; its log is fresh."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic_upstream.base_url)
    anthropic_upstream.reset_log()
    return anthropic_upstream


@pytest.fixture
def gemini_env(gemini_upstream: LoopbackServer, monkeypatch: pytest.MonkeyPatch) -> LoopbackServer:
    """``GEMINI_API_KEY``/``GEMINI_BASE_URL`` point at the loopback server; its log is fresh."""
    monkeypatch.setenv("GEMINI_API_KEY", "gm-test")
    monkeypatch.setenv("GEMINI_BASE_URL", gemini_upstream.base_url)
    gemini_upstream.reset_log()
    return gemini_upstream
