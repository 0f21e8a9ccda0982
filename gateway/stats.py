"""Live per-model statistics for the router: time to first token and output speed, smoothed.

``LiveStats`` is an observer: every finished attempt updates exponentially weighted averages
(``ALPHA``) of its model's time to first token (for a non-streamed reply, its whole latency) and of
its output tokens per second. ``snapshot()`` hands the router an immutable ``StatsSnapshot``.
Per-process by design: latency is what this process sees of a deployment.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from gateway.core.attempts import AttemptRecord
from gateway.router import LocalEngineLoad, ModelStats, StatsSnapshot

ALPHA = 0.2


@dataclass(slots=True)
class _Running:
    ttft_s: float | None = None
    tokens_per_s: float | None = None
    samples: int = 0


def _ewma(old: float | None, new: float) -> float:
    return new if old is None else old + ALPHA * (new - old)


class LiveStats:
    def __init__(
        self,
        *,
        breakers: Callable[[], dict[str, str]] | None = None,
        over_budget: Callable[[], frozenset[str]] | None = None,
        local_load: Callable[[], LocalEngineLoad | None] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, _Running] = {}
        self._breakers = breakers
        self._over_budget = over_budget
        self._local_load = local_load

    def attempt_finished(self, record: AttemptRecord) -> None:
        if record.outcome != "ok":
            return
        ttft = record.ttft_s if record.ttft_s is not None else record.duration_s
        completion = record.usage.completion_tokens if record.usage is not None else 0
        decode_s = record.duration_s - (record.ttft_s or 0.0)
        with self._lock:
            running = self._models.setdefault(record.candidate.name, _Running())
            running.ttft_s = _ewma(running.ttft_s, ttft)
            if record.ttft_s is not None and completion > 1 and decode_s > 0:
                running.tokens_per_s = _ewma(running.tokens_per_s, completion / decode_s)
            running.samples += 1

    def snapshot(self) -> StatsSnapshot:
        breakers = self._breakers() if self._breakers else {}
        with self._lock:
            models = {
                name: ModelStats(
                    ttft_s=r.ttft_s,
                    tokens_per_s=r.tokens_per_s,
                    samples=r.samples,
                    breaker_open=name in breakers,
                    breaker_reason=breakers.get(name),
                )
                for name, r in self._models.items()
            }
        for name, reason in breakers.items():
            models.setdefault(name, ModelStats(breaker_open=True, breaker_reason=reason))
        return StatsSnapshot(
            models=models,
            over_budget=self._over_budget() if self._over_budget else frozenset(),
            local_engine=self._local_load() if self._local_load else None,
        )
