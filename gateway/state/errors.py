"""Errors raised by the shared state layer, budgets and rate limits.

These live here until ``gateway/errors.py`` absorbs them; the names and attributes are meant to be
kept when they move.

Tree::

    StateError (Exception)
     ├── StateBackendError                  a backend failed to answer
     │    ├── StateBackendUnavailableError  cannot reach it (start-up or mid-run); URL redacted
     │    └── StateCorruptError             the SQLite file is unreadable; names the path
     └── QuotaError                          HTTP 429 semantics, raised before any upstream call
          ├── BudgetExceededError            a spend budget has no room; carries name and reset time
          └── RateLimitExceededError         a local RPM/TPM limit; carries retry-after
"""

from __future__ import annotations

from datetime import UTC, datetime


class StateError(Exception):
    """Root of the errors of the state layer.

    Attributes:
        code: A stable, dotted error code such as ``"state.unavailable"``.
    """

    code: str = "state.error"


class StateBackendError(StateError):
    """A state backend failed to carry out an operation."""

    code = "state.backend"


class StateBackendUnavailableError(StateBackendError, ConnectionError):
    """The backend cannot be reached (at start-up or mid-run).

    Args:
        message: What happened and how to fix it; never contains a password.
        url: The backend URL with any password replaced by ``***``.
    """

    code = "state.unavailable"

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class StateCorruptError(StateBackendError):
    """A SQLite state file is not a readable database. The file is left untouched.

    Args:
        path: The file that could not be read.
        detail: SQLite's own description of the problem.
    """

    code = "state.corrupt"

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(
            f"state file {path!r} is not a readable SQLite database ({detail}); it was not modified. "
            "Move it aside or point the gateway at another path."
        )
        self.path = path


class QuotaError(StateError):
    """A local quota refused the request; maps to HTTP 429.

    Attributes:
        status_code: Always 429.
    """

    code = "quota"
    status_code: int = 429


class BudgetExceededError(QuotaError):
    """A budget has no room for this request's worst-case cost.

    Args:
        budget: The budget's name.
        reset_at: Unix time when the budget's window ends and it refills.
        limit: The budget's limit, as configured (USD or tokens).
        unit: ``"usd"`` or ``"tokens"``.
    """

    code = "budget.exceeded"

    def __init__(self, budget: str, *, reset_at: float, limit: object, unit: str) -> None:
        when = datetime.fromtimestamp(reset_at, tz=UTC).isoformat()
        super().__init__(
            f"budget {budget!r} ({limit} {unit}) has no room for this request; it resets at {when}"
        )
        self.budget = budget
        self.reset_at = reset_at
        self.limit = limit
        self.unit = unit


class RateLimitExceededError(QuotaError):
    """A local rate limit (RPM or TPM) refused the request.

    Args:
        limit: The rate limit's name.
        retry_after_s: Seconds after which the same request would be admitted, if nothing else
            consumes the limit meanwhile. ``math.inf`` when the request can never fit.
    """

    code = "rate_limit.exceeded"

    def __init__(self, limit: str, *, retry_after_s: float) -> None:
        super().__init__(f"rate limit {limit!r} exceeded; retry after {retry_after_s:.3f} s")
        self.limit = limit
        self.retry_after_s = retry_after_s
