"""Rate limits over every backend: RPM and TPM, retry-after, refunds, failure modes."""

from __future__ import annotations

import math

import pytest

from gateway.budgets import Subject
from gateway.core.errors import BudgetExceededError, RateLimitError, StateBackendError
from gateway.ratelimit import RateLimit, RateLimiter
from gateway.state.errors import RateLimitExceededError, StateBackendUnavailableError

KEY_1 = Subject(team="a", key="key-1", route="support")
KEY_2 = Subject(team="a", key="key-2", route="support")


def test_rpm_admits_the_burst_and_the_retry_after_is_exact(backend, clock):
    limiter = RateLimiter(backend, [RateLimit.rpm("rpm", 60, burst=3)], clock=clock)
    for _ in range(3):
        limiter.acquire(KEY_1)
    with pytest.raises(RateLimitExceededError) as caught:
        limiter.acquire(KEY_1)
    error = caught.value
    assert (error.limit, error.budget, error.status_code) == ("rpm", "rpm", 429)
    assert error.retry_after_s == pytest.approx(1.0, abs=1e-6)
    assert isinstance(error, RateLimitError) and isinstance(error, BudgetExceededError)
    clock.advance(error.retry_after_s - 0.001)
    with pytest.raises(RateLimitExceededError):
        limiter.acquire(KEY_1)
    clock.advance(0.001)
    limiter.acquire(KEY_1)
    limiter.acquire(KEY_2)  # per-key scope: another key has its own limit


def test_tpm_checks_the_estimate_and_adjusts_to_the_actual(backend, clock):
    limiter = RateLimiter(backend, [RateLimit.tpm("tpm", 6000)], clock=clock)  # 100 tokens/s
    grant = limiter.acquire(KEY_1, tokens=5000)
    limiter.adjust(grant, actual_tokens=2000)  # refunds 3,000
    limiter.acquire(KEY_1, tokens=4000)
    with pytest.raises(RateLimitExceededError) as caught:
        limiter.acquire(KEY_1, tokens=500)
    assert caught.value.retry_after_s == pytest.approx(5.0, abs=1e-6)
    with pytest.raises(RateLimitExceededError) as never:
        limiter.acquire(KEY_2, tokens=6001)
    assert math.isinf(never.value.retry_after_s)
    assert "never fits" in str(never.value)


def test_a_refusal_by_one_limit_consumes_nothing_from_the_others(backend, clock):
    rpm = RateLimit.rpm("rpm", 600, burst=10)
    tpm = RateLimit.tpm("tpm", 60, burst=100)  # 1 token/s
    limiter = RateLimiter(backend, [rpm, tpm], clock=clock)
    limiter.acquire(KEY_1, tokens=100)
    for _ in range(5):
        with pytest.raises(RateLimitExceededError) as caught:
            limiter.acquire(KEY_1, tokens=50)
        assert caught.value.limit == "tpm"
    only_rpm = RateLimiter(backend, [rpm], clock=clock)
    for _ in range(9):  # the refused attempts did not eat the request limit
        only_rpm.acquire(KEY_1)


def test_the_longest_retry_after_among_refusing_limits_is_reported(backend, clock):
    fast = RateLimit("fast", rate_per_s=10, burst=1)
    slow = RateLimit("slow", rate_per_s=0.5, burst=1)
    limiter = RateLimiter(backend, [fast, slow], clock=clock)
    limiter.acquire(KEY_1)
    with pytest.raises(RateLimitExceededError) as caught:
        limiter.acquire(KEY_1)
    assert (caught.value.limit, caught.value.retry_after_s) == ("slow", pytest.approx(2.0, abs=1e-6))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_per_s": 0}, "rate_per_s must be positive"),
        ({"burst": 0.5}, "burst must be >= 1"),
        ({"unit": "calls"}, "unit must be"),
        ({"scope": "org"}, "scope must be"),
    ],
)
def test_invalid_limits_are_refused_when_built(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RateLimit(**{"name": "r", "rate_per_s": 1.0, "burst": 1.0, **kwargs})


class _Down:
    """A backend whose server is gone."""

    def rate_limit(self, *args, **kwargs):
        raise StateBackendUnavailableError(
            "cannot reach Redis at redis://cache:6379", url="redis://cache:6379"
        )


def test_fail_open_admits_and_logs_when_the_backend_is_down(caplog, clock):
    limiter = RateLimiter(_Down(), [RateLimit.rpm("rpm", 1, burst=1)], clock=clock)  # type: ignore[arg-type]
    grants = [limiter.acquire(KEY_1) for _ in range(3)]
    assert [g.charges for g in grants] == [(), (), ()]
    assert "rate limits not enforced" in caplog.text


def test_fail_closed_raises_the_typed_backend_error(clock):
    limiter = RateLimiter(_Down(), [RateLimit.rpm("rpm", 1)], fail_open=False, clock=clock)  # type: ignore[arg-type]
    with pytest.raises(StateBackendError):
        limiter.acquire(KEY_1)


def test_match_limits_a_rate_limit_to_the_requests_it_names(backend, clock):
    chat_only = RateLimit.rpm("chat", 1, burst=1, scope="global", match=(("route", "chat"),))
    limiter = RateLimiter(backend, [chat_only], clock=clock)
    limiter.acquire(Subject(route="chat"))
    for _ in range(5):
        limiter.acquire(Subject(route="batch"))
    with pytest.raises(RateLimitExceededError):
        limiter.acquire(Subject(key="other", route="chat"))
