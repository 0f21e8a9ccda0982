"""How long a route's answers run: a high percentile of the output tokens in the usage store.

A request without ``max_tokens`` could produce up to the model's maximum output, and reserving that
worst case makes a budget refuse long before it is spent. ``ObservedOutputs`` gives the guard a
tighter bound: the ``percentile`` (99th) of the completion tokens of the route's completed answers
(``outcome == "ok"``) from that model over the last ``window_s`` (an hour), read from the usage store
every process writes to, once every ``refresh_s`` (a minute). With fewer than ``min_samples`` (20)
answers it gives nothing, and the guard keeps the model's maximum. The guard caps it by that
maximum too.

The overspend this allows (``docs/metering.md``): an answer longer than the bound is charged in
full, so a budget can be passed by the overruns of the requests in flight when it filled, each at
most ``(model max - bound) x output price``; by construction about 1 answer in 100 overruns.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

__all__ = ["ObservedOutputs"]

logger = logging.getLogger("gateway.metering")

DEFAULT_PERCENTILE = 0.99
DEFAULT_WINDOW_S = 3600.0
DEFAULT_REFRESH_S = 60.0
DEFAULT_MIN_SAMPLES = 20


class ObservedOutputs:
    """The ``percentile`` of completion tokens per (route, model), from a state backend's usage.

    Args:
        backend: Where usage records are stored (``StateBackend.usage_records``).
        percentile: Which percentile bounds a reservation (nearest rank), in (0, 1].
        window_s: How far back answers count.
        refresh_s: How long a reading of the store is reused.
        min_samples: The fewest answers that give a bound.
        clock: Unix time.

    Example:
        >>> from gateway.state.memory import MemoryBackend
        >>> ObservedOutputs(MemoryBackend()).bound("chat", "gpt-4o-mini") is None
        True
    """

    def __init__(
        self,
        backend: Any,
        *,
        percentile: float = DEFAULT_PERCENTILE,
        window_s: float = DEFAULT_WINDOW_S,
        refresh_s: float = DEFAULT_REFRESH_S,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < percentile <= 1:
            raise ValueError(f"ObservedOutputs.percentile must be in (0, 1], got {percentile}")
        if min_samples < 1:
            raise ValueError(f"ObservedOutputs.min_samples must be >= 1, got {min_samples}")
        self.backend = backend
        self.percentile, self.window_s, self.refresh_s = percentile, window_s, refresh_s
        self.min_samples = min_samples
        self._clock = clock
        self._lock = threading.Lock()
        self._bounds: dict[tuple[str, str], int] = {}
        self._read_at = -math.inf

    def bound(self, route: str | None, model: str) -> int | None:
        """The bound for ``model`` on ``route`` (``""`` or ``None``: a direct model), or ``None``."""
        now = self._clock()
        with self._lock:
            if now - self._read_at >= self.refresh_s:
                self._read_at = now  # one reader per refresh; the others use the previous table
                stale = True
            else:
                stale = False
        if stale:
            self._refresh(now)
        return self._bounds.get((route or "", model))

    def _refresh(self, now: float) -> None:
        from gateway.core.errors import StateBackendError

        reader = getattr(self.backend, "usage_records", None)
        if reader is None:
            return
        try:
            records = reader(now - self.window_s)
        except StateBackendError as exc:  # keep the previous table; the guard falls back to the max
            logger.warning("observed output tokens not refreshed: %s", exc)
            return
        outputs: dict[tuple[str, str], list[int]] = defaultdict(list)
        for record in records:
            if record.outcome == "ok":
                outputs[(record.route, record.model)].append(int(record.completion_tokens))
        bounds = {}
        for key, values in outputs.items():
            if len(values) >= self.min_samples:
                values.sort()
                bounds[key] = values[max(0, math.ceil(self.percentile * len(values)) - 1)]
        self._bounds = bounds
