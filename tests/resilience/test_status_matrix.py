"""The status × body matrix: exact attempt counts and the error class, for each provider protocol.

Every status of the list is answered with a JSON error, a non-JSON text, an empty body and an HTML
page, with and without ``Retry-After``; a single candidate with the SDK's two retries must make 3
attempts for 408/409/429/5xx/529 and 1 for the rest, and raise the status's own error class.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway.core.attempts import Candidate, Plan
from gateway.core.errors import APIStatusError, status_error_class
from gateway.core.execute import Executor
from gateway.resilience.retry import RETRYABLE_STATUSES
from providers.base import Target
from tests.resilience.conftest import FAST, Records, request
from tests.servers.faults import FastServer, FaultHandler
from tests.servers.http import LoopbackServer

STATUSES = [400, 401, 403, 404, 408, 409, 413, 422, 429, 500, 502, 503, 504, 529]
BODIES = ["json", "text", "empty", "html"]
PROTOCOLS = ["openai", "anthropic", "gemini"]


def _target(server: LoopbackServer, kind: str) -> Target:
    base = server.base_url + ("/v1" if kind == "openai" else "")
    model = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku-latest", "gemini": "gemini-2.0-flash"}[
        kind
    ]
    return Target(provider=kind, kind=kind, base_url=base, model=model, api_key="sk-test")


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


@pytest.fixture(scope="module")
def upstream() -> Iterator[LoopbackServer]:
    with FastServer(FaultHandler()) as server:
        yield server


@pytest.mark.parametrize("retry_after", ["ra", "nora"])
@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_attempts_per_status_and_body(
    protocol: str, status: int, body: str, retry_after: str, upstream: LoopbackServer, http: httpx.Client
) -> None:
    upstream.reset_log()
    primary = upstream
    records = Records()
    executor = Executor(http, observer=records, retry=FAST)
    plan = Plan([Candidate(_target(primary, protocol), "only")])
    fault = {"x-fault": f"status-{status}-{body}-{retry_after}"}
    with pytest.raises(APIStatusError) as caught:
        executor.complete(request(), plan, headers=fault, timeout=5.0)
    expected = 3 if status in RETRYABLE_STATUSES else 1
    assert len(records) == expected
    assert len([r for r in primary.log if r.method == "POST"]) == expected
    assert type(caught.value) is status_error_class(status)
    assert caught.value.status_code == status
    assert [r.status_code for r in records] == [status] * expected
