"""The live-stats board: each process's routing picture, published on the shared state backend.

Every process (every client runtime) that routes on a SQLite or Redis state publishes, at most once
per interval, one JSON entry: its decayed estimates per deployment (time to first token, tokens per
second, failure rate, each with its effective weight), its attempts in flight, and the wall-clock
time it was taken. It reads the entries of the others in the same round. Only ``get_json`` and
``set_json`` are used, so the board works on every backend.

A client's board (``LiveBoard.for_state``) opens a connection of its own, on first use, without
``DegradingBackend`` around it: sharing is best effort, and a failed round (counted and logged by
``LiveStats``) must never be what trips the client's shared state into its degraded mode, where
budgets fail closed. A stale connection after a Redis restart, for one, fails one round here and
nothing else.

Keys, under the backend's prefix:

- ``live:process:<id>``: one process's entry, written with a TTL (``ENTRY_TTL_S``), so a process
  that died stops counting within that time, its in-flight attempts with it;
- ``live:processes``: the ids that have published. It is read-modify-written, so two processes
  writing at once may drop one id; a process finds its id missing at its next publish and adds it
  again, and readers drop ids whose entry has expired.

Reads and writes per process and interval: two ``get_json`` and one ``set_json`` for its own
entry, one ``get_json`` per other live process, and a ``set_json`` of the id list only when it
changes.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gateway.state.base import StateBackend

if TYPE_CHECKING:
    from gateway.policy.schema import StateConfig

__all__ = ["ENTRY_TTL_S", "REGISTRY_KEY", "LiveBoard"]

ENTRY_TTL_S = 30.0
REGISTRY_KEY = "live:processes"

# One deployment in an entry: ttft, ttft weight, tokens/s, its weight, failure rate, its weight,
# samples, attempts in flight (None where unknown).
Row = Sequence[float | None]


class LiveBoard:
    """Publish this process's live picture and read the other processes'.

    Args:
        backend: The shared state backend (SQLite or Redis; memory works within one process).
        process_id: This publisher's id; by default host, pid and a random suffix, so two clients
            in one process publish apart.
        ttl_s: How long an entry counts after it was written.

    Example:
        >>> from gateway.state.memory import MemoryBackend
        >>> backend = MemoryBackend()
        >>> a, b = LiveBoard(backend, process_id="a"), LiveBoard(backend, process_id="b")
        >>> a.publish({"m": [0.5, 3.0, None, 0.0, 0.0, 3.0, 3, 1]}, now=100.0)
        >>> b.read(now=101.0)
        [(100.0, {'m': [0.5, 3.0, None, 0.0, 0.0, 3.0, 3, 1]})]
    """

    def __init__(
        self,
        backend: StateBackend | Callable[[], StateBackend],
        *,
        process_id: str | None = None,
        ttl_s: float = ENTRY_TTL_S,
    ) -> None:
        if not ttl_s > 0:
            raise ValueError(f"LiveBoard.ttl_s must be positive, got {ttl_s!r}")
        # A plain callable opens the board's own backend on first use (and the board closes it).
        self._opener: Callable[[], StateBackend] | None = None
        self._backend: StateBackend | None = None
        if isinstance(backend, StateBackend):
            self._backend = backend
        else:
            self._opener = backend
        self.process_id = process_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.ttl_s = ttl_s
        self._lock = threading.Lock()

    @classmethod
    def for_state(cls, state: StateConfig) -> LiveBoard | None:
        """The board of a policy's ``state`` section, on a connection of its own; ``None`` for memory."""
        from gateway.state import open_backend, policy_backend_config

        config = dataclasses.replace(policy_backend_config(state), fail_open=None)  # it degrades on its own
        if config.url == "memory://":
            return None
        return cls(lambda: open_backend(config))

    @property
    def backend(self) -> StateBackend:
        """The backend the board reads and writes (its own is opened here, on first use)."""
        with self._lock:
            if self._backend is None:
                if self._opener is None:
                    raise RuntimeError("the live board was closed")
                self._backend = self._opener()
            return self._backend

    def close(self) -> None:
        """Close the backend the board opened itself (one it was handed stays open)."""
        with self._lock:
            backend, owned = self._backend, self._opener is not None
            self._opener = None if owned else self._opener
            if owned:
                self._backend = None
        if owned and backend is not None:
            backend.close()

    def _key(self, process_id: str) -> str:
        return f"live:process:{process_id}"

    def publish(self, models: Mapping[str, Row], now: float) -> None:
        """Write this process's entry (wall-clock ``now``) and make sure its id is listed."""
        self.backend.set_json(
            self._key(self.process_id), {"at": now, "models": dict(models)}, ttl_s=self.ttl_s
        )
        listed = _ids(self.backend.get_json(REGISTRY_KEY))
        if self.process_id not in listed:
            self.backend.set_json(REGISTRY_KEY, sorted({*listed, self.process_id}))

    def read(self, now: float) -> list[tuple[float, dict[str, Any]]]:
        """The other processes' entries that are fresh at ``now``: ``(written at, models)``."""
        listed = _ids(self.backend.get_json(REGISTRY_KEY))
        entries, gone = [], []
        for process_id in listed:
            if process_id == self.process_id:
                continue
            value = self.backend.get_json(self._key(process_id))
            at = value.get("at") if isinstance(value, dict) else None
            if not isinstance(at, int | float) or now - at > self.ttl_s:
                gone.append(process_id)
                continue
            models = value.get("models") if isinstance(value, dict) else None
            if isinstance(models, dict):
                entries.append((float(at), models))
        if gone:
            self.backend.set_json(REGISTRY_KEY, [p for p in listed if p not in gone])
        return entries


def _ids(value: Any) -> list[str]:
    return [str(item) for item in value] if isinstance(value, list) else []
