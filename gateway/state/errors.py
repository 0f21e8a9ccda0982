"""Errors of the state layer, budgets and rate limits, rooted in ``gateway.core.errors``.

``gateway.core.errors`` owns the tree; this module adds the few specific classes the state layer
raises, each a subclass of a class users already catch::

    GatewayError
     └── StateBackendError                    (gateway.core.errors)
          ├── StateBackendUnavailableError    cannot reach it (start-up or mid-run); URL redacted
          └── StateCorruptError               the SQLite file is unreadable; names the path
    RateLimitError (429)
     └── BudgetExceededError                  (gateway.core.errors) a budget has no room
          └── RateLimitExceededError          a local RPM/TPM limit; ``retry_after_s``
"""

from __future__ import annotations

import math

from gateway.core.errors import BudgetExceededError, StateBackendError

__all__ = [
    "BudgetExceededError",
    "RateLimitExceededError",
    "StateBackendError",
    "StateBackendUnavailableError",
    "StateCorruptError",
]


class StateBackendUnavailableError(StateBackendError, ConnectionError):
    """The backend cannot be reached, at start-up or mid-run.

    Args:
        message: What happened and how to fix it; never contains a password.
        url: The backend URL with any password replaced.
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
            "Move it aside or point the state URL at another path."
        )
        self.path = path


class RateLimitExceededError(BudgetExceededError):
    """A local rate limit (RPM or TPM) refused the request before any upstream call.

    Args:
        limit: The rate limit's name (also in ``budget``, as for every policy limit).
        retry_after_s: Seconds after which the same request would be admitted if nothing else
            consumed the limit meanwhile; ``math.inf`` when it can never fit (cost above the burst).
    """

    def __init__(self, limit: str, *, retry_after_s: float, now: float) -> None:
        never = math.isinf(retry_after_s)
        when = "never fits: its cost exceeds the burst" if never else f"retry after {retry_after_s:.3f} s"
        super().__init__(
            f"rate limit {limit!r} exceeded; {when}",
            budget=limit,
            reset_at=None if never else now + retry_after_s,
            retry_after_s=None if never else retry_after_s,
        )
        self.limit = limit
        self.retry_after_s = retry_after_s
