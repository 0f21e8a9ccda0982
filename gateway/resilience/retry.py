"""Retry decisions as small pure functions: whether to retry an outcome, and how long to wait.

The delay follows the openai SDK: a server's ``retry-after-ms``, then ``retry-after`` (seconds or an
HTTP date) when it is between 0 and ``MAX_RETRY_AFTER_DELAY``; otherwise capped exponential
backoff with jitter:

    delay = min(INITIAL_RETRY_DELAY * 2**retries, MAX_RETRY_DELAY) * (1 - 0.25 * random())

(the SDK's formula: 0.5 s, 1 s, 2 s, … capped at 8 s, minus up to 25 % jitter). A negative, NaN,
huge or unparsable ``retry-after`` falls back to the backoff.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from gateway._constants import INITIAL_RETRY_DELAY, MAX_RETRY_AFTER_DELAY, MAX_RETRY_DELAY
from gateway.core.errors import APIConnectionError, APIError, APIResponseValidationError, APIStatusError

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Retries inside one candidate; the defaults are the openai SDK's.

    Attributes:
        max_retries: Retries after the first attempt (the SDK's ``max_retries``, default 2).
        initial_delay: The backoff's first delay in seconds (the SDK's 0.5).
        max_delay: The backoff's cap (the SDK's 8.0).
        max_retry_after: The longest ``retry-after`` a server may ask for (the SDK's 60); a
            longer, negative or unparsable one falls back to the backoff.

    Raises:
        ValueError: A negative or non-finite setting (the message names it).
    """

    max_retries: int = 2
    initial_delay: float = INITIAL_RETRY_DELAY
    max_delay: float = MAX_RETRY_DELAY
    max_retry_after: float = MAX_RETRY_AFTER_DELAY

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"RetrySettings.max_retries must be >= 0, got {self.max_retries}")
        for name in ("initial_delay", "max_delay", "max_retry_after"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"RetrySettings.{name} must be a finite number >= 0, got {value!r}")


def should_retry(error: BaseException) -> bool:
    """Whether the same candidate should be tried again after ``error``.

    ``x-should-retry: true|false`` from the server wins; then 408/409/429/5xx/529, connection errors
    and timeouts are retried; 400/401/403/404/422 and everything else are not.
    """
    if isinstance(error, APIStatusError):
        override = error.headers.get("x-should-retry") if error.headers else None
        if override == "true":
            return True
        if override == "false":
            return False
        return error.status_code in RETRYABLE_STATUSES
    if isinstance(error, APIConnectionError):
        return True
    return isinstance(error, APIResponseValidationError)


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds the server asked us to wait, or ``None`` when it did not ask (or asked nonsense)."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        seconds = _finite(value)
        if seconds is not None:
            return seconds / 1000
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _finite(value)
    if seconds is not None:
        return seconds
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return float(email.utils.mktime_tz(parsed)) - now()


def retry_delay(
    retries_taken: int,
    headers: Mapping[str, str] | None,
    settings: RetrySettings = RetrySettings(),
    *,
    rand: Callable[[], float] = random.random,
    now: Callable[[], float] = time.time,
) -> float:
    """How long to sleep before retry number ``retries_taken + 1``."""
    asked = parse_retry_after(headers, now=now)
    if asked is not None and 0 <= asked <= settings.max_retry_after:
        return asked
    base = min(settings.initial_delay * 2.0 ** min(retries_taken, 64), settings.max_delay)
    return base * (1 - 0.25 * rand())


def error_headers(error: APIError) -> Mapping[str, str] | None:
    return error.headers if isinstance(error, APIStatusError) else None


def _finite(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
