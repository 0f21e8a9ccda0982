"""The capture hook the core calls with each successful reply: sample, redact, store, expire.

Only what the route's ``fields`` name is kept, redacted first. Headers, API keys and the
caller's credentials are never read here: the request's messages and the reply are all it sees.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any

from gateway.capture.config import CaptureConfig
from gateway.capture.redact import Redactor
from gateway.capture.store import CapturedExample, DatasetStore

__all__ = ["Capture"]

_EXPIRE_EVERY_S = 60.0


class Capture:
    """Records replies of the routes whose policy has a ``capture:`` section.

    Args:
        policy: the policy, or a callable returning the current one (hot reload).
        rng: the sampler's ``random()`` (inject one for deterministic tests).
    """

    def __init__(self, policy: Any, rng: Callable[[], float] | None = None) -> None:
        self._policy = policy
        self._rng = rng or random.Random().random
        self._stores: dict[str, DatasetStore] = {}
        self._redactors: dict[int, Redactor] = {}
        self._expired: dict[str, float] = {}

    def config(self, route: str | None) -> CaptureConfig | None:
        if route is None:
            return None
        policy = self._policy() if callable(self._policy) else self._policy
        entry = policy.routes.get(route)
        config: CaptureConfig | None = getattr(entry, "capture", None)
        return config

    def record(
        self, request_id: str, route: str | None, req: Any, reply: Any, upstream_id: str | None
    ) -> None:
        """Capture one reply (``req`` a ChatRequest, ``reply`` a ChatCompletion), if the route says so."""
        config = self.config(route)
        if config is None or route is None or self._rng() >= config.sample_rate:
            return
        redact = self._redactor(config)
        message = reply.choices[0].message if reply.choices else None
        fields = set(config.fields)
        tool_calls = None
        if "tool_calls" in fields and message is not None and message.tool_calls:
            tool_calls = [_redacted(call.model_dump(mode="json"), redact) for call in message.tool_calls]
        info = getattr(reply, "_gateway", None)
        example = CapturedExample(
            id=request_id, route=route, created=time.time(),
            messages=_redacted(list(req.messages), redact) if "prompt" in fields else [],
            completion=redact(message.content) if "completion" in fields and message and message.content else None,
            model=getattr(info, "model", None) or reply.model, provider=getattr(info, "provider", None),
            upstream_id=upstream_id, completion_id=reply.id, tool_calls=tool_calls,
            metadata=_redacted(dict(req.metadata or {}), redact) if "metadata" in fields else {},
        )  # fmt: skip
        store = self.store(config)
        store.add(example)
        self._expire(store, route, config)

    def store(self, config: CaptureConfig) -> DatasetStore:
        path = os.path.abspath(config.store)
        if path not in self._stores:
            self._stores[path] = DatasetStore(path)
        return self._stores[path]

    def _redactor(self, config: CaptureConfig) -> Redactor:
        key = id(config.redact)
        if key not in self._redactors:
            self._redactors[key] = Redactor.from_config(config.redact)
        return self._redactors[key]

    def _expire(self, store: DatasetStore, route: str, config: CaptureConfig) -> None:
        now = time.time()
        if config.retention_days is None or now - self._expired.get(route, 0.0) < _EXPIRE_EVERY_S:
            return
        self._expired[route] = now
        store.expire(route, now - config.retention_days * 86400)

    def close(self) -> None:
        for store in self._stores.values():
            store.close()
        self._stores.clear()


def _redacted(value: Any, redact: Redactor) -> Any:
    """Every string inside ``value`` (messages, tool calls, metadata) redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redacted(item, redact) for item in value]
    if isinstance(value, dict):
        return {key: _redacted(item, redact) for key, item in value.items()}
    if hasattr(value, "model_dump"):
        return _redacted(value.model_dump(mode="json", exclude_none=True), redact)
    return value
