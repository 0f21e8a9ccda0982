"""Spend budgets per team, API key or route, per minute, hour, day or month, in USD or tokens.

A request goes through three steps:

1. :meth:`Budgets.reserve` holds the request's **worst-case** cost (prompt tokens plus
   ``max_tokens``, priced) in every budget that applies, before any upstream call. If one budget
   has no room, the holds already taken are released and :class:`BudgetExceededError` (HTTP 429)
   names that budget and when it resets.
2. :meth:`Budgets.settle` replaces the hold by the actual cost once the call is done. Settling is
   idempotent per reservation id: replaying it changes nothing.
3. :meth:`Budgets.release` drops the hold when the call failed without consuming tokens.

Boundary, exactly: a request is admitted when ``used + reserved + worst_case <= limit``, where
``used`` is the settled spend of the window and ``reserved`` the live holds. A request that brings
the budget exactly to its limit is admitted; one that would pass it by a single unit (one token,
or one micro-dollar: USD amounts are counted in whole micro-dollars, worst cases and actuals rounded
up, limits rounded down) is refused. A zero-cost request is admitted while ``used + reserved <=
limit``.

What this guarantees: when worst cases are upper bounds, the settled spend never exceeds the limit,
whatever the concurrency. When an actual exceeds its worst case (a wrong estimate), the excess is
charged in full (metering never lies) and the overspend is at most the sum of the overruns of the
requests in flight when the budget filled; one request's overrun when they are sequential.

Holds are leases (``lease_s``, default ``DEFAULT_LEASE_S`` = 30 s; the policy's ``state.lease_s``),
kept alive by a heartbeat: while a request is in flight, a background thread renews its holds every
``lease_s / 3``. If the process dies, the heartbeat stops and its holds are reclaimed ``lease_s``
after the last renewal, so a budget is never starved by a dead process for long. A hold is renewed
for at most ``MAX_HOLD_S`` (15 minutes, beyond the SDK's 10-minute timeout); one older than that
is let lapse (and logged), so a request that never ends cannot hold room forever.

Windows are calendar windows in UTC (a minute, an hour, a day from midnight, a month from the 1st);
``reset_at`` is the end of the window. A hold is settled in the window where it was taken, or in the
current one if that window has ended. Budgets fail closed: if the state backend cannot be reached,
``reserve`` raises :class:`~gateway.state.errors.StateBackendUnavailableError`, unless the policy's
``state.fail_open: {budgets: true}`` wraps the backend in a ``DegradingBackend``
(``gateway/state/outage.py``, which bounds the overspend during an outage; ``docs/state.md``).
"""

from __future__ import annotations

import calendar
import contextlib
import logging
import math
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, Literal, TypeVar, cast

from gateway.core.errors import BudgetExceededError, StateBackendError
from gateway.state.base import StateBackend

_log = logging.getLogger("gateway.budgets")

Period = Literal["minute", "hour", "day", "month"]
Unit = Literal["usd", "tokens"]
Scope = Literal["team", "key", "route", "user", "global"]
SCOPES = ("team", "key", "route", "user", "global")

DEFAULT_LEASE_S = 30.0
MAX_HOLD_S = 900.0
MICRO_USD = Decimal(1_000_000)
_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}

__all__ = ["Budget", "BudgetExceededError", "BudgetReservation", "BudgetStatus", "Budgets", "Cost", "Subject"]


@dataclass(frozen=True, slots=True)
class Budget:
    """One budget, as a policy declares it.

    Attributes:
        name: Unique name, shown in errors.
        limit: USD (a ``Decimal``) or tokens (an ``int``) per window.
        unit: ``"usd"`` or ``"tokens"``.
        period: ``"minute"``, ``"hour"``, ``"day"`` or ``"month"`` (UTC calendar windows).
        scope: Each ``"team"``, ``"key"``, ``"route"`` or ``"user"`` gets its own allowance;
            ``"global"`` is one allowance for every request it applies to.
        match: Only requests whose subject has these values count, e.g. ``(("team", "a"),)``;
            empty matches every request (a policy's ``match:`` with ``scope="global"``).
    """

    name: str
    limit: Decimal | int
    unit: Unit = "usd"
    period: Period = "day"
    scope: Scope = "team"
    match: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.unit not in ("usd", "tokens"):
            raise ValueError(f"budget {self.name!r}: unit must be 'usd' or 'tokens', got {self.unit!r}")
        if self.period not in ("minute", "hour", "day", "month"):
            raise ValueError(f"budget {self.name!r}: period must be minute, hour, day or month")
        if self.scope not in SCOPES:
            raise ValueError(f"budget {self.name!r}: scope must be one of {', '.join(SCOPES)}")
        check_match(f"budget {self.name!r}", self.match)
        if Decimal(self.limit) < 0:
            raise ValueError(f"budget {self.name!r}: limit must be >= 0, got {self.limit}")

    def applies(self, subject: Subject) -> bool:
        """Whether requests of ``subject`` count against this budget."""
        return all(getattr(subject, field) == value for field, value in self.match)

    def units(self, cost: Cost) -> int:
        """The integer amount this budget counts for ``cost`` (micro-USD rounded up, or tokens)."""
        if self.unit == "tokens":
            return cost.tokens
        return int((cost.usd * MICRO_USD).to_integral_value(ROUND_CEILING))

    def limit_units(self) -> int:
        if self.unit == "tokens":
            return int(self.limit)
        return int((Decimal(self.limit) * MICRO_USD).to_integral_value(ROUND_FLOOR))


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a request is for. An empty value is its own bucket (``""``), never "no budget"."""

    team: str = ""
    key: str = ""
    route: str = ""
    user: str = ""


def check_match(owner: str, match: tuple[tuple[str, str], ...]) -> None:
    """Refuse a ``match`` that names something other than a subject field."""
    for field, _ in match:
        if field not in ("team", "key", "route", "user"):
            raise ValueError(f"{owner}: cannot match on {field!r}; use team, key, route or user")


@dataclass(frozen=True, slots=True)
class Cost:
    """A cost in both units; each budget reads the one it counts."""

    usd: Decimal = Decimal(0)
    tokens: int = 0


@dataclass(frozen=True, slots=True)
class _Hold:
    budget: Budget
    key: str
    window_end: float


@dataclass(frozen=True, slots=True)
class BudgetReservation:
    """The holds of one request, to pass to :meth:`Budgets.settle` or :meth:`Budgets.release`."""

    reservation_id: str
    subject: Subject
    holds: tuple[_Hold, ...]


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """Where a budget stands for one subject, in the budget's own unit."""

    name: str
    unit: Unit
    limit: Decimal | int
    used: Decimal | int
    reserved: Decimal | int
    reset_at: float


def window(period: Period, now: float) -> tuple[float, float]:
    """Return ``(start, end)`` of the UTC calendar window of ``period`` that contains ``now``."""
    if period != "month":
        size = _SECONDS[period]
        start = math.floor(now / size) * size
        return float(start), float(start + size)
    day = datetime.fromtimestamp(now, tz=UTC)
    first = datetime(day.year, day.month, 1, tzinfo=UTC).timestamp()
    return first, first + calendar.monthrange(day.year, day.month)[1] * 86400.0


class Budgets:
    """Reserve, settle and release spend against a set of budgets held in a state backend.

    Args:
        backend: Where the windows live; share it (SQLite, Redis) to share budgets between processes.
        budgets: The budgets that apply to every request (each per its scope).
        lease_s: How long a hold survives without a renewal (the heartbeat renews live ones).
        clock: Returns the current Unix time.
        heartbeat: Renew live holds every ``lease_s / 3`` from a background thread (on by default;
            off, a hold lapses ``lease_s`` after it was taken, as a dead process's does).

    Example:
        >>> from gateway.state.memory import MemoryBackend
        >>> budgets = Budgets(MemoryBackend(), [Budget("team-daily", Decimal("1.00"))])
        >>> hold = budgets.reserve(Subject(team="a"), Cost(usd=Decimal("0.40")))
        >>> budgets.settle(hold, Cost(usd=Decimal("0.25")))
        >>> budgets.status(Subject(team="a"))[0].used
        Decimal('0.25')
    """

    def __init__(
        self,
        backend: StateBackend,
        budgets: Sequence[Budget],
        *,
        lease_s: float = DEFAULT_LEASE_S,
        clock: Callable[[], float] = time.time,
        heartbeat: bool = True,
    ) -> None:
        names = [b.name for b in budgets]
        if len(set(names)) != len(names):
            raise ValueError(f"budget names must be unique, got {names}")
        if lease_s <= 0:
            raise ValueError(f"lease_s must be positive, got {lease_s}")
        self.backend = backend
        self.budgets = tuple(budgets)
        self.lease_s = lease_s
        self._clock = clock
        self._heartbeat = _Heartbeat(self) if heartbeat else None

    def _hold(self, budget: Budget, subject: Subject, now: float) -> _Hold:
        start, end = window(budget.period, now)
        who = "*" if budget.scope == "global" else getattr(subject, budget.scope)
        return _Hold(budget, f"budget:{budget.name}:{budget.scope}={who}:{int(start)}", end)

    def reserve(
        self, subject: Subject, worst_case: Cost, *, reservation_id: str | None = None
    ) -> BudgetReservation:
        """Hold ``worst_case`` in every budget, or in none.

        Args:
            subject: Whose budgets to charge.
            worst_case: An upper bound of the request's cost.
            reservation_id: Reuse one to make a retried ``reserve`` idempotent; random by default.

        Returns:
            The holds, to settle or release.

        Raises:
            BudgetExceededError: A budget has no room; nothing stays held.
            StateBackendUnavailableError: The backend cannot be reached (budgets fail closed).
        """
        return _drive(self.backend, self._reserve_steps(subject, worst_case, reservation_id))

    # The operations are written once as generators of backend calls (``Step``), run by ``_drive``
    # (blocking) or ``_adrive`` (awaited, ``redis.asyncio`` for Redis): the twins share every decision.

    def _reserve_steps(
        self, subject: Subject, worst_case: Cost, reservation_id: str | None
    ) -> Generator[Step, Any, BudgetReservation]:
        rid = reservation_id or uuid.uuid4().hex
        now = self._clock()
        taken: list[_Hold] = []
        try:
            for budget in self.budgets:
                if not budget.applies(subject):
                    continue
                hold = self._hold(budget, subject, now)
                args = (
                    hold.key,
                    budget.limit_units(),
                    budget.units(worst_case),
                    rid,
                    self.lease_s,
                    hold.window_end,
                    now,
                )
                result = yield "reserve", args
                if not result.granted:
                    yield from self._drop_steps(taken, rid, now)
                    raise _exceeded(budget, hold.window_end, now, result.used, result.reserved, worst_case)
                taken.append(hold)
        except StateBackendError:
            with contextlib.suppress(StateBackendError):  # if this fails too, the leases expire
                yield from self._drop_steps(taken, rid, now)
            raise
        reservation = BudgetReservation(rid, subject, tuple(taken))
        if taken and self._heartbeat is not None:
            self._heartbeat.track(reservation)
        return reservation

    def _drop_steps(self, holds: Sequence[_Hold], rid: str, now: float) -> Generator[Step, Any, None]:
        for hold in holds:
            yield "release", (hold.key, rid, now)

    def _settle_steps(self, reservation: BudgetReservation, actual: Cost) -> Generator[Step, Any, None]:
        if self._heartbeat is not None:
            self._heartbeat.forget(reservation)
        now = self._clock()
        for hold in reservation.holds:
            if hold.window_end <= now:  # the window ended mid-call: the spend lands in the current one
                hold = self._hold(hold.budget, reservation.subject, now)
            yield (
                "settle",
                (hold.key, reservation.reservation_id, hold.budget.units(actual), hold.window_end, now),
            )

    def _release_steps(self, reservation: BudgetReservation) -> Generator[Step, Any, None]:
        if self._heartbeat is not None:
            self._heartbeat.forget(reservation)
        yield from self._drop_steps(reservation.holds, reservation.reservation_id, self._clock())

    def settle(self, reservation: BudgetReservation, actual: Cost) -> None:
        """Charge the actual cost in place of the holds; replaying a settlement changes nothing.

        Raises:
            StateBackendUnavailableError: The backend cannot be reached. The hold then lapses with
                its lease and this spend is missing from the budget (metering still records it);
                calling ``settle`` again once the backend is back is safe.
        """
        _drive(self.backend, self._settle_steps(reservation, actual))

    def release(self, reservation: BudgetReservation) -> None:
        """Drop the holds without spending (the call failed before consuming tokens).

        Raises:
            StateBackendUnavailableError: The backend cannot be reached; the holds lapse with their lease.
        """
        _drive(self.backend, self._release_steps(reservation))

    def status(self, subject: Subject) -> list[BudgetStatus]:
        """Return where each budget that applies to ``subject`` stands in the current window."""
        now = self._clock()
        report = []
        for budget in filter(lambda b: b.applies(subject), self.budgets):
            hold = self._hold(budget, subject, now)
            used, reserved = self.backend.budget_usage(hold.key, now)
            report.append(
                BudgetStatus(budget.name, budget.unit, budget.limit, _from_units(budget, used),
                             _from_units(budget, reserved), hold.window_end)
            )  # fmt: skip
        return report

    async def areserve(
        self, subject: Subject, worst_case: Cost, *, reservation_id: str | None = None
    ) -> BudgetReservation:
        """:meth:`reserve` on an event loop, which it never blocks (``redis.asyncio`` for Redis)."""
        return await _adrive(self.backend, self._reserve_steps(subject, worst_case, reservation_id))

    async def asettle(self, reservation: BudgetReservation, actual: Cost) -> None:
        """Async :meth:`settle`."""
        await _adrive(self.backend, self._settle_steps(reservation, actual))

    async def arelease(self, reservation: BudgetReservation) -> None:
        """Async :meth:`release`."""
        await _adrive(self.backend, self._release_steps(reservation))


# (a StateBackend method, its positional arguments[, its keyword arguments])
Step = tuple[str, tuple[Any, ...]] | tuple[str, tuple[Any, ...], dict[str, Any]]
_T = TypeVar("_T")


def _drive(backend: StateBackend, steps: Generator[Step, Any, _T]) -> _T:
    """Run a generator of backend calls with the blocking backend; errors are thrown back into it."""
    try:
        step = next(steps)
        while True:
            try:
                result = getattr(backend, step[0])(*step[1], **_kwargs(step))
            except Exception as exc:  # noqa: BLE001 - handed to the operation, which decides
                step = steps.throw(exc)
            else:
                step = steps.send(result)
    except StopIteration as done:
        return cast(_T, done.value)


async def _adrive(backend: StateBackend, steps: Generator[Step, Any, _T]) -> _T:
    """``_drive`` awaited: each call through ``gateway.state.aio.call_async``."""
    from gateway.state.aio import call_async

    try:
        step = next(steps)
        while True:
            try:
                result = await call_async(backend, step[0], *step[1], **_kwargs(step))
            except Exception as exc:  # noqa: BLE001 - handed to the operation, which decides
                step = steps.throw(exc)
            else:
                step = steps.send(result)
    except StopIteration as done:
        return cast(_T, done.value)


def _kwargs(step: Step) -> dict[str, Any]:
    return step[2] if len(step) == 3 else {}  # type: ignore[misc]


class _Heartbeat:
    """Renews the holds of a ``Budgets``' live reservations every ``lease_s / 3`` from one daemon
    thread, which runs only while some are live (and holds the ``Budgets`` only weakly)."""

    def __init__(self, budgets: Budgets) -> None:
        self._budgets = weakref.ref(budgets)
        self._interval = budgets.lease_s / 3
        self._live: dict[str, tuple[BudgetReservation, float]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def track(self, reservation: BudgetReservation) -> None:
        with self._lock:
            self._live[reservation.reservation_id] = (reservation, time.monotonic())
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="switchyard-budget-heartbeat", daemon=True
                )
                self._thread.start()

    def forget(self, reservation: BudgetReservation) -> None:
        with self._lock:
            self._live.pop(reservation.reservation_id, None)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._interval)
            with self._lock:
                live = list(self._live.values())
                if not live:
                    self._thread = None
                    return
            budgets = self._budgets()
            if budgets is None:
                return
            self._renew(budgets, live)
            del budgets

    def _renew(self, budgets: Budgets, live: list[tuple[BudgetReservation, float]]) -> None:
        now, age_now = budgets._clock(), time.monotonic()
        for reservation, started in live:
            if age_now - started > MAX_HOLD_S:
                _log.warning(
                    "budget hold %s is older than %.0f s: no longer renewed, it lapses with its lease",
                    reservation.reservation_id,
                    MAX_HOLD_S,
                )
                self.forget(reservation)
                continue
            for hold in reservation.holds:
                try:
                    budgets.backend.renew(hold.key, reservation.reservation_id, budgets.lease_s, now)
                except StateBackendError as exc:
                    _log.warning("budget hold %s not renewed: %s", reservation.reservation_id, exc)


def _exceeded(
    budget: Budget, reset_at: float, now: float, used: int, reserved: int, worst_case: Cost
) -> BudgetExceededError:
    """The refusal, with its figures in the budget's unit (also in the 429 body).

    ``retry_after_s`` (and the ``Retry-After`` header) only when waiting can help: the request's
    worst case fits an empty window. One that never fits gets none, and says so.
    """
    when = datetime.fromtimestamp(reset_at, tz=UTC).isoformat()

    def fmt(value: Decimal | int) -> str:
        return f"${value}" if budget.unit == "usd" else f"{value} tokens"

    limit, spent = _from_units(budget, budget.limit_units()), _from_units(budget, used)
    held, needed = _from_units(budget, reserved), _from_units(budget, budget.units(worst_case))
    fits_later = budget.units(worst_case) <= budget.limit_units()
    advice = f"it resets at {when}" if fits_later else "it can never fit: lower max_tokens or raise the limit"
    error = BudgetExceededError(
        f"budget {budget.name!r} ({fmt(limit)} per {budget.period}, per {budget.scope}) has no room for this "
        f"request's worst-case cost {fmt(needed)}: {fmt(spent)} spent and {fmt(held)} reserved in this "
        f"window; {advice}",
        budget=budget.name,
        reset_at=reset_at,
        retry_after_s=max(0.0, reset_at - now) if fits_later else None,
    )
    if isinstance(error.body, dict):
        error.body.update(
            unit=budget.unit,
            window=budget.period,
            limit=str(limit),
            spent=str(spent),
            reserved=str(held),
            requested=str(needed),
        )
    return error


def _from_units(budget: Budget, amount: int) -> Decimal | int:
    return amount if budget.unit == "tokens" else Decimal(amount) / MICRO_USD
