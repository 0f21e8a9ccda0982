"""The capture hook the core calls with each successful reply: sample, redact, store, expire.

Only what the route's ``fields`` name is kept, redacted first. Headers, API keys and the
caller's credentials are never read here: the request's messages and the reply are all it sees.
A stream is captured as the completion its chunks add up to (``StreamCapture``), once it ended
cleanly; a stream cut upstream or closed early by the caller is not an example.
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

__all__ = ["Capture", "StreamCapture"]

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
        self,
        request_id: str,
        route: str | None,
        req: Any,
        reply: Any,
        upstream_id: str | None,
        *,
        force: bool = False,
    ) -> None:
        """Capture one reply (``req`` a ChatRequest, ``reply`` a ChatCompletion), if the route says so;
        ``force`` skips the sample (a request with a shadow copy is kept, so the pair can be scored)."""
        config = self.config(route)
        if config is None or route is None or (not force and self._rng() >= config.sample_rate):
            return
        message = reply.choices[0].message if reply.choices else None
        calls = [call.model_dump(mode="json") for call in message.tool_calls or []] if message else []
        info = getattr(reply, "_gateway", None)
        content = message.content if message is not None else None
        self.keep(config, request_id, route, req, content, calls, info, reply.model, reply.id, upstream_id)

    def stream(
        self, request_id: str, route: str | None, req: Any, *, force: bool = False
    ) -> StreamCapture | None:
        """An accumulator for a stream of ``route``, if the route captures and this stream is sampled."""
        config = self.config(route)
        if config is None or route is None or (not force and self._rng() >= config.sample_rate):
            return None
        return StreamCapture(self, config, request_id, route, req)

    def record_shadow(self, primary_id: str, route: str, req: Any, reply: Any) -> None:
        """Keep a shadow copy's answer beside its request's, in the route's capture store: route
        ``shadow:<route>``, id ``<primary id>:shadow``, ``metadata.shadow_of`` the primary's id
        (``switchyard eval shadow`` pairs and scores them). Nothing without a ``capture:`` section."""
        config = self.config(route)
        if config is None:
            return
        message = reply.choices[0].message if reply.choices else None
        calls = [call.model_dump(mode="json") for call in message.tool_calls or []] if message else []
        content = message.content if message is not None else None
        info = getattr(reply, "_gateway", None)
        shadow_req = req.model_copy(update={"metadata": {**(req.metadata or {}), "shadow_of": primary_id}})
        self.keep(
            config, f"{primary_id}:shadow", f"shadow:{route}", shadow_req, content, calls, info, reply.model,
            reply.id, None, metadata_fields=True,
        )  # fmt: skip

    def keep(
        self,
        config: CaptureConfig,
        request_id: str,
        route: str,
        req: Any,
        content: str | None,
        tool_calls: list[dict[str, Any]],
        info: Any,
        model: str,
        completion_id: str | None,
        upstream_id: str | None,
        *,
        metadata_fields: bool = False,
    ) -> None:
        """Store one example: what ``fields`` name, redacted (``metadata_fields``: metadata kept whatever
        the fields say, for a shadow's link to its request)."""
        redact = self._redactor(config)
        fields = set(config.fields) | ({"metadata"} if metadata_fields else set())
        calls = (
            [_redacted(call, redact) for call in tool_calls]
            if "tool_calls" in fields and tool_calls
            else None
        )
        example = CapturedExample(
            id=request_id, route=route, created=time.time(),
            messages=_redacted(list(req.messages), redact) if "prompt" in fields else [],
            completion=redact(content) if "completion" in fields and content else None,
            model=getattr(info, "model", None) or model, provider=getattr(info, "provider", None),
            upstream_id=upstream_id, completion_id=completion_id, tool_calls=calls,
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


class StreamCapture:
    """A stream's chunks added up (the first choice: its text and its tool calls, merged by index),
    kept as one example when the stream ended cleanly (``finish``)."""

    def __init__(
        self, capture: Capture, config: CaptureConfig, request_id: str, route: str, req: Any
    ) -> None:
        self._capture = capture
        self._config = config
        self._request_id = request_id
        self._route = route
        self._req = req
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._model = ""
        self._id: str | None = None

    def add(self, chunk: Any) -> None:
        self._model = self._model or chunk.model
        self._id = self._id or chunk.id
        for choice in chunk.choices:
            if choice.index != 0:
                continue
            delta = choice.delta
            if delta.content:
                self._text.append(delta.content)
            for call in delta.tool_calls or []:
                merged = self._calls.setdefault(
                    call.index, {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
                )
                merged["id"] = merged["id"] or call.id
                if call.function is not None:
                    merged["function"]["name"] += call.function.name or ""
                    merged["function"]["arguments"] += call.function.arguments or ""

    def finish(self, info: Any, upstream_id: str | None) -> None:
        calls = [self._calls[i] for i in sorted(self._calls)]
        text = "".join(self._text) or None
        self._capture.keep(
            self._config,
            self._request_id,
            self._route,
            self._req,
            text,
            calls,
            info,
            self._model,
            self._id,
            upstream_id,
        )


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
