"""Real client libraries (instructor, pydantic-ai, langchain-openai, openai-agents) driven through
``gateway.OpenAI`` / ``gateway.AsyncOpenAI`` against the loopback servers.

These libraries pin openai versions of their own, so they live in their own virtual environment,
``.venv-libs``, built by ``scripts/test-libraries`` at the low end of the openai range Switchyard
declares (openai 2.32, the httpx-based SDK). In the main ``.venv`` they are not installed and this
folder's modules skip themselves (``pytest.importorskip``); ``scripts/test-libraries`` sets
``SWITCHYARD_REQUIRE_LIBRARIES=1``, with which a missing library fails the run instead.

Every test runs once per provider: the client's own OpenAI endpoint (``gpt-4o-mini``) and the
loopback Anthropic server (``anthropic/claude-haiku-4-5``), reached through the same library code.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

import gateway
from tests.servers import anthropic_server
from tests.servers.http import LoopbackServer

# module -> what to pip install; each test module starts with ``pytest.importorskip`` of its own.
LIBRARIES = {
    "instructor": "instructor",
    "pydantic_ai": "pydantic-ai-slim[openai]",
    "langchain_openai": "langchain-openai",
    "agents": "openai-agents",
}
SKIP_REASON = (
    "not installed here: the client libraries run in .venv-libs, built and run by scripts/test-libraries"
)

REQUIRED = os.environ.get("SWITCHYARD_REQUIRE_LIBRARIES") == "1"

_missing = [package for module, package in LIBRARIES.items() if importlib.util.find_spec(module) is None]
if _missing and REQUIRED:
    raise RuntimeError(
        f"SWITCHYARD_REQUIRE_LIBRARIES=1 but {', '.join(_missing)} cannot be imported: "
        "pip install -r requirements/libraries.txt (scripts/test-libraries does)"
    )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under ``SWITCHYARD_REQUIRE_LIBRARIES=1`` a skipped test fails the run: nothing may hide there."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if REQUIRED and skipped and session.exitstatus == 0:
        reporter.write_line(
            f"SWITCHYARD_REQUIRE_LIBRARIES=1: {len(skipped)} skipped, which fails this run", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "anthropic/claude-haiku-4-5"


@dataclass(frozen=True)
class Route:
    """Where a model name goes: the loopback server that must see the request, and on which paths."""

    model: str
    server: LoopbackServer
    chat_path: str  # what a chat/completions call becomes upstream
    responses_path: str  # what a responses call becomes upstream

    def paths(self) -> list[str]:
        """The upstream paths requested since the test started (the server's log is reset per test)."""
        return [record.path for record in self.server.log]


@pytest.fixture(scope="session")
def anthropic_upstream() -> Iterator[LoopbackServer]:
    with LoopbackServer(anthropic_server.handle) as server:
        yield server


@pytest.fixture(params=["openai", "anthropic"])
def route(
    request: pytest.FixtureRequest,
    openai_upstream: LoopbackServer,
    anthropic_upstream: LoopbackServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Route:
    openai_upstream.reset_log()
    anthropic_upstream.reset_log()
    if request.param == "anthropic":
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic_upstream.base_url)
        return Route(ANTHROPIC_MODEL, anthropic_upstream, "/v1/messages", "/v1/messages")
    return Route(OPENAI_MODEL, openai_upstream, "/v1/chat/completions", "/v1/responses")


@pytest.fixture
def client(route: Route, openai_upstream: LoopbackServer) -> Iterator[gateway.OpenAI]:
    with gateway.OpenAI(api_key="sk-test", base_url=openai_upstream.base_url + "/v1") as sync_client:
        yield sync_client


@pytest.fixture
async def aclient(route: Route, openai_upstream: LoopbackServer) -> AsyncIterator[gateway.AsyncOpenAI]:
    async with gateway.AsyncOpenAI(api_key="sk-test", base_url=openai_upstream.base_url + "/v1") as c:
        yield c
