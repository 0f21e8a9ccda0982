"""Shadow copies: a sampled share of a route's requests sent again, in the background, to another model.

A route with ``shadow: {candidate: X, share: 0.05}`` copies about that share of its admitted chat
requests to ``X``. The copy is sent unstreamed, after the caller's own request was admitted, from a
daemon thread (the blocking client) or a task on the caller's event loop (the asyncio client), so
it never delays the caller and its answer is never returned. Its attempts are observed like any
other (metering, live statistics, breakers, telemetry) under the route ``shadow:<route>``: its
usage is its own line in ``switchyard usage --by route``, ``switchyard replay`` leaves it out, and
the route's budgets are neither checked nor charged for it.

At most ``MAX_IN_FLIGHT`` copies run at once per client; a sampled copy beyond that is skipped and
counted (``Shadows.stats``), as are copies that fail.
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

__all__ = ["MAX_IN_FLIGHT", "SHADOW_ROUTE_PREFIX", "ShadowStats", "Shadows"]

logger = logging.getLogger("gateway.shadow")

MAX_IN_FLIGHT = 4
SHADOW_ROUTE_PREFIX = "shadow:"


@dataclass(frozen=True, slots=True)
class ShadowStats:
    """What one client's shadow copies did: sent, answered, failed, and skipped (too many running)."""

    sent: int
    answered: int
    failed: int
    skipped: int


class Shadows:
    """The shadow copies of one core (``CoreBase.shadow`` calls :meth:`maybe_copy`)."""

    def __init__(self, max_in_flight: int = MAX_IN_FLIGHT) -> None:
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._lock = threading.Lock()
        self._counts = {"sent": 0, "answered": 0, "failed": 0, "skipped": 0}
        self._tasks: set[asyncio.Task[None]] = set()  # strong references until each task ends

    def stats(self) -> ShadowStats:
        with self._lock:
            return ShadowStats(**self._counts)

    def _count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def maybe_copy(self, core: Any, prepared: Any) -> None:
        """Send a copy of ``prepared`` when its route has a ``shadow`` and the draw says so."""
        route_name = prepared.plan.route
        policy = core.planner.policy
        route = policy.routes.get(route_name) if policy is not None and route_name else None
        shadow = route.shadow if route is not None else None
        if shadow is None or core.planner.rng.random() >= shadow.share:
            return
        if not self._slots.acquire(blocking=False):
            self._count("skipped")
            return
        try:
            req = prepared.req.model_copy(
                update={"model": shadow.candidate, "stream": None, "stream_options": None}
            )
            plan = replace(core.planner.plan(shadow.candidate, req), route=SHADOW_ROUTE_PREFIX + route_name)
            call = (core.executor, req, plan, dict(prepared.headers), prepared.timeout)
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
            return
        self._count("sent")

    def _call(self, executor: Any, req: Any, plan: Any, headers: dict[str, str], timeout: Any) -> None:
        try:
            executor.complete(req, plan, headers=headers, timeout=timeout)
            self._count("answered")
        except Exception as exc:  # noqa: BLE001 - the copy's failure is counted and logged
            self._failed(req.model, exc)
        finally:
            self._slots.release()

    async def _acall(self, executor: Any, req: Any, plan: Any, headers: dict[str, str], timeout: Any) -> None:
        try:
            await executor.complete(req, plan, headers=headers, timeout=timeout)
            self._count("answered")
        except Exception as exc:  # noqa: BLE001 - the copy's failure is counted and logged
            self._failed(req.model, exc)
        finally:
            self._slots.release()

    def _failed(self, model: str, exc: BaseException) -> None:
        self._count("failed")
        logger.info("shadow copy to %s failed (%s: %s)", model, type(exc).__name__, redact(str(exc)))
