"""Hedged requests: when the first candidate is slow to answer, race the next one.

If the first attempt has not answered after a delay (fixed, or the first candidate's observed p95
time to first token), the asyncio loop starts the next candidate too, takes whichever answers first
and cancels the other: the cancelled request's connection is closed, so the upstream sees the
disconnect. Both attempts reach the observer (the loser with outcome ``"cancelled"``), so both are
metered. ``max_extra_cost_usd`` caps what a hedge may add: a hedge candidate whose estimated cost is
above it (or unknown, when a cap is set) is not started.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass

P95_MIN_SAMPLES = 20
TTFT_WINDOW = 200


@dataclass(frozen=True, slots=True)
class HedgeSettings:
    """When to hedge.

    Attributes:
        after_s: A fixed delay; with ``p95`` it is the delay used until enough samples exist.
        p95: Use the first candidate's observed p95 time to first token as the delay.
        max_extra_cost_usd: The most one hedge may add, by the candidate's estimated cost.
        min_samples: How many observations the p95 needs before it is trusted.
    """

    after_s: float | None = None
    p95: bool = False
    max_extra_cost_usd: float | None = None
    min_samples: int = P95_MIN_SAMPLES

    def __post_init__(self) -> None:
        if self.after_s is None and not self.p95:
            raise ValueError("HedgeSettings needs after_s, p95=True, or both")
        if self.after_s is not None and not (math.isfinite(self.after_s) and self.after_s >= 0):
            raise ValueError(f"HedgeSettings.after_s must be >= 0 seconds, got {self.after_s!r}")
        if self.max_extra_cost_usd is not None and self.max_extra_cost_usd < 0:
            raise ValueError(
                f"HedgeSettings.max_extra_cost_usd must be >= 0, got {self.max_extra_cost_usd!r}"
            )


class TTFTWindow:
    """The last ``size`` times to first token of each candidate, for a p95 hedge delay. Thread-safe."""

    def __init__(self, size: int = TTFT_WINDOW) -> None:
        self._size = size
        self._samples: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def observe(self, name: str, ttft_s: float) -> None:
        with self._lock:
            window = self._samples.get(name)
            if window is None:
                window = self._samples[name] = deque(maxlen=self._size)
            window.append(ttft_s)

    def p95(self, name: str, min_samples: int = P95_MIN_SAMPLES) -> float | None:
        """The 95th percentile (nearest rank), or ``None`` with fewer than ``min_samples``."""
        with self._lock:
            samples = sorted(self._samples.get(name, ()))
        if len(samples) < max(1, min_samples):
            return None
        return samples[min(len(samples) - 1, math.ceil(0.95 * len(samples)) - 1)]


def hedge_delay(settings: HedgeSettings, window: TTFTWindow, name: str) -> float | None:
    """Seconds to wait before hedging ``name``'s attempt, or ``None`` for no hedge yet."""
    if settings.p95:
        observed = window.p95(name, settings.min_samples)
        if observed is not None:
            return observed
    return settings.after_s


def hedge_affordable(settings: HedgeSettings, estimated_cost_usd: float | None) -> bool:
    """Whether a hedge expected to cost ``estimated_cost_usd`` fits the extra-cost cap."""
    if settings.max_extra_cost_usd is None:
        return True
    return estimated_cost_usd is not None and estimated_cost_usd <= settings.max_extra_cost_usd
