"""Requests-per-minute and tokens-per-minute limits per API key, team or route.

Each limit is a GCRA (generic cell rate algorithm, the virtual-scheduling form of a token bucket)
run atomically by the state backend: ``rate_per_s`` units per second on average, with up to
``burst`` units at once. Over any interval of ``t`` seconds a limit admits at most
``rate_per_s * t + burst`` units, across every process sharing the backend. A refusal carries the
exact ``retry_after_s`` after which the same request fits, if nothing else consumes the limit.

Token limits are checked with the request's estimated tokens before the call; :meth:`RateLimiter.adjust`
then corrects them by the difference to the actual tokens (a correction is applied even over the
limit: the tokens were spent).

Failure behaviour: ``fail_open=True`` (the default) admits requests when the state backend cannot be
reached, logging a warning at most every ``WARN_EVERY_S`` seconds: a rate limit protects an upstream
quota that the provider enforces anyway, and losing the limiter should not take the gateway down. ``fail_open=False`` raises
:class:`~gateway.state.errors.StateBackendUnavailableError` instead. (Budgets, which guard money,
fail closed unless the policy says otherwise.) A client built from a policy wraps SQLite and Redis in
a ``DegradingBackend`` (``gateway/state/outage.py``): during an outage its rate limits are then
enforced by process-local state rather than skipped, and reconciled when the backend is back.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from gateway.budgets import SCOPES, Scope, Step, Subject, _adrive, _drive, check_match
from gateway.core.errors import StateBackendError
from gateway.state.base import StateBackend
from gateway.state.errors import RateLimitExceededError

Unit = Literal["requests", "tokens"]

_log = logging.getLogger("gateway.ratelimit")
WARN_EVERY_S = 10.0

__all__ = ["RateLimit", "RateLimitExceededError", "RateLimitGrant", "RateLimiter"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One rate limit.

    Attributes:
        name: Unique name, shown in errors.
        rate_per_s: Sustained rate, in units per second.
        burst: Units admitted at once from idle; a request costing more never fits.
        unit: ``"requests"`` (cost 1 each) or ``"tokens"`` (cost = estimated tokens).
        scope: Each ``"key"``, ``"team"``, ``"route"`` or ``"user"`` gets its own limit;
            ``"global"`` is one limit for every request it applies to.
        match: Only requests whose subject has these values count, e.g. ``(("route", "chat"),)``.
    """

    name: str
    rate_per_s: float
    burst: float
    unit: Unit = "requests"
    scope: Scope = "key"
    match: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not (self.rate_per_s > 0 and math.isfinite(self.rate_per_s)):
            raise ValueError(f"rate limit {self.name!r}: rate_per_s must be positive, got {self.rate_per_s}")
        if not (self.burst >= 1 and math.isfinite(self.burst)):
            raise ValueError(f"rate limit {self.name!r}: burst must be >= 1, got {self.burst}")
        if self.unit not in ("requests", "tokens"):
            raise ValueError(f"rate limit {self.name!r}: unit must be 'requests' or 'tokens'")
        if self.scope not in SCOPES:
            raise ValueError(f"rate limit {self.name!r}: scope must be one of {', '.join(SCOPES)}")
        check_match(f"rate limit {self.name!r}", self.match)

    @classmethod
    def rpm(
        cls,
        name: str,
        per_minute: float,
        *,
        burst: float | None = None,
        scope: Scope = "key",
        match: tuple[tuple[str, str], ...] = (),
    ) -> RateLimit:
        """Requests per minute; ``burst`` defaults to a whole minute's allowance."""
        return cls(name, per_minute / 60.0, per_minute if burst is None else burst, "requests", scope, match)

    @classmethod
    def tpm(
        cls,
        name: str,
        per_minute: float,
        *,
        burst: float | None = None,
        scope: Scope = "key",
        match: tuple[tuple[str, str], ...] = (),
    ) -> RateLimit:
        """Tokens per minute; ``burst`` defaults to a whole minute's allowance."""
        return cls(name, per_minute / 60.0, per_minute if burst is None else burst, "tokens", scope, match)


@dataclass(frozen=True, slots=True)
class _Charge:
    limit: RateLimit
    key: str
    cost: float


@dataclass(frozen=True, slots=True)
class RateLimitGrant:
    """What :meth:`RateLimiter.acquire` consumed, for :meth:`RateLimiter.adjust`."""

    charges: tuple[_Charge, ...]
    estimated_tokens: int


class RateLimiter:
    """Admit requests against a set of rate limits held in a state backend.

    Args:
        backend: Share it (SQLite, Redis) to share the limits between processes.
        limits: The limits that apply to every request.
        fail_open: Admit requests when the backend cannot be reached (default) instead of raising.
        clock: Returns the current Unix time.

    Example:
        >>> from gateway.state.memory import MemoryBackend
        >>> from gateway.budgets import Subject
        >>> per_key = RateLimit("per-key", rate_per_s=1, burst=1)
        >>> limiter = RateLimiter(MemoryBackend(), [per_key], clock=lambda: 1000.0)
        >>> _ = limiter.acquire(Subject(key="k"))
        >>> limiter.acquire(Subject(key="k"))
        Traceback (most recent call last):
        ...
        gateway.state.errors.RateLimitExceededError: rate limit 'per-key' exceeded; retry after 1.000 s
    """

    def __init__(
        self,
        backend: StateBackend,
        limits: Sequence[RateLimit],
        *,
        fail_open: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.limits = tuple(limits)
        self.fail_open = fail_open
        self._clock = clock
        self._warned_at = -math.inf

    def _charges(self, subject: Subject, tokens: int) -> list[_Charge]:
        charges = []
        for limit in self.limits:
            if not all(getattr(subject, field) == value for field, value in limit.match):
                continue
            cost = 1.0 if limit.unit == "requests" else float(tokens)
            if cost > 0:
                who = "*" if limit.scope == "global" else getattr(subject, limit.scope)
                charges.append(_Charge(limit, f"ratelimit:{limit.name}:{limit.scope}={who}", cost))
        return charges

    def acquire(self, subject: Subject, tokens: int = 0) -> RateLimitGrant:
        """Consume one request and ``tokens`` estimated tokens from every limit, or nothing.

        Args:
            subject: Who is asking.
            tokens: The request's estimated tokens (prompt plus ``max_tokens``).

        Returns:
            The grant, to pass to :meth:`adjust` once the actual tokens are known.

        Raises:
            RateLimitExceededError: A limit refused; ``retry_after_s`` is the longest wait among the
                limits that refused. Nothing stays consumed.
            StateBackendUnavailableError: Only with ``fail_open=False``.
        """
        return _drive(self.backend, self._acquire_steps(subject, tokens))

    def _acquire_steps(self, subject: Subject, tokens: int) -> Generator[Step, Any, RateLimitGrant]:
        now = self._clock()
        taken: list[_Charge] = []
        refused: list[tuple[_Charge, float]] = []
        try:
            for charge in self._charges(subject, tokens):
                limit = charge.limit
                decision = yield "rate_limit", (charge.key, limit.rate_per_s, limit.burst, charge.cost, now)
                if decision.allowed:
                    taken.append(charge)
                else:
                    refused.append((charge, decision.retry_after_s))
            if refused:
                yield from self._refund_steps(taken, now)
        except StateBackendError:
            if not self.fail_open:
                raise
            _log.warning(
                "rate limits not enforced: state backend %r unavailable (fail_open=True)", self.backend
            )
            return RateLimitGrant((), tokens)
        if refused:
            charge, retry_after = max(refused, key=lambda item: item[1])
            raise RateLimitExceededError(charge.limit.name, retry_after_s=retry_after, now=now)
        return RateLimitGrant(tuple(taken), tokens)

    def _refund_steps(self, charges: Sequence[_Charge], now: float) -> Generator[Step, Any, None]:
        for charge in charges:
            limit = charge.limit
            yield (
                "rate_limit",
                (charge.key, limit.rate_per_s, limit.burst, -charge.cost, now),
                {"force": True},
            )

    def adjust(self, grant: RateLimitGrant, actual_tokens: int) -> None:
        """Correct token limits by ``actual_tokens - estimated`` (a refund when negative)."""
        _drive(self.backend, self._adjust_steps(grant, actual_tokens))

    def _adjust_steps(self, grant: RateLimitGrant, actual_tokens: int) -> Generator[Step, Any, None]:
        delta = float(actual_tokens - grant.estimated_tokens)
        if delta == 0:
            return
        now = self._clock()
        try:
            for charge in grant.charges:
                limit = charge.limit
                if limit.unit == "tokens":
                    yield (
                        "rate_limit",
                        (charge.key, limit.rate_per_s, limit.burst, delta, now),
                        {"force": True},
                    )
        except StateBackendError:
            if not self.fail_open:
                raise
            _log.warning(
                "token usage not recorded: state backend %r unavailable (fail_open=True)", self.backend
            )

    async def aacquire(self, subject: Subject, tokens: int = 0) -> RateLimitGrant:
        """:meth:`acquire` on an event loop, which it never blocks (``redis.asyncio`` for Redis)."""
        return await _adrive(self.backend, self._acquire_steps(subject, tokens))

    async def aadjust(self, grant: RateLimitGrant, actual_tokens: int) -> None:
        """Async :meth:`adjust`."""
        await _adrive(self.backend, self._adjust_steps(grant, actual_tokens))
