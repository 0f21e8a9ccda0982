"""Shadow copies: a sampled share of a route's requests sent again, in the background, to another model.

A route with ``shadow: {candidate: X, share: 0.05}`` copies about that share of its admitted chat
requests to ``X``. The copy is sent unstreamed, after the caller's own request was admitted, from a
daemon thread (the blocking client) or a task on the caller's event loop (the asyncio client), so
it never delays the caller and its answer is never returned. Its attempts are observed like any
other (metering, live statistics, breakers, telemetry) under the route ``shadow:<route>``: its
usage is its own line in ``switchyard usage --by route``, and ``switchyard replay`` leaves it out.

Budgets and rate limits admit the copy as a request of route ``shadow:<route>`` (same team, key
and user as the caller's): a budget with ``match: {route: "shadow:support"}`` caps the shadow's
spend, one with ``match: {route: support}`` is not charged for it, and one that matches every
route counts it, as the money is spent. A copy refused by them is not sent, and is counted.

At most ``MAX_IN_FLIGHT`` copies run at once per client; a sampled copy beyond that is skipped and
counted (``Shadows.stats``), as are copies that are refused or fail.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import threading
from dataclasses import dataclass, replace
from typing import Any

from gateway._redact import redact
from gateway.core.errors import RateLimitError
from gateway.guard import CURRENT_ATTEMPTS

__all__ = ["MAX_IN_FLIGHT", "SHADOW_ROUTE_PREFIX", "ShadowStats", "Shadows"]

logger = logging.getLogger("gateway.shadow")

MAX_IN_FLIGHT = 4
SHADOW_ROUTE_PREFIX = "shadow:"


@dataclass(frozen=True, slots=True)
class ShadowStats:
    """What one client's shadow copies did: sent (started), answered, failed, refused (by a budget
    or rate limit of ``shadow:<route>``), and skipped (too many running)."""

    sent: int
    answered: int
    failed: int
    skipped: int
    refused: int = 0


class Shadows:
    """The shadow copies of one core (``CoreBase.shadow`` calls :meth:`maybe_copy`)."""

    def __init__(self, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._counts = {"sent": 0, "answered": 0, "failed": 0, "skipped": 0, "refused": 0}
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until each task ends

    def stats(self) -> ShadowStats:
        with self._lock:
            return ShadowStats(**self._counts)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def maybe_copy(self, core: Any, prepared: Any) -> bool:
        """Send a copy of ``prepared`` when its route has a ``shadow`` and the draw says so; whether
        one was sent. With the route's ``capture:`` section both answers are kept, paired, for
        ``switchyard eval shadow``."""
        route_name = prepared.plan.route
        policy = core.planner.policy
        route = policy.routes.get(route_name) if policy is not None and route_name else None
        shadow = route.shadow if route is not None else None
        if shadow is None or core.planner.rng.random() >= shadow.share:
            return False
        if not self._slots.acquire(blocking=False):
            self._count("skipped")
            return False
        try:
            req = prepared.req.model_copy(
                update={"model": shadow.candidate, "stream": None, "stream_options": None}
            )
            plan = replace(core.planner.plan(shadow.candidate, req), route=SHADOW_ROUTE_PREFIX + route_name)
            copy = replace(prepared, req=req, plan=plan, headers=dict(prepared.headers), held=None)
            call = (core, copy)
            if inspect.iscoroutinefunction(core.executor.complete):
                # A fresh context: the caller's context variables (its attempt collector for budget
                # settlement, its stream metering) must not see the copy's attempts.
                task = asyncio.get_running_loop().create_task(
                    self._acall(*call), context=contextvars.Context()
                )
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            else:
                threading.Thread(target=self._call, args=call, name="switchyard-shadow", daemon=True).start()
        except Exception as exc:  # noqa: BLE001 - a copy that cannot start is counted, never the caller's error
            self._slots.release()
            self._failed(shadow.candidate, exc)
            return False
        self._count("sent")
        return True

    def _call(self, core: Any, copy: Any) -> None:
        try:
            try:
                admission = core.admit(copy)  # budgets and rate limits of route shadow:<route>
            except RateLimitError as exc:  # a budget refusal is one too
                self._refused(copy.req.model, exc)
                return
            records: list[Any] = []
            token = CURRENT_ATTEMPTS.set(records)  # this thread's context: the copy's attempts only
            try:
                reply = core.executor.complete(
                    copy.req, copy.plan, headers=copy.headers, timeout=copy.timeout
                )
            finally:
                CURRENT_ATTEMPTS.reset(token)
                if admission is not None:
                    admission.settle(records)
            self._count("answered")
            _keep(core, copy, reply)
        except Exception as exc:  # noqa: BLE001 - the copy's failure is counted and logged
            self._failed(copy.req.model, exc)
        finally:
            self._slots.release()

    async def _acall(self, core: Any, copy: Any) -> None:
        try:
            try:
                admission = await core.aadmit(copy)
            except RateLimitError as exc:
                self._refused(copy.req.model, exc)
                return
            records: list[Any] = []
            CURRENT_ATTEMPTS.set(records)  # the task runs in a context of its own
            try:
                reply = await core.executor.complete(
                    copy.req, copy.plan, headers=copy.headers, timeout=copy.timeout
                )
            finally:
                if admission is not None:
                    await asyncio.to_thread(admission.settle, records)
            self._count("answered")
            _keep(core, copy, reply)
        except Exception as exc:  # noqa: BLE001 - the copy's failure is counted and logged
            self._failed(copy.req.model, exc)
        finally:
            self._slots.release()

    def _refused(self, model: str, exc: BaseException) -> None:
        self._count("refused")
        logger.info("shadow copy to %s refused (%s: %s)", model, type(exc).__name__, redact(str(exc)))

    def _failed(self, model: str, exc: BaseException) -> None:
        self._count("failed")
        logger.info("shadow copy to %s failed (%s: %s)", model, type(exc).__name__, redact(str(exc)))


def _keep(core: Any, copy: Any, reply: Any) -> None:
    """The copy's answer, kept beside its request's when the route captures (``gateway/capture``)."""
    capture = getattr(core.runtime, "capture", None)
    if capture is not None:
        route = copy.plan.route.removeprefix(SHADOW_ROUTE_PREFIX)
        capture.record_shadow(copy.request_id, route, copy.req, reply)
