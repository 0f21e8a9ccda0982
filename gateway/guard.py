"""Budgets and rate limits of a policy, applied around each request before any upstream call.

``Guard.admit`` takes the request's rate-limit charge and reserves its worst-case cost (estimated
prompt tokens + ``max_tokens``, or without it the route's observed p99 output for the model capped by
the model's maximum, ``gateway/metering/observed.py``; priced at the dearest candidate of the plan) in every budget that
matches; ``Admission.settle`` replaces the hold by the actual cost of every attempt that consumed
tokens, and ``Admission.release`` drops it when nothing was consumed. A budget with
``on_exceed: cheaper`` drops the dearest candidates until the worst case fits, before refusing.

A policy's budgets count one allowance for all the requests they match (``match: {team: search}``
is the search team's budget; no ``match`` is a global budget). The state backend is the policy's
``state`` section (memory by default); budgets fail closed and rate limits follow ``fail_open``.

A model without a price (neither the policy nor the catalog names one) counts as the worst, as
``switchyard policy check`` says: it is reserved and charged at the dearest input and output prices
that the policy and the catalog know (``Guard.ceiling``), never at $0. Its usage records keep cost
``null``: metering does not invent a price, budgets do not let it through for free.

With a hot-reloaded policy (a policy file), ``FollowingGuard`` builds a new ``Guard`` when the
policy changes: new budgets, rate limits and prices apply to the next request.

A stream whose upstream never reported usage (cut, or closed by the caller) is charged its
estimated usage (``gateway.metering.streams``), like every other attempt that consumed tokens. A
non-streamed body cut after a success status is charged its prompt and the output its reservation
assumed (``Plan.output_ceilings``, ``gateway.metering.cut_body``).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING

from gateway.budgets import Budget, BudgetReservation, Budgets, Cost, Subject
from gateway.core.attempts import AttemptRecord, Candidate, Plan
from gateway.core.errors import BudgetExceededError, StateBackendError
from gateway.core.types import ChatRequest
from gateway.metering.observed import ObservedOutputs
from gateway.ratelimit import RateLimit, RateLimiter, RateLimitGrant
from gateway.state.memory import MemoryBackend
from gateway.state.outage import FailOpen

if TYPE_CHECKING:
    from gateway.catalog import ModelSpec
    from gateway.metering.pricing import ModelPrice
    from gateway.policy import Policy
    from gateway.policy.schema import Budget as PolicyBudget
    from gateway.policy.schema import RateLimit as PolicyRateLimit
    from gateway.state.base import StateBackend

_log = logging.getLogger("gateway.guard")
_MILLION = Decimal(1_000_000)
DEFAULT_WORST_OUTPUT = 4096  # when neither the request nor the catalog bounds the output
# USD per 1M (input, output) for an unpriced model when no model at all has a price.
UNPRICED_CEILING = (Decimal(150), Decimal(600))


@dataclass(slots=True)
class Admission:
    """One admitted request's holds: settle them with what was used, or release them."""

    guard: Guard
    reservation: BudgetReservation | None
    grant: RateLimitGrant | None
    plan: Plan
    done: bool = False
    charged: set[int] = field(default_factory=set)  # attempt indices settled
    lock: threading.Lock = field(default_factory=threading.Lock)

    def settle(self, attempts: Sequence[AttemptRecord]) -> None:
        """Charge what the attempts consumed. Never raises for the state backend: the reply was
        served. On a running event loop the backend calls go to a worker thread."""
        with self.lock:
            if self.done:
                return
            self.done = True
            if self.plan.hedge is not None and isinstance(attempts, list):
                _expect_late(attempts, self)  # a hedge loser may finish after the reply
            snapshot = list(attempts)
            self.charged.update(r.attempt for r in snapshot)
        self._off_loop(self._settle, snapshot)

    def _off_loop(
        self, work: Callable[[Sequence[AttemptRecord]], None], attempts: list[AttemptRecord]
    ) -> None:
        if _on_event_loop() and not isinstance(self.guard.backend, MemoryBackend):
            _BACKGROUND.submit(work, attempts)
        else:
            work(attempts)

    async def asettle(self, attempts: Sequence[AttemptRecord]) -> None:
        """:meth:`settle` on an event loop, which it never blocks; never raises for the backend."""
        with self.lock:
            if self.done:
                return
            self.done = True
            if self.plan.hedge is not None and isinstance(attempts, list):
                _expect_late(attempts, self)
            snapshot = list(attempts)
            self.charged.update(r.attempt for r in snapshot)
        cost, tokens = self.guard.actual_cost(snapshot)
        try:
            if self.reservation is not None:
                await self.guard.budgets.asettle(self.reservation, Cost(usd=cost, tokens=tokens))
            if self.grant is not None and self.guard.limiter is not None:
                await self.guard.limiter.aadjust(self.grant, tokens)
        except StateBackendError as exc:
            _log.warning("budget settlement of $%s (%d tokens) not recorded: %s", cost, tokens, exc)

    def late(self, record: AttemptRecord) -> None:
        """Charge an attempt that ended after the request was settled (a hedge loser that finished)."""
        with self.lock:
            if record.attempt in self.charged:
                return  # it made it into the settlement after all
            self.charged.add(record.attempt)
        self._off_loop(self._settle_late, [record])

    def _settle_late(self, attempts: Sequence[AttemptRecord]) -> None:
        cost, tokens = self.guard.actual_cost(attempts)
        reservation = self.reservation
        try:
            if reservation is not None and tokens:
                late_id = f"{reservation.reservation_id}:late:{attempts[0].attempt}"
                self.guard.budgets.settle(
                    replace(reservation, reservation_id=late_id), Cost(usd=cost, tokens=tokens)
                )
            if self.grant is not None and self.guard.limiter is not None and tokens:
                self.guard.limiter.adjust(RateLimitGrant(self.grant.charges, 0), tokens)
        except StateBackendError as exc:
            _log.warning("late budget charge of $%s (%d tokens) not recorded: %s", cost, tokens, exc)

    def _settle(self, attempts: Sequence[AttemptRecord]) -> None:
        cost, tokens = self.guard.actual_cost(attempts)
        try:
            if self.reservation is not None:
                self.guard.budgets.settle(self.reservation, Cost(usd=cost, tokens=tokens))
            if self.grant is not None and self.guard.limiter is not None:
                self.guard.limiter.adjust(self.grant, tokens)
        except StateBackendError as exc:
            # Without ``fail_open`` (a raw backend) the hold lapses with its lease; metering keeps the record.
            _log.warning("budget settlement of $%s (%d tokens) not recorded: %s", cost, tokens, exc)

    def release(self) -> None:
        if self.done:
            return
        self.done = True
        if self.reservation is None:
            return
        try:
            self.guard.budgets.release(self.reservation)
        except StateBackendError as exc:
            _log.warning("budget hold not released (it lapses with its lease): %s", exc)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# Settlements of async requests that end where nothing awaits (an async stream's ``finally``).
_BACKGROUND = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="switchyard-settle")


# The attempts of the request being served, collected by ``AttemptCollector`` for ``settle``.
CURRENT_ATTEMPTS: contextvars.ContextVar[list[AttemptRecord] | None] = contextvars.ContextVar(
    "switchyard_attempts", default=None
)


# Settled requests that may still see an attempt end (hedged ones): id(attempt list) -> (list, admission).
_LATE: collections.OrderedDict[int, tuple[list[AttemptRecord], Admission]] = collections.OrderedDict()
_LATE_CAPACITY = 10_000
_LATE_LOCK = threading.Lock()


def _expect_late(attempts: list[AttemptRecord], admission: Admission) -> None:
    with _LATE_LOCK:
        _LATE[id(attempts)] = (attempts, admission)
        while len(_LATE) > _LATE_CAPACITY:
            _LATE.popitem(last=False)


class AttemptCollector:
    """An observer that hands each attempt to the request it belongs to (through a context variable);
    an attempt that ends after its request was settled is charged to its budgets then."""

    def attempt_finished(self, record: AttemptRecord) -> None:
        records = CURRENT_ATTEMPTS.get()
        if records is None:
            return
        records.append(record)
        with _LATE_LOCK:
            found = _LATE.get(id(records))
            if found is not None and found[0] is records:
                del _LATE[id(records)]
            else:
                found = None
        if found is not None:
            found[1].late(record)


class Guard:
    def __init__(self, policy: Policy, backend: StateBackend) -> None:
        self.policy = policy
        self.backend = backend
        budgets = [_budget(name, b) for name, b in policy.budgets.items()]
        self.budgets = Budgets(backend, budgets, lease_s=policy.state.lease_s)
        limits = [limit for name, r in policy.rate_limits.items() for limit in _limits(name, r)]
        fail_open = FailOpen.of(policy.state.fail_open).rate_limits
        self.limiter = RateLimiter(backend, limits, fail_open=fail_open) if limits else None
        self._cheaper = any(b.on_exceed == "cheaper" for b in policy.budgets.values())
        self._specs: dict[str, ModelSpec] = {}
        self._ceiling: tuple[Decimal, Decimal] | None = None
        self._lock = threading.Lock()
        self.outputs = ObservedOutputs(backend)  # a request without max_tokens: its route's p99 output

    def admit(
        self, req: ChatRequest, plan: Plan, subject: Subject, prompt_tokens: int
    ) -> tuple[Admission, Plan]:
        """Charge the rate limits and reserve the worst case; may narrow the plan to cheaper candidates."""
        max_output = req.max_output_tokens
        if self.limiter is None and not self.budgets.budgets:  # nothing to hold (a reloadable policy's)
            return self._unheld(plan, max_output)
        grant = None
        if self.limiter is not None:
            grant = self.limiter.acquire(subject, prompt_tokens + (max_output or 0))
        candidates = list(plan.candidates)
        while True:
            worst = self._plan_worst(candidates, prompt_tokens, max_output, plan)
            try:
                reservation = self.budgets.reserve(subject, worst) if self.budgets.budgets else None
            except BudgetExceededError as refused:
                self._narrow(candidates, prompt_tokens, max_output, plan, refused)
                continue
            return self._admitted(reservation, grant, plan, candidates, max_output)

    async def aadmit(
        self, req: ChatRequest, plan: Plan, subject: Subject, prompt_tokens: int
    ) -> tuple[Admission, Plan]:
        """:meth:`admit` on an event loop, which it never blocks (``redis.asyncio`` for Redis)."""
        max_output = req.max_output_tokens
        if self.limiter is None and not self.budgets.budgets:
            return self._unheld(plan, max_output)
        grant = None
        if self.limiter is not None:
            grant = await self.limiter.aacquire(subject, prompt_tokens + (max_output or 0))
        candidates = list(plan.candidates)
        while True:
            # The usage store is read at most once a minute for the observed outputs: off the loop.
            worst = await asyncio.to_thread(self._plan_worst, candidates, prompt_tokens, max_output, plan)
            try:
                reservation = await self.budgets.areserve(subject, worst) if self.budgets.budgets else None
            except BudgetExceededError as refused:
                self._narrow(candidates, prompt_tokens, max_output, plan, refused)
                continue
            return self._admitted(reservation, grant, plan, candidates, max_output)

    def _plan_worst(
        self, candidates: Sequence[Candidate], prompt_tokens: int, max_output: int | None, plan: Plan
    ) -> Cost:
        costs = [self._worst_case(c.name, prompt_tokens, max_output, plan.route) for c in candidates]
        return _worst_of(costs, hedged=plan.hedge is not None)

    def _narrow(
        self,
        candidates: list[Candidate],
        prompt_tokens: int,
        max_output: int | None,
        plan: Plan,
        refused: BudgetExceededError,
    ) -> None:
        """After a refusal: drop the dearest candidate (``on_exceed: cheaper``), or raise the refusal."""
        if not self._cheaper or len(candidates) == 1:
            raise refused
        dearest = max(
            candidates, key=lambda c: self._worst_case(c.name, prompt_tokens, max_output, plan.route).usd
        )
        candidates.remove(dearest)

    def _admitted(
        self,
        reservation: BudgetReservation | None,
        grant: RateLimitGrant | None,
        plan: Plan,
        candidates: list[Candidate],
        max_output: int | None,
    ) -> tuple[Admission, Plan]:
        # The output each candidate's reservation assumed: what a body cut after a success status is
        # charged (gateway/metering/cut_body.py). The observed bound was just read: no I/O here.
        ceilings = {c.name: self.output_ceiling(c.name, max_output, plan.route) for c in candidates}
        narrowed = plan if len(candidates) == len(plan.candidates) else replace(plan, candidates=candidates)
        narrowed.output_ceilings = ceilings  # the request's own plan (the planner makes one per request)
        return Admission(self, reservation, grant, narrowed), narrowed

    def _unheld(self, plan: Plan, max_output: int | None) -> tuple[Admission, Plan]:
        """No budget or rate limit to hold: a cut body is charged ``max_tokens`` or the model's
        maximum output, looked up only if a body is cut (no usage store is read for it)."""
        plan.output_ceilings = _ModelMaxima(self, max_output, plan.candidates)  # the request's own plan
        return Admission(self, None, None, plan), plan

    def blocks(self) -> bool:
        """Whether admitting and settling may wait on I/O (limits or budgets on a shared backend): the
        async core then calls them in a worker thread; otherwise inline, sparing a thread hop a request."""
        has_holds = self.limiter is not None or bool(self.budgets.budgets)
        return has_holds and not isinstance(self.backend, MemoryBackend)

    def _worst_case(
        self, model: str, prompt_tokens: int, max_output: int | None, route: str | None = None
    ) -> Cost:
        """The prompt plus the model's output ceiling (:meth:`output_ceiling`), at its prices."""
        spec = self._spec(model)
        output = self.output_ceiling(model, max_output, route)
        price_in, _, price_out = self._prices(spec)
        usd = (prompt_tokens * price_in + output * price_out) / _MILLION
        return Cost(usd=usd, tokens=prompt_tokens + output)

    def output_ceiling(
        self, model: str, max_output: int | None, route: str | None, *, observed: bool = True
    ) -> int:
        """The completion tokens a request reserves on ``model``: ``max_tokens``; without it, the
        route's observed p99 output for the model (``ObservedOutputs``, when ``observed``), capped by
        the model's maximum output, else that maximum (``DEFAULT_WORST_OUTPUT`` when unknown)."""
        if max_output is not None:
            return max_output
        cap = output_cap(self._spec(model))
        bound = self.outputs.bound(route, model) if observed else None
        return cap if bound is None else min(bound, cap)

    def actual_cost(self, attempts: Sequence[AttemptRecord]) -> tuple[Decimal, int]:
        """What every attempt that consumed tokens cost, in USD and tokens (an unpriced model at the ceiling)."""
        from gateway.metering.pricing import usage_cost

        usd, tokens = Decimal(0), 0
        for record in attempts:
            usage = record.usage
            if usage is None:
                continue
            tokens += usage.total_tokens
            usd += usage_cost(self._price(self._spec(record.candidate.name)), usage)
        return usd, tokens

    def _price(self, spec: ModelSpec | None) -> ModelPrice:
        """The model's price, as metering prices it; the ceiling's for an unpriced model."""
        from gateway.metering.pricing import CLAUDE_CACHE_WRITE, ModelPrice

        price = ModelPrice.from_spec(spec) if spec is not None else None
        if price is None:
            ceiling_in, ceiling_out = self.ceiling()
            write, write_1h = (ceiling_in * factor for factor in CLAUDE_CACHE_WRITE)
            return ModelPrice(ceiling_in, ceiling_out, ceiling_in, None, write, write_1h)
        return price

    def _prices(self, spec: ModelSpec | None) -> tuple[Decimal, Decimal, Decimal]:
        """(input, cached input, output) USD per 1M tokens; the ceiling's for an unpriced model."""
        price = self._price(spec)
        cached = price.cached_input if price.cached_input is not None else price.input
        return price.input, cached, price.output

    def ceiling(self) -> tuple[Decimal, Decimal]:
        """The dearest input and output prices the policy and the catalog know: an unpriced model's."""
        if self._ceiling is None:
            from gateway.catalog import load_catalog
            from gateway.policy import policy_index

            specs = [*load_catalog().models.values(), *policy_index(self.policy).models.values()]
            inputs = [s.input_price for s in specs if s.input_price is not None]
            outputs = [s.output_price for s in specs if s.output_price is not None]
            self._ceiling = (
                max(inputs, default=UNPRICED_CEILING[0]),
                max(outputs, default=UNPRICED_CEILING[1]),
            )
        return self._ceiling

    def _spec(self, model: str) -> ModelSpec | None:
        with self._lock:
            if model in self._specs:
                return self._specs[model]
        from gateway.catalog_prices import maintained_price
        from gateway.core.errors import PolicyError
        from gateway.policy.targets import resolve_target_config

        try:
            spec: ModelSpec | None = resolve_target_config(self.policy, model)[1]
        except PolicyError:
            spec = None
        if spec is not None and not spec.has_price:
            spec = maintained_price(spec) or spec  # a model the catalog lacks, priced by genai-prices
        with self._lock:
            self._specs[model] = spec  # type: ignore[assignment]
        return spec


class FollowingGuard:
    """A ``Guard`` that follows a hot-reloaded policy: ``source()`` returns the policy in force.

    When the policy object changes (``PolicyWatcher`` swaps it on reload), the next request gets a
    ``Guard`` built from the new one: its budgets, rate limits and prices. Each admission keeps the
    ``Guard`` it was admitted by, so a request is reserved and settled under one policy version.
    Spend and rate-limit buckets live in the state backend under the budget's and limit's names, so
    a budget that keeps its name keeps what was spent in its window.

    Args:
        source: Returns the policy in force (``PolicyWatcher.current``); called once per request.
        backend: The state backend every version shares.
    """

    def __init__(self, source: Callable[[], Policy], backend: StateBackend) -> None:
        self._source = source
        self.backend = backend
        self._guard = Guard(source(), backend)
        self._lock = threading.Lock()

    def current(self) -> Guard:
        """The guard of the policy in force now."""
        policy = self._source()
        guard = self._guard
        if policy is guard.policy:
            return guard
        with self._lock:
            if self._guard.policy is not policy:
                self._guard = Guard(policy, self.backend)
            return self._guard

    @property
    def policy(self) -> Policy:
        return self.current().policy

    @property
    def budgets(self) -> Budgets:
        return self.current().budgets

    @property
    def limiter(self) -> RateLimiter | None:
        return self.current().limiter

    def admit(
        self, req: ChatRequest, plan: Plan, subject: Subject, prompt_tokens: int
    ) -> tuple[Admission, Plan]:
        """``Guard.admit`` under the policy in force."""
        return self.current().admit(req, plan, subject, prompt_tokens)

    async def aadmit(
        self, req: ChatRequest, plan: Plan, subject: Subject, prompt_tokens: int
    ) -> tuple[Admission, Plan]:
        """``Guard.aadmit`` under the policy in force."""
        return await self.current().aadmit(req, plan, subject, prompt_tokens)

    def actual_cost(self, attempts: Sequence[AttemptRecord]) -> tuple[Decimal, int]:
        return self.current().actual_cost(attempts)

    def blocks(self) -> bool:
        return self.current().blocks()

    def ceiling(self) -> tuple[Decimal, Decimal]:
        return self.current().ceiling()


def output_cap(spec: ModelSpec | None) -> int:
    """A model's maximum output tokens as its spec gives it, else ``DEFAULT_WORST_OUTPUT``."""
    return spec.max_output if spec is not None and spec.max_output else DEFAULT_WORST_OUTPUT


class _ModelMaxima(Mapping[str, int]):
    """The output ceilings of a plan that holds nothing, computed on first look (most never are)."""

    def __init__(self, guard: Guard, max_output: int | None, candidates: Sequence[Candidate]) -> None:
        self._guard, self._max_output, self._names = guard, max_output, [c.name for c in candidates]

    def __getitem__(self, name: str) -> int:
        if name not in self._names:
            raise KeyError(name)
        return self._guard.output_ceiling(name, self._max_output, None, observed=False)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def _worst_of(costs: Sequence[Cost], *, hedged: bool) -> Cost:
    """The most one request can cost: its dearest candidate; with a hedge, its two dearest (the
    first attempt and its hedge may both run to the end, and both are charged)."""
    taken = 2 if hedged and len(costs) > 1 else 1
    usd = sum(sorted((c.usd for c in costs), reverse=True)[:taken], Decimal(0))
    tokens = sum(sorted((c.tokens for c in costs), reverse=True)[:taken])
    return Cost(usd=usd, tokens=tokens)


def _budget(name: str, budget: PolicyBudget) -> Budget:
    match = tuple((field, value) for field, value in budget.match.model_dump().items() if value is not None)
    if budget.limit_usd is not None:
        return Budget(name, budget.limit_usd, "usd", budget.window, "global", match)
    return Budget(name, int(budget.limit_tokens or 0), "tokens", budget.window, "global", match)


def _limits(name: str, limit: PolicyRateLimit) -> list[RateLimit]:
    match = tuple((field, value) for field, value in limit.match.model_dump().items() if value is not None)
    out = []
    if limit.rpm is not None:
        burst = float(limit.burst if limit.burst is not None else limit.rpm)
        out.append(RateLimit(f"{name}.rpm", limit.rpm / 60.0, burst, "requests", "global", match))
    if limit.tpm is not None:
        burst = float(limit.burst if limit.burst is not None else limit.tpm)
        out.append(RateLimit(f"{name}.tpm", limit.tpm / 60.0, max(burst, 1.0), "tokens", "global", match))
    return out
