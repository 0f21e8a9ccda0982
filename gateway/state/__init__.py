"""Shared state: counters, budgets, rate limits, breaker state, latency stats, usage and evals.

Everything goes through one small :class:`StateBackend` protocol with three implementations,
chosen by URL with :func:`open_backend`:

- ``memory://`` (default): one process, thread-safe, gone at exit.
- ``sqlite:///path/to/state.sqlite``: several processes on one machine; survives restarts.
- ``redis://[:password@]host:port/db``: many machines; atomic Lua scripts.

Example:
    >>> backend = open_backend("memory://")
    >>> backend.incr("requests", 1)
    1.0
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from gateway.state.base import (
    AsyncStateBackend,
    BreakerState,
    Decision,
    ReserveResult,
    StateBackend,
    UsageRecord,
    UsageTotal,
)
from gateway.state.urls import redact_url

__all__ = [
    "AsyncStateBackend",
    "BackendConfig",
    "BreakerState",
    "Decision",
    "ReserveResult",
    "StateBackend",
    "UsageRecord",
    "UsageTotal",
    "open_backend",
    "redact_url",
]


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """How to open a state backend.

    Attributes:
        url: ``memory://``, ``sqlite:///path`` or ``redis://...``.
        key_prefix: Redis only: prefix of every key.
        timeout_s: Redis only: connect and read timeout of each command.
        busy_timeout_s: SQLite only: how long to wait for another process's write.
        clock: Returns the current Unix time; expires keys with a TTL (memory and SQLite).
    """

    url: str = "memory://"
    key_prefix: str = "switchyard:"
    timeout_s: float = 1.0
    busy_timeout_s: float = 10.0
    clock: Callable[[], float] | None = None

    def __repr__(self) -> str:
        return f"BackendConfig(url={redact_url(self.url)!r}, key_prefix={self.key_prefix!r})"


def open_backend(url_or_config: str | BackendConfig) -> StateBackend:
    """Open the state backend a URL names.

    Args:
        url_or_config: A URL, or a :class:`BackendConfig` for the options.

    Returns:
        A ready backend. Redis is pinged first, so an unreachable server fails here.

    Raises:
        ValueError: The URL's scheme is not ``memory``, ``sqlite``, ``redis`` or ``rediss``.
        StateBackendUnavailableError: Redis cannot be reached (the message has no password).
        StateCorruptError: The SQLite file is not a database (it is left untouched).
    """
    config = url_or_config if isinstance(url_or_config, BackendConfig) else BackendConfig(url_or_config)
    scheme = urlsplit(config.url).scheme
    if scheme == "memory":
        from gateway.state.memory import MemoryBackend

        return MemoryBackend(clock=config.clock)
    if scheme == "sqlite":
        from gateway.state.sqlite import SQLiteBackend

        path = unquote(config.url.removeprefix("sqlite://"))
        if path in ("", "/"):
            raise ValueError("a sqlite state URL needs a path: sqlite:///var/lib/switchyard/state.sqlite")
        return SQLiteBackend(path, busy_timeout_s=config.busy_timeout_s, clock=config.clock)
    if scheme in ("redis", "rediss", "unix"):
        from gateway.state.redis import RedisBackend

        return RedisBackend(config.url, key_prefix=config.key_prefix, timeout_s=config.timeout_s)
    raise ValueError(
        f"unknown state backend URL {redact_url(config.url)!r}: use memory://, sqlite:///path or redis://host:port"
    )
