"""Live per-model statistics for the router: counted, decayed estimates with censored failures.

``LiveStats`` is an observer: every finished attempt updates its model's estimates of time to
first token (for a non-streamed reply, its whole latency), output tokens per second and failure
rate. Each estimate is a decayed mean: before a new observation is folded in, the weight of
everything seen so far is halved every ``half_life_s`` (and capped at ``MAX_WEIGHT``), so

    mean <- (w x mean + x) / (w + 1),    w <- min(w x 0.5 ** (dt / half_life_s), MAX_WEIGHT) + 1

and ``snapshot()`` reports the weight decayed to now. The router blends a low weight with the
catalog's priors, so an estimate nobody has refreshed drifts back to the prior: a deployment that
was slow during an outage looks like its prior again a few half-lives later, wins traffic again,
and fresh observations take over (exploration probes it sooner; see ``gateway/router.py``).

A failure or timeout after ``d`` seconds without a first token is a censored observation: the
true ttft is longer than ``d``. Under an exponential model its expected value is ``d + mean``
(the mean capped at ``d``), and
that is what enters the ttft estimate; the failure also enters the failure rate. A bad request
(``BadRequestError`` and its kind: the caller's fault) says nothing about the deployment and is
ignored. Time comes from the injected ``clock``.

**Shared across processes.** Given a ``LiveBoard`` (``gateway/state/live.py``; the runtime passes
one, on a connection of its own, for a SQLite or Redis state), a daemon thread publishes this process's estimates (each mean
with its weight, decayed to now) and in-flight counts at most once per ``share_interval_s``, and
reads the other processes' in the same round. ``snapshot()`` merges them with no I/O: each remote
mean enters with its weight decayed by the time since it was published (wall clock), and the
in-flight counts add up. A fresh process thus routes on the picture the others built, within one
interval; a process that stops publishing fades out with the decay, and stops counting after
the board's TTL.

``InFlight`` counts the attempts in flight per deployment in this process, for ``balance:
least_busy``: the request loop tells it when an attempt starts (``RequestRun.admit`` calls the
observer's optional ``attempt_started``), and the attempt's record ends it. It wraps the runtime's
observer, so it hears every record first, and hands the counts to ``LiveStats(in_flight=...)``.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.core.attempts import AttemptRecord, Candidate, Observer
from gateway.router import LocalEngineLoad, ModelStats, StatsSnapshot

if TYPE_CHECKING:
    from gateway.state.live import LiveBoard

__all__ = [
    "DEFAULT_HALF_LIFE_S",
    "DEFAULT_SHARE_INTERVAL_S",
    "IN_FLIGHT_MAX_AGE_S",
    "MAX_WEIGHT",
    "InFlight",
    "LiveStats",
]

logger = logging.getLogger("gateway.stats")

DEFAULT_HALF_LIFE_S = 5.0
DEFAULT_SHARE_INTERVAL_S = 1.0  # at most one publish (and one read round) per process per second
MAX_WEIGHT = 20.0  # however long an estimate has run, a new observation moves it by at least 1/21
# An attempt whose record never came (a bug, an interrupt outside the loop's handlers) stops
# counting after this long: above the SDK's default 600 s timeout, so no live attempt is dropped.
IN_FLIGHT_MAX_AGE_S = 900.0
_CALLER_FAULTS = frozenset(
    {
        "BadRequestError",
        "UnprocessableEntityError",
        "NotFoundError",
        "ContextLengthError",
        "skipped",
        "cancelled",
    }
)
_SERVED = frozenset({"ok", "partial", "closed"})


@dataclass(slots=True)
class _Mean:
    value: float | None = None
    weight: float = 0.0
    at: float = 0.0

    def decayed(self, now: float, half_life_s: float) -> float:
        return float(self.weight * 0.5 ** (max(0.0, now - self.at) / half_life_s))

    def observe(self, x: float, now: float, half_life_s: float) -> None:
        w = min(self.decayed(now, half_life_s), MAX_WEIGHT)
        self.value = x if self.value is None else (w * self.value + x) / (w + 1)
        self.weight, self.at = w + 1, now


@dataclass(slots=True)
class _Running:
    ttft: _Mean
    speed: _Mean
    failures: _Mean
    samples: int = 0


class LiveStats:
    """The observer that keeps live estimates per model and hands the router snapshots.

    Example:
        >>> stats = LiveStats(clock=lambda: 0.0)
        >>> stats.snapshot().models
        {}
    """

    def __init__(
        self,
        *,
        breakers: Callable[[], dict[str, str]] | None = None,
        over_budget: Callable[[], frozenset[str]] | None = None,
        local_load: Callable[[], LocalEngineLoad | None] | None = None,
        in_flight: Callable[[], dict[str, int]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        half_life_s: float = DEFAULT_HALF_LIFE_S,
        board: LiveBoard | None = None,
        share_interval_s: float = DEFAULT_SHARE_INTERVAL_S,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if not half_life_s > 0:
            raise ValueError(f"LiveStats.half_life_s must be positive, got {half_life_s!r}")
        if not share_interval_s > 0:
            raise ValueError(f"LiveStats.share_interval_s must be positive, got {share_interval_s!r}")
        self._lock = threading.Lock()
        self._models: dict[str, _Running] = {}
        self._breakers = breakers
        self._over_budget = over_budget
        self._local_load = local_load
        self._in_flight = in_flight
        self.clock = clock
        self.half_life_s = half_life_s
        self.board = board
        self.share_interval_s = share_interval_s
        self.wall = wall
        self.publishes = 0  # rounds written to the board (bounded: one per share_interval_s)
        self.share_errors = 0
        # The others' published rows, summed per deployment with weights decayed to ``_synced_at``;
        # a snapshot scales them by one common factor for the time since (decay is multiplicative).
        self._remote_sums: dict[str, list[float]] = {}
        self._synced_at = 0.0
        self._last_sync: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attempt_finished(self, record: AttemptRecord) -> None:
        outcome = record.outcome
        if outcome in _CALLER_FAULTS:
            return
        now, half = self.clock(), self.half_life_s
        with self._lock:
            running = self._models.get(record.candidate.name)
            if running is None:
                running = self._models[record.candidate.name] = _Running(_Mean(), _Mean(), _Mean())
            running.samples += 1
            if outcome == "ok" or (outcome in _SERVED and record.ttft_s is not None):
                self._observe_ok(running, record, now)
                running.failures.observe(0.0, now, half)
                return
            running.failures.observe(1.0, now, half)
            if record.ttft_s is None:  # no first token after duration_s: censored
                mean = running.ttft.value if running.ttft.value is not None else record.duration_s
                # d + mean, the exponential model's E[ttft | ttft > d], with the mean capped at d so
                # a run of timeouts cannot ratchet the estimate up without bound.
                running.ttft.observe(record.duration_s + min(mean, record.duration_s), now, half)

    def _observe_ok(self, running: _Running, record: AttemptRecord, now: float) -> None:
        ttft = record.ttft_s if record.ttft_s is not None else record.duration_s
        running.ttft.observe(ttft, now, self.half_life_s)
        completion = record.usage.completion_tokens if record.usage is not None else 0
        decode_s = record.duration_s - (record.ttft_s or 0.0)
        if record.ttft_s is not None and completion > 1 and decode_s > 0:
            running.speed.observe(completion / decode_s, now, self.half_life_s)

    def export(self) -> dict[str, list[float | None]]:
        """This process's estimates per deployment, each mean with its weight decayed to now, and
        its attempts in flight: what it publishes on the board (``gateway/state/live.py``)."""
        busy = self._in_flight() if self._in_flight else {}
        now, half = self.clock(), self.half_life_s
        with self._lock:
            rows: dict[str, list[float | None]] = {
                name: [
                    *(
                        item
                        for m in (r.ttft, r.speed, r.failures)
                        for item in (m.value, m.decayed(now, half))
                    ),
                    r.samples,
                    busy.get(name, 0),
                ]
                for name, r in self._models.items()
            }
        for name, count in busy.items():
            rows.setdefault(name, [None, 0.0, None, 0.0, None, 0.0, 0, count])
        return rows

    def sync(self) -> None:
        """Publish this process's picture on the board and read the others' (one round, blocking)."""
        if self.board is None:
            return
        now = self.wall()
        self._last_sync = now
        self.board.publish(self.export(), now)
        self.publishes += 1
        sums: dict[str, list[float]] = {}
        for at, rows in self.board.read(now):
            decay = 0.5 ** (max(0.0, now - at) / self.half_life_s)
            for name, row in rows.items():
                if isinstance(row, list) and len(row) == 8:  # else an entry this version cannot read
                    _accumulate(sums.setdefault(name, [0.0] * 8), row, decay)
        with self._lock:
            self._remote_sums, self._synced_at = sums, now

    def maybe_sync(self) -> bool:
        """``sync()`` unless one ran less than ``share_interval_s`` ago; errors are counted and logged."""
        last = self._last_sync
        if self.board is None or (last is not None and self.wall() - last < self.share_interval_s):
            return False
        try:
            self.sync()
        except Exception as exc:  # noqa: BLE001 - sharing is best effort: counted, logged, local stats go on
            self.share_errors += 1
            if self.share_errors == 1 or self.share_errors % 100 == 0:
                logger.warning(
                    "live stats not shared (%s: %s); routing on this process's own", type(exc).__name__, exc
                )
            return False
        return True

    @staticmethod
    def _share(ref: weakref.ReferenceType[LiveStats], stop: threading.Event, interval_s: float) -> None:
        # A weak reference: a client dropped without close() lets its stats go, and this thread ends.
        while not stop.wait(interval_s):
            stats = ref()
            if stats is None:
                return
            stats.maybe_sync()
            del stats

    def close(self) -> None:
        """Stop the sharing thread and close the board's own connection (the runtime's ``close``)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=5.0)
        if self.board is not None:
            self.board.close()

    def _start_sharing(self) -> None:
        with self._lock:
            if self._thread is not None or self._stop.is_set():
                return
            self._thread = threading.Thread(
                target=self._share,
                args=(weakref.ref(self), self._stop, self.share_interval_s),
                name="switchyard-live-stats",
                daemon=True,
            )
        self._thread.start()

    def snapshot(self) -> StatsSnapshot:
        if self.board is not None and self._thread is None:
            self._start_sharing()  # the first plan starts it: a client that never routes shares nothing
        breakers = self._breakers() if self._breakers else {}
        busy = self._in_flight() if self._in_flight else {}
        now, half = self.clock(), self.half_life_s
        with self._lock:
            remote = self._remote_sums
            models = {
                name: ModelStats(
                    ttft_s=r.ttft.value,
                    tokens_per_s=r.speed.value,
                    samples=r.samples,
                    in_flight=busy.get(name, 0),
                    breaker_open=name in breakers,
                    breaker_reason=breakers.get(name),
                    weight=r.ttft.decayed(now, half),
                    failure_rate=r.failures.value or 0.0,
                )
                for name, r in self._models.items()
                if name not in remote  # those are built below, with the others' picture
            }
            if remote:
                scale = 0.5 ** (max(0.0, self.wall() - self._synced_at) / half)
                for name, acc in remote.items():
                    models[name] = _combined(
                        self._models.get(name), acc, scale, now, half, busy, breakers, name
                    )
        for name, reason in breakers.items():
            models.setdefault(name, ModelStats(breaker_open=True, breaker_reason=reason))
        for name, count in busy.items():
            models.setdefault(name, ModelStats(in_flight=count))
        return StatsSnapshot(
            models=models,
            over_budget=self._over_budget() if self._over_budget else frozenset(),
            local_engine=self._local_load() if self._local_load else None,
        )


def _accumulate(acc: list[float], row: list[Any], decay: float) -> None:
    """Add one published row: weighted sums of the three means, samples and attempts in flight."""
    for i in (0, 2, 4):  # (mean, weight) pairs: ttft, tokens/s, failure rate
        value, weight = row[i], float(row[i + 1] or 0.0) * decay
        if value is not None and weight > 0:
            acc[i] += float(value) * weight
            acc[i + 1] += weight
    acc[6] += float(row[6] or 0)
    acc[7] += float(row[7] or 0)


def _combined(
    mine: _Running | None,
    acc: list[float],
    scale: float,
    now: float,
    half: float,
    busy: dict[str, int],
    breakers: dict[str, str],
    name: str,
) -> ModelStats:
    """One deployment's estimates: this process's means beside the others' sums (scaled by ``scale``)."""
    ttft, ttft_w = acc[0] * scale, acc[1] * scale
    speed, speed_w = acc[2] * scale, acc[3] * scale
    fail, fail_w = acc[4] * scale, acc[5] * scale
    samples = int(acc[6])
    if mine is not None:  # written out: this runs per deployment on every routed request
        samples += mine.samples
        if mine.ttft.value is not None:
            w = mine.ttft.decayed(now, half)
            ttft, ttft_w = ttft + mine.ttft.value * w, ttft_w + w
        if mine.speed.value is not None:
            w = mine.speed.decayed(now, half)
            speed, speed_w = speed + mine.speed.value * w, speed_w + w
        if mine.failures.value is not None:
            w = mine.failures.decayed(now, half)
            fail, fail_w = fail + mine.failures.value * w, fail_w + w
    return ModelStats(
        ttft_s=ttft / ttft_w if ttft_w > 0 else None,
        tokens_per_s=speed / speed_w if speed_w > 0 else None,
        samples=samples,
        in_flight=busy.get(name, 0) + int(acc[7]),
        breaker_open=name in breakers,
        breaker_reason=breakers.get(name),
        weight=ttft_w,
        failure_rate=fail / fail_w if fail_w > 0 else 0.0,
    )


class InFlight:
    """Attempts in flight per deployment in this process: an observer that wraps another.

    ``attempt_started`` counts one up; the attempt's record (``attempt_finished``) counts it down
    and is then passed on to ``inner``; any other hook the loop looks up (``request_finished``)
    is ``inner``'s. Starts older than ``max_age_s`` are forgotten, so a lost
    record cannot leave a deployment looking busy for ever.

    Example:
        >>> from gateway.core.attempts import Candidate
        >>> from providers.base import Target
        >>> flights = InFlight(clock=lambda: 0.0)
        >>> flights.attempt_started(Candidate(Target("p", "openai", "http://x", "m"), "a"))
        >>> flights.counts()
        {'a': 1}
    """

    def __init__(
        self,
        inner: Observer | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_age_s: float = IN_FLIGHT_MAX_AGE_S,
    ) -> None:
        self.inner = inner
        self.clock = clock
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._starts: dict[str, deque[float]] = {}

    def attempt_started(self, candidate: Candidate) -> None:
        with self._lock:
            self._starts.setdefault(candidate.name, deque()).append(self.clock())

    def attempt_finished(self, record: AttemptRecord) -> None:
        self.release(record.candidate)
        if self.inner is not None:
            self.inner.attempt_finished(record)

    def release(self, candidate: Candidate) -> None:
        """Count one start of ``candidate`` down without a record (a planned request's hold)."""
        with self._lock:
            starts = self._starts.get(candidate.name)
            if starts:  # the oldest start: which one ends does not change the count
                starts.popleft()

    def __getattr__(self, name: str) -> Any:
        # The loop looks up optional observer hooks (``request_finished``…) with getattr: the
        # wrapped observer's must stay visible through this wrapper.
        inner = self.__dict__.get("inner")
        if inner is None or name.startswith("_"):
            raise AttributeError(name)
        return getattr(inner, name)

    def counts(self) -> dict[str, int]:
        """Attempts in flight now, by candidate name (deployments with none left out)."""
        horizon = self.clock() - self.max_age_s
        with self._lock:
            for starts in self._starts.values():
                while starts and starts[0] < horizon:
                    starts.popleft()
            return {name: len(starts) for name, starts in self._starts.items() if starts}
