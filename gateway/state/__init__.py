"""Shared state: counters, budgets, rate limits, breaker state, latency stats, usage and evals.

Everything goes through one small :class:`StateBackend` protocol with three implementations,
chosen by URL with :func:`open_backend`:

- ``memory://`` (default): one process, thread-safe, gone at exit.
- ``sqlite:///path/to/state.sqlite``: several processes on one machine; survives restarts.
- ``redis://[:password@]host:port/db``: many machines; atomic Lua scripts.

With ``BackendConfig(fail_open=...)``, a shared backend (SQLite, Redis) is wrapped in a
:class:`~gateway.state.outage.DegradingBackend`: while it is unreachable, each concern (budgets,
rate limits, breakers, live stats) either carries on with process-local state or fails closed, and
what was recorded locally is reconciled when it is back (``gateway/state/outage.py``).

Example:
    >>> backend = open_backend("memory://")
    >>> backend.incr("requests", 1)
    1.0
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast
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
    "policy_backend_config",
    "redact_url",
]


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """How to open a state backend.

    Attributes:
        url: ``memory://``, ``sqlite:///path`` or ``redis://...``.
        key_prefix: Redis only: prefix of every key.
        timeout_s: Redis only: connect and read timeout of each command.
        busy_timeout_s: SQLite only: how long to wait for another process's write (a policy's
            ``state.busy_timeout_s``).
        clock: Returns the current Unix time; expires keys with a TTL (memory and SQLite).
        fail_open: ``None`` (default): the backend as it is, every outage an error. Otherwise which
            concerns carry on locally during an outage (``FailOpen``, a bool or a mapping, as the
            policy's ``state.fail_open``); an unreachable Redis then does not fail ``open_backend``.
    """

    url: str = "memory://"
    key_prefix: str = "switchyard:"
    timeout_s: float = 1.0
    busy_timeout_s: float = 10.0
    clock: Callable[[], float] | None = None
    fail_open: bool | Mapping[str, bool] | object | None = None

    def __repr__(self) -> str:
        return f"BackendConfig(url={redact_url(self.url)!r}, key_prefix={self.key_prefix!r})"


def policy_backend_config(state: Any) -> BackendConfig:
    """How to open the backend a policy's ``state`` section names: its URL (a SQLite path made
    absolute against the working directory, the Redis URL taken out of its secret), key prefix,
    busy timeout and ``fail_open``. The one place a policy becomes a backend: the client's state,
    the meter's sink, the live board and the eval store all open theirs from it.

    Example:
        >>> from gateway.policy import parse_policy
        >>> policy_backend_config(parse_policy("version: 1").state).url
        'memory://'
    """
    if state.backend == "sqlite" and state.path:
        url = f"sqlite://{os.path.abspath(state.path)}"
    elif state.backend == "redis" and state.url is not None:
        url = state.url.get_secret_value()
    else:
        url = "memory://"
    return BackendConfig(
        url, key_prefix=state.key_prefix, busy_timeout_s=state.busy_timeout_s, fail_open=state.fail_open
    )


def open_backend(url_or_config: str | BackendConfig) -> StateBackend:
    """Open the state backend a URL names.

    Args:
        url_or_config: A URL, or a :class:`BackendConfig` for the options.

    Returns:
        A ready backend. Redis is pinged first, so an unreachable server fails here (unless
        ``fail_open`` is set: the backend then starts degraded and keeps trying; so does a SQLite
        file another process holds locked past ``busy_timeout_s``).

    Raises:
        ValueError: The URL's scheme is not ``memory``, ``sqlite``, ``redis`` or ``rediss``.
        StateBackendUnavailableError: Redis cannot be reached (the message has no password).
        StateCorruptError: The SQLite file is not a database (it is left untouched).
    """
    config = url_or_config if isinstance(url_or_config, BackendConfig) else BackendConfig(url_or_config)
    scheme = urlsplit(config.url).scheme
    if scheme not in ("memory", "sqlite", "redis", "rediss", "unix"):
        raise ValueError(
            f"unknown state backend URL {redact_url(config.url)!r}: use memory://, sqlite:///path or redis://host:port"
        )
    if config.fail_open is not None and scheme != "memory":
        from gateway.state.outage import DegradingBackend, FailOpen

        plain = BackendConfig(
            config.url, config.key_prefix, config.timeout_s, config.busy_timeout_s, config.clock
        )
        fail_open = FailOpen.of(config.fail_open)
        name = f"{redact_url(config.url)} (key prefix {config.key_prefix!r})"
        if scheme == "sqlite":
            # A local file, opened now (the factory's first call), so a bad path fails here; one held
            # by another writer past busy_timeout_s starts degraded and is retried, as Redis is.
            opener = DegradingBackend(lambda: _open(plain, scheme), fail_open, description=name)
            return cast(StateBackend, opener)
        from gateway.state.aio import AsyncRedisBackend

        twin = AsyncRedisBackend(config.url, key_prefix=config.key_prefix, timeout_s=config.timeout_s)
        opener = DegradingBackend(
            lambda: _open(plain, scheme), fail_open, description=name, async_primary=twin
        )
        return cast(StateBackend, opener)
    return _open(config, scheme)


def _open(config: BackendConfig, scheme: str) -> StateBackend:
    if scheme == "memory":
        from gateway.state.memory import MemoryBackend

        return MemoryBackend(clock=config.clock)
    if scheme == "sqlite":
        from gateway.state.sqlite import SQLiteBackend

        path = unquote(config.url.removeprefix("sqlite://"))
        if path in ("", "/"):
            raise ValueError("a sqlite state URL needs a path: sqlite:///var/lib/switchyard/state.sqlite")
        return SQLiteBackend(path, busy_timeout_s=config.busy_timeout_s, clock=config.clock)
    from gateway.state.redis import RedisBackend

    return RedisBackend(config.url, key_prefix=config.key_prefix, timeout_s=config.timeout_s)
