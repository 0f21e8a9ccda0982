"""Plan settings the integrator fills from a route: candidate cap, auth fall-through, validation."""

from __future__ import annotations

import logging

import pytest

from gateway.core.attempts import Plan, error_class
from gateway.core.errors import APITimeoutError, InternalServerError, make_status_error
from tests.resilience.conftest import ANSWER, candidate, chat_log, run
from tests.servers.http import LoopbackServer


def test_candidate_cap(mode: str, primary: LoopbackServer, secondary: LoopbackServer) -> None:
    plan = Plan(
        [candidate(primary, "fault:503"), candidate(secondary, "gpt-4o-mini", "secondary")], max_candidates=1
    )
    result = run(mode, plan)
    assert type(result.error) is InternalServerError
    assert len(chat_log(primary)) == 3 and len(chat_log(secondary)) == 0


def test_auth_falls_through_to_other_providers_loudly(
    mode: str, primary: LoopbackServer, secondary: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    plan = Plan(
        [
            candidate(primary, "fault:auth"),
            candidate(primary, "gpt-4o", name="primary/other-model"),  # same provider, same key: skipped
            candidate(secondary, "gpt-4o-mini", "secondary"),
        ],
        fallback_on=frozenset(),
    )
    with caplog.at_level(logging.WARNING, logger="gateway.resilience"):
        result = run(mode, plan)
    assert result.error is None and result.text == ANSWER
    assert [(a.model, a.outcome) for a in result.reply.gateway.attempts] == [
        ("primary/fault:auth", "AuthenticationError"),
        ("secondary/gpt-4o-mini", "ok"),
        ("primary/other-model", "skipped"),
    ]
    assert len(chat_log(primary)) == 1
    assert any(
        "refused the credentials" in r.getMessage() and "sk-" not in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (make_status_error(429, "x", body=None), "rate_limit"),
        (make_status_error(401, "x", body=None), "auth"),
        (make_status_error(403, "x", body=None), "auth"),
        (make_status_error(408, "x", body=None), "timeout"),
        (make_status_error(529, "x", body=None), "server_error"),
        (make_status_error(413, "x", body=None), "context_length"),
        (make_status_error(400, "x", body={"code": "context_length_exceeded"}), "context_length"),
        (make_status_error(400, "x", body={"code": "content_policy_violation"}), "content_filter"),
        (make_status_error(400, "x", body=None), "bad_request"),
        (make_status_error(404, "x", body=None), "bad_request"),
        (APITimeoutError(), "timeout"),
    ],
)
def test_error_classes(error: Exception, kind: str) -> None:
    assert error_class(error) == kind


@pytest.mark.parametrize(
    "kwargs", [{"fallback_on": frozenset({"rate-limit"})}, {"buffer_tokens": -1}, {"max_candidates": 0}]
)
def test_impossible_plans(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="Plan"):
        Plan([], **kwargs)  # type: ignore[arg-type]
