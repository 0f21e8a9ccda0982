"""What a policy switches on around the request loop, built once per client.

- the state backend of ``state`` (memory by default; SQLite or Redis to share with other processes);
- live statistics that feed the router (``gateway/stats.py``), with the attempts in flight per
  deployment in this process (``InFlight``, which wraps the observer);
- metering: a ``Meter`` writing one priced usage record per attempt to that backend;
- telemetry: OpenTelemetry spans and metrics (no-ops until an SDK provider is configured);
- circuit breakers per deployment, in the state backend (shared by every process using it);
- the ``Guard`` for budgets and rate limits, when the policy declares any; for a policy file (hot
  reload), a ``FollowingGuard`` and a price table that follow the policy in force.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.core.attempts import Observer

if TYPE_CHECKING:
    from gateway.guard import FollowingGuard, Guard
    from gateway.metering import Meter
    from gateway.policy import Policy
    from gateway.resilience.breaker import Breakers
    from gateway.state.base import StateBackend
    from gateway.stats import LiveStats


@dataclass(slots=True)
class Runtime:
    policy: Callable[[], Policy] | Policy
    observer: Observer
    stats: LiveStats
    meter: Meter
    backend: StateBackend
    guard: Guard | FollowingGuard | None
    evals: Callable[[str | None], Any]
    breakers: Breakers

    eval_store: StateBackend | None = None  # the default eval file, when it is not ``backend``
    capture: Any = None  # gateway.capture.Capture, when a route has a ``capture:`` section

    def close(self) -> None:
        self.meter.close()
        self.stats.close()  # its sharing thread writes to the backend
        self.backend.close()
        if self.eval_store is not None:
            self.eval_store.close()
        if self.capture is not None:
            self.capture.close()


def build_runtime(policy: Any, user_observer: Observer | None) -> Runtime:
    from gateway.evals.store import EvalScores, EvalStore
    from gateway.guard import AttemptCollector, FollowingGuard, Guard
    from gateway.metering import Meter, ObserverGroup, StateSink
    from gateway.metering.pricing import policy_prices
    from gateway.resilience.breaker import Breakers, PolicyBreakerSettings
    from gateway.state.live import LiveBoard
    from gateway.stats import InFlight, LiveStats
    from gateway.telemetry import Telemetry

    source = _policy_source(policy)
    current = source() if callable(source) else source
    backend = open_state(current)
    # per deployment, shared by every process on this state backend; settings from models.<name>.breaker
    breakers = Breakers(backend, per_deployment=PolicyBreakerSettings(source))
    in_flight = InFlight()  # attempts in flight per deployment in this process (balance: least_busy)
    stats = LiveStats(
        breakers=breakers.open_breakers,
        local_load=local_engine_load,
        in_flight=in_flight.counts,
        board=LiveBoard.for_state(current.state),  # SQLite/Redis: shared across processes
    )
    # A policy file is hot-reloaded: prices, budgets and rate limits follow it, like the routes.
    meter = Meter(StateSink(backend), prices=policy_prices(source))
    telemetry = Telemetry.from_policy(current)
    guard: Guard | FollowingGuard | None = None
    if callable(source):
        guard = FollowingGuard(source, backend)
    elif current.budgets or current.rate_limits:
        guard = Guard(current, backend)
    observers: list[Observer] = [stats, meter, telemetry, AttemptCollector()]
    if user_observer is not None:
        observers.append(user_observer)
    scores = eval_backend(current, backend)
    # a route's quality: its eval scores, re-read every policy evals.refresh_s (hot reload applies)
    evals = EvalScores(EvalStore(scores), settings=source if callable(source) else lambda: current)
    extra = scores if scores is not backend else None
    in_flight.inner = ObserverGroup(*observers)  # it hears each record first, then passes it on
    runtime = Runtime(source, in_flight, stats, meter, backend, guard, evals, breakers, extra)
    if any(route.capture is not None for route in current.routes.values()):
        from gateway.capture import Capture

        runtime.capture = Capture(source)
    return runtime


def eval_backend(policy: Policy, backend: StateBackend) -> StateBackend:
    """Where ``switchyard eval run`` stores scores: the policy's SQLite/Redis state, else the default
    file (read only if it exists: building a client creates no files)."""
    from gateway.evals.store import DEFAULT_STORE_PATH, store_config
    from gateway.state import open_backend

    if policy.state.backend != "memory" or not os.path.exists(DEFAULT_STORE_PATH):
        return backend
    return open_backend(store_config(None))  # the default file, as the eval commands open it


def local_engine_load() -> Any:
    """The in-process engine's load for the router, if a local model has been used (never loads it)."""
    import sys

    local = sys.modules.get("providers.local")
    stats = local.engine_load() if local is not None else None
    if stats is None:
        return None
    from gateway.router import LocalEngineLoad

    return LocalEngineLoad(
        queue_depth=getattr(stats, "queue_depth", 0),
        running=getattr(stats, "running", 0),
        free_blocks=getattr(stats, "free_blocks", getattr(stats, "free_slots", None)),
        tokens_per_s=getattr(stats, "tokens_per_s", None),
        max_batch=getattr(stats, "max_batch", None),
    )


def open_state(policy: Policy) -> StateBackend:
    from gateway.state import open_backend, policy_backend_config

    return open_backend(policy_backend_config(policy.state))


def _policy_source(policy: Any) -> Any:
    """A loaded ``Policy`` as is; a path as a watcher's ``current`` (hot reload, last good kept)."""
    if not isinstance(policy, str | os.PathLike):
        return policy
    from gateway.policy import PolicyWatcher  # policies are optional; load the machinery only when used

    return PolicyWatcher(policy).current
