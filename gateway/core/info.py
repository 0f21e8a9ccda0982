"""Routing information of recent replies, by ``x-switchyard-id``.

A non-streamed reply's headers carry everything; a stream's headers are sent before it ends, so
its final information (every attempt, the cost, the usage) is kept here when it ends, for
``gateway.info(stream)``. Bounded: the most recent ``MAX_KEPT`` requests of the process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from gateway.core.types import GatewayInfo

MAX_KEPT = 4096

_recent: OrderedDict[str, GatewayInfo] = OrderedDict()
_lock = threading.Lock()


def remember(request_id: str, info: GatewayInfo | None) -> None:
    if info is None:
        return
    with _lock:
        _recent[request_id] = info
        if len(_recent) > MAX_KEPT:
            _recent.popitem(last=False)


def recall(request_id: str) -> GatewayInfo | None:
    with _lock:
        return _recent.get(request_id)
