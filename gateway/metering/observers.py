"""``ObserverGroup``: several observers (meter, telemetry, live stats) behind the client's one ``observer=``."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from gateway.core.attempts import AttemptRecord, Observer

__all__ = ["ObserverGroup"]

logger = logging.getLogger("gateway.metering")


class ObserverGroup:
    """Calls each observer in turn; one that raises is logged and does not stop the others.

    Example:
        >>> from gateway.core.attempts import NullObserver
        >>> group = ObserverGroup(NullObserver(), NullObserver())
        >>> len(group)
        2
    """

    def __init__(self, *observers: Observer) -> None:
        self.observers = tuple(observers)

    def attempt_finished(self, record: AttemptRecord) -> None:
        for observer in self.observers:
            try:
                observer.attempt_finished(record)
            except Exception:  # noqa: BLE001 - an observer must not fail the request it observes
                logger.exception("observer %s failed on attempt %s", type(observer).__name__, record.attempt)

    def request_finished(self, request_id: str, error: BaseException | None = None) -> None:
        """Forward the end of a request to the observers that want it (``Telemetry`` does)."""
        for observer in self.observers:
            hook = getattr(observer, "request_finished", None)
            if hook is None:
                continue
            try:
                hook(request_id, error)
            except Exception:  # noqa: BLE001 - an observer must not fail the request it observes
                logger.exception(
                    "observer %s failed at the end of request %s", type(observer).__name__, request_id
                )

    def __len__(self) -> int:
        return len(self.observers)

    def __iter__(self) -> Iterator[Observer]:
        return iter(self.observers)
