"""One request's way through its plan: the decisions both request loops share, with no I/O.

``RequestRun`` keeps what one request has done (attempt records, skipped candidates, its deadline)
and answers the loop's three questions: may this candidate be tried now (``admit``), what happens
after a failure (``after_failure``: retry after a delay, or move on, or stop), and what to raise
at the end (``error``). Every attempt is reported to the observer exactly once, in ``finish``;
an observer with an ``attempt_started(candidate)`` method also hears when each admitted attempt
starts (``gateway.stats.InFlight`` counts attempts in flight that way).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.core.attempts import (
    AttemptRecord,
    Candidate,
    Observer,
    Outcome,
    Plan,
    Skip,
    error_class,
    final_error,
    gateway_info,
    is_deployment_fault,
    may_fall_back,
    request_parameters,
)
from gateway.core.errors import APIError, APIStatusError, APITimeoutError, StateBackendError
from gateway.core.types import ChatRequest, GatewayInfo
from gateway.resilience.deadline import Deadline, attempt_timeout
from gateway.resilience.retry import RetrySettings, error_headers, retry_delay, should_retry

if TYPE_CHECKING:
    from gateway.resilience.breaker import BreakerDecision, Breakers
    from gateway.resilience.hedge import TTFTWindow

logger = logging.getLogger("gateway.resilience")

RETRY = "retry"
NEXT = "next"
STOP = "stop"


@dataclass(frozen=True, slots=True)
class Move:
    """What the loop does after a failed attempt: ``retry`` (after ``delay``), ``next`` or ``stop``."""

    action: str
    delay: float = 0.0


@dataclass(slots=True)
class Resilience:
    """What an executor brings to every run: the observer, default retries, breakers, TTFT window."""

    observer: Observer
    retry: RetrySettings
    breakers: Breakers | None = None
    ttft: TTFTWindow | None = None


class RequestRun:
    """The state of one request across its attempts."""

    __slots__ = (
        "_finishing",
        "auth_failed",
        "deadline",
        "min_window",
        "params",
        "plan",
        "probes",
        "records",
        "req",
        "request_id",
        "res",
        "skipped",
        "started",
    )

    def __init__(
        self,
        res: Resilience,
        plan: Plan,
        req: ChatRequest | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.res = res
        self.plan = plan
        self.req = req
        self.request_id = uuid.uuid4().hex
        self.started = time.perf_counter()
        self.records: list[AttemptRecord] = []
        self._finishing = threading.Lock()
        self.skipped: list[Skip] = []
        timeouts = plan.timeouts
        self.deadline = Deadline(timeouts.total_s if timeouts is not None else None, clock)
        self.min_window = 0
        self.auth_failed: set[str] = set()
        self.probes: set[int] = set()  # ids of attempts that are a half-open probe
        self.params = request_parameters(req)  # shared by its attempt records, never mutated

    # --- before an attempt ----------------------------------------------------------------------

    def retry_settings(self, candidate: Candidate) -> RetrySettings:
        return candidate.retry if candidate.retry is not None else self.res.retry

    def max_retries(self, candidate: Candidate) -> int:
        if candidate.max_retries is not None:
            return candidate.max_retries
        return self.retry_settings(candidate).max_retries

    def out_of_time(self) -> bool:
        """The total deadline passed: no further attempt at all."""
        return self.deadline.expired()

    def _tried_enough(self, candidate: Candidate) -> bool:
        cap = self.plan.max_candidates
        if cap is None:
            return False
        tried = {r.candidate.name for r in self.records}
        return candidate.name not in tried and len(tried) >= cap

    def admit(self, candidate: Candidate, first: bool) -> bool | None:
        """May ``candidate`` be tried now? ``None`` when nothing more may be tried at all.

        On the candidate's first attempt: skip it when its window is known to be too small after a
        context-length error, or its provider refused our credentials. On every attempt: ask its
        breaker (an open breaker skips it, and says why in ``reply.gateway.attempts``).
        """
        ready = self._before_breaker(candidate, first)
        if ready is not True:
            return ready
        breakers = self.res.breakers
        return self._after_breaker(
            candidate, breakers.allow(candidate.name) if breakers is not None else None
        )

    async def aadmit(self, candidate: Candidate, first: bool) -> bool | None:
        """:meth:`admit` on an event loop: the breaker is asked without blocking the loop."""
        ready = self._before_breaker(candidate, first)
        if ready is not True:
            return ready
        breakers = self.res.breakers
        decision = await breakers.aallow(candidate.name) if breakers is not None else None
        return self._after_breaker(candidate, decision)

    def _before_breaker(self, candidate: Candidate, first: bool) -> bool | None:
        if self.out_of_time() or (first and self._tried_enough(candidate)):
            return None
        if first:
            reason = self._unfit(candidate)
            if reason is not None:
                self.skipped.append(Skip(candidate, reason))
                return False
        return True

    def _after_breaker(self, candidate: Candidate, decision: BreakerDecision | None) -> bool:
        if decision is not None:
            if not decision.allowed:
                self.skipped.append(Skip(candidate, decision.reason))
                return False
            if decision.probe:
                self.probes.add(len(self.records))
        started = getattr(self.res.observer, "attempt_started", None)
        if started is not None:
            started(candidate)
        return True

    def _unfit(self, candidate: Candidate) -> str | None:
        window = candidate.context_window
        if window is not None and window < self.min_window:
            return f"context window {window} is smaller than the {self.min_window} tokens needed"
        if candidate.target.provider in self.auth_failed:
            return f"provider {candidate.target.provider!r} refused our credentials"
        return None

    def timeout(self, base: Any, *, stream: bool, sync: bool) -> Any:
        return attempt_timeout(base, self.plan.timeouts, self.deadline, stream=stream, sync=sync)

    # --- after an attempt -----------------------------------------------------------------------

    def finish(
        self, candidate: Candidate, t0: float, error: APIError | None, outcome: Outcome | None = None
    ) -> AttemptRecord:
        """Record one attempt: the observer (once), the breaker and the TTFT window hear of it."""
        if outcome is None and error is not None and error.answered_status is not None:
            from gateway.metering.cut_body import cut_body_outcome

            outcome = cut_body_outcome(self.req, candidate, self.plan)
        o = outcome or Outcome()
        with self._finishing:  # a blocking hedge records its two attempts from two threads
            index = len(self.records)
            status = error.status_code if isinstance(error, APIStatusError) else None
            name = o.outcome or ("ok" if error is None else type(error).__name__)
            req = self.req
            record = AttemptRecord(
                request_id=self.request_id,
                attempt=index,
                candidate=candidate,
                route=self.plan.route,
                started=t0,
                duration_s=time.perf_counter() - t0,
                ttft_s=o.ttft_s,
                outcome=name,
                status_code=status if status is not None else (200 if error is None else None),
                usage=o.usage,
                usage_estimated=o.estimated,
                streamed_text=o.streamed_text,
                metadata=dict(req.metadata or {}) if req is not None else {},
                user=req.user if req is not None else None,
                error=error,
                response_id=o.response_id,
                response_model=o.response_model,
                finish_reasons=o.finish_reasons,
                request_params=self.params,
                request_messages=req.messages if req is not None else None,
                reply_text=o.reply_text,
                policy_revision=self.plan.policy_revision,
            )
            self.records.append(record)
        self._tell_breaker(candidate, index, error, name)
        if error is None and name == "ok" and self.res.ttft is not None:
            self.res.ttft.observe(candidate.name, o.ttft_s if o.ttft_s is not None else record.duration_s)
        self.res.observer.attempt_finished(record)
        return record

    def _tell_breaker(self, candidate: Candidate, index: int, error: APIError | None, outcome: str) -> None:
        breakers = self.res.breakers
        probe = index in self.probes
        if breakers is None or outcome in ("closed", "cancelled"):
            return
        ok = error is None or not is_deployment_fault(error)
        if breakers.blocking and _on_event_loop():  # never wait on the state backend on the loop
            task = asyncio.ensure_future(breakers.arecord(candidate.name, ok, probe=probe))
            _RECORDING.add(task)
            task.add_done_callback(_recorded)
            return
        try:
            breakers.record(candidate.name, ok, probe=probe)
        except StateBackendError as exc:  # the attempt happened; its outcome must not be lost to it
            logger.warning("breaker of %s did not record this attempt: %s", candidate.name, exc)

    def after_failure(self, candidate: Candidate, retries: int, error: APIError) -> Move:
        """Retry the candidate (after a delay), move on to the next one, or stop."""
        kind = error_class(error)
        if kind == "auth":
            self._auth_failed(candidate, error)
        if kind == "context_length":
            window = candidate.context_window or 0
            self.min_window = max(self.min_window, window + 1, self.plan.prompt_tokens or 0)
        if self.out_of_time():
            return Move(STOP)
        if retries < self.max_retries(candidate) and should_retry(error):
            delay = retry_delay(retries, error_headers(error), self.retry_settings(candidate))
            if self.deadline.allows_sleep(delay):
                return Move(RETRY, delay)
        return Move(NEXT) if may_fall_back(error, self.plan) else Move(STOP)

    def _auth_failed(self, candidate: Candidate, error: APIError) -> None:
        provider = candidate.target.provider
        self.auth_failed.add(provider)
        status = error.status_code if isinstance(error, APIStatusError) else None
        logger.warning(
            "provider %r refused the credentials for %s (%s, status %s): check its API key; "
            "falling through to other providers",
            provider,
            candidate.name,
            type(error).__name__,
            status,
        )

    # --- the end --------------------------------------------------------------------------------

    def info(self, served: AttemptRecord) -> GatewayInfo:
        return gateway_info(self.plan, served, self.records, self.started, self.skipped)

    def error(self) -> APIError:
        """The request's final error; the observer hears the request is over (its span ends now)."""
        if not self.records and not self.skipped:
            error: APIError = APITimeoutError(
                message="Request timed out: the total deadline passed before any attempt."
            )
        else:
            error = final_error(self.records, self.plan, self.skipped)
        finished = getattr(self.res.observer, "request_finished", None)
        if finished is not None:
            finished(self.request_id, error)
        return error


_RECORDING: set[asyncio.Future[Any]] = set()  # breaker records in flight from event loops


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _recorded(task: asyncio.Future[Any]) -> None:
    _RECORDING.discard(task)
    if task.cancelled():
        return
    error = task.exception()
    if error is not None:
        logger.warning("a breaker did not record an attempt: %s", error)
