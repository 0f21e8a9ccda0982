"""``should_retry`` and ``retry_delay`` as value tables and properties (no sleeping, no patching)."""

from __future__ import annotations

import email.utils
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.errors import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    BadRequestError,
    make_status_error,
)
from gateway.resilience.retry import RetrySettings, parse_retry_after, retry_delay, should_retry

SETTINGS = RetrySettings()
NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        (400, None, False),
        (401, None, False),
        (403, None, False),
        (404, None, False),
        (408, None, True),
        (409, None, True),
        (413, None, False),
        (422, None, False),
        (429, None, True),
        (500, None, True),
        (502, None, True),
        (503, None, True),
        (504, None, True),
        (529, None, True),
        (400, "true", True),
        (503, "false", False),
        (503, "maybe", True),
    ],
)
def test_should_retry_statuses(status: int, header: str | None, expected: bool) -> None:
    headers = {"x-should-retry": header} if header is not None else {}
    assert should_retry(make_status_error(status, "x", body=None, headers=headers)) is expected


def test_should_retry_transport_errors() -> None:
    assert should_retry(APIConnectionError())
    assert should_retry(APITimeoutError())
    assert should_retry(APIResponseValidationError("bad body"))
    assert not should_retry(BadRequestError("bad", body=None, status_code=400))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "100", "retry-after": "9"}, 0.1),
        ({"retry-after": email.utils.formatdate(NOW + 7, usegmt=True)}, 7.0),
        ({"retry-after": "garbage"}, None),
        ({"retry-after": "NaN"}, None),
        ({"retry-after": "inf"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=lambda: NOW) == expected


@pytest.mark.parametrize(
    ("value", "honoured"),
    [
        ("2", True),
        ("0", True),
        ("60", True),
        ("61", False),
        ("-1", False),
        ("NaN", False),
        ("1e308", False),
        ("soon", False),
    ],
)
def test_retry_after_is_honoured_only_in_range(value: str, honoured: bool) -> None:
    delay = retry_delay(0, {"retry-after": value}, SETTINGS, rand=lambda: 0.0, now=lambda: NOW)
    assert delay == (float(value) if honoured else 0.5)


def test_past_http_date_falls_back_to_backoff() -> None:
    past = email.utils.formatdate(NOW - 30, usegmt=True)
    assert retry_delay(1, {"retry-after": past}, SETTINGS, rand=lambda: 0.0, now=lambda: NOW) == 1.0


@pytest.mark.parametrize(
    ("retries", "expected"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 8.0), (30, 8.0)]
)
def test_backoff_table_matches_the_sdk(retries: int, expected: float) -> None:
    assert retry_delay(retries, None, SETTINGS, rand=lambda: 0.0) == expected
    assert retry_delay(retries, None, SETTINGS, rand=lambda: 1.0) == expected * 0.75


@given(
    retries=st.integers(min_value=0, max_value=10_000),
    value=st.one_of(
        st.text(max_size=30),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
    ),
    rand=st.floats(min_value=0.0, max_value=1.0),
)
def test_any_retry_after_gives_a_bounded_delay(retries: int, value: str, rand: float) -> None:
    for name in ("retry-after", "retry-after-ms"):
        delay = retry_delay(retries, {name: value}, SETTINGS, rand=lambda: rand, now=lambda: NOW)
        assert math.isfinite(delay)
        assert 0.0 <= delay <= max(SETTINGS.max_retry_after, SETTINGS.max_delay)


@given(st.datetimes(timezones=st.just(__import__("datetime").timezone.utc)))
def test_http_dates_give_a_bounded_delay(when: object) -> None:
    value = email.utils.format_datetime(when, usegmt=True)  # type: ignore[arg-type]
    delay = retry_delay(0, {"retry-after": value}, SETTINGS, rand=lambda: 0.0, now=lambda: NOW)
    assert 0.0 <= delay <= SETTINGS.max_retry_after


@given(st.floats(min_value=1e-4, max_value=10.0), st.integers(min_value=0, max_value=64))
def test_configured_backoff_is_capped(initial: float, retries: int) -> None:
    settings = RetrySettings(initial_delay=initial, max_delay=initial * 4)
    assert retry_delay(retries, None, settings, rand=lambda: 0.0) <= initial * 4
