"""State calls from an event loop without blocking it: ``redis.asyncio`` for Redis.

:class:`AsyncRedisBackend` runs the same Lua scripts as :class:`~gateway.state.redis.RedisBackend`
(EVALSHA, reloaded on ``NOSCRIPT``) with ``redis.asyncio``, one client per event loop (a
``redis.asyncio`` connection belongs to the loop that opened it). Errors map exactly as the
blocking backend's do, and after a connection failure calls fail at once for ``retry_interval_s``.

:func:`call_async` is what async code calls: the backend's own ``acall`` when it has one (a
``DegradingBackend`` over Redis), the blocking method directly for the in-memory backend (no I/O),
else the blocking method in a worker thread.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from gateway.state import _lua
from gateway.state.base import BreakerState, Decision, ReserveResult
from gateway.state.errors import StateBackendError, StateBackendUnavailableError
from gateway.state.urls import redact_url

__all__ = ["AsyncRedisBackend", "call_async"]


async def call_async(backend: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """``backend.<method>(*args, **kwargs)`` without blocking the running event loop."""
    acall = getattr(backend, "acall", None)
    if acall is not None:
        return await acall(method, *args, **kwargs)
    from gateway.state.memory import MemoryBackend

    if isinstance(backend, MemoryBackend):
        return getattr(backend, method)(*args, **kwargs)
    return await asyncio.to_thread(getattr(backend, method), *args, **kwargs)


def _fmt(value: float) -> str:
    return repr(float(value))


class AsyncRedisBackend:
    """The budget, rate-limit, breaker and counter operations of ``RedisBackend``, awaited.

    Args:
        url: ``redis://[:password@]host:port/db``; kept only to open each loop's client.
        key_prefix: As ``RedisBackend``'s (the two must agree to share state).
        timeout_s: Connect and read timeout of every command.
        retry_interval_s: After a connection failure, calls fail at once for this long.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = "switchyard:",
        timeout_s: float = 1.0,
        retry_interval_s: float = 0.25,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = url
        self.url = redact_url(url)
        self.key_prefix = key_prefix
        self._timeout_s = timeout_s
        self._retry_interval_s = retry_interval_s
        self._monotonic = monotonic
        self._down_until = -math.inf
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, dict[str, Any]]] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:
        return f"AsyncRedisBackend({self.url!r}, key_prefix={self.key_prefix!r})"

    def _client(self) -> tuple[Any, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        made = self._clients.get(loop)
        if made is None:
            import redis.asyncio  # here: breakers import this module, and ``import gateway`` stays light
            from redis.asyncio.retry import Retry  # redis 8.2 warns when given the blocking one
            from redis.backoff import NoBackoff

            client = redis.asyncio.Redis.from_url(
                self._url,
                socket_timeout=self._timeout_s,
                socket_connect_timeout=self._timeout_s,
                retry=Retry(NoBackoff(), 0),
                health_check_interval=0,
                driver_info=None,
            )
            scripts = {
                name: client.register_script(getattr(_lua, name))
                for name in ("INCR", "EWMA", "GCRA", "RESERVE", "SETTLE", "RELEASE", "USAGE")
            }
            scripts["BREAKER_ALLOW"] = client.register_script(_lua.BREAKER_ALLOW)
            scripts["BREAKER_RECORD"] = client.register_script(_lua.BREAKER_RECORD)
            made = self._clients[loop] = (client, scripts)
        return made

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        if self._monotonic() < self._down_until:
            raise StateBackendUnavailableError(
                f"Redis at {self.url} failed less than {self._retry_interval_s} s ago; not retrying yet",
                url=self.url,
            )
        import redis

        client, scripts = self._client()
        try:
            return await scripts[name](keys=list(keys), args=list(args), client=client)
        except (redis.ConnectionError, redis.TimeoutError, TimeoutError, OSError) as exc:
            self._down_until = self._monotonic() + self._retry_interval_s
            # The pool's other connections are as dead (a restarted server reset them all):
            # drop them now rather than fail once on each after the server is back.
            await client.connection_pool.disconnect(inuse_connections=False)
            raise StateBackendUnavailableError(
                f"cannot reach Redis at {self.url}: {type(exc).__name__}. Check that the server is running "
                "and reachable, or choose another state backend.",
                url=self.url,
            ) from None
        except redis.RedisError as exc:
            raise StateBackendError(f"Redis at {self.url} failed: {type(exc).__name__}") from None

    def _window_keys(self, key: str) -> list[str]:
        base = f"{self.key_prefix}{{{key}}}"
        return [base, base + ":live", base + ":expiry", base + ":settled"]

    @staticmethod
    def _breaker(reply: list[Any]) -> BreakerState:
        status, allowed, calls, failures, retry_at = reply
        return BreakerState(status.decode(), bool(allowed), int(calls), int(failures), float(retry_at))

    async def breaker_allow(self, key: str, now: float) -> BreakerState:
        reply = await self._run("BREAKER_ALLOW", [f"{self.key_prefix}breaker:{key}"], [_fmt(now)])
        return self._breaker(reply)

    async def breaker_record(
        self,
        key: str,
        ok: bool,
        now: float,
        window_s: float,
        min_calls: int,
        error_rate: float,
        cooldown_s: float,
        probes: int = 1,
    ) -> BreakerState:
        args = _lua.breaker_record_args(ok, now, window_s, min_calls, error_rate, cooldown_s, probes)
        return self._breaker(await self._run("BREAKER_RECORD", [f"{self.key_prefix}breaker:{key}"], args))

    async def rate_limit(
        self, key: str, rate_per_s: float, burst: float, cost: float, now: float, *, force: bool = False
    ) -> Decision:
        args = [_fmt(rate_per_s), _fmt(burst), _fmt(cost), _fmt(now), "1" if force else "0"]
        allowed, retry_after, remaining = await self._run("GCRA", [self.key_prefix + key], args)
        return Decision(bool(allowed), float(retry_after), int(remaining))

    async def reserve(
        self,
        key: str,
        limit: int,
        amount: int,
        reservation_id: str,
        lease_s: float,
        window_end: float,
        now: float,
    ) -> ReserveResult:
        args = [int(limit), int(amount), reservation_id, _fmt(lease_s), _fmt(window_end), _fmt(now)]
        granted, used, reserved, reclaimed = await self._run("RESERVE", self._window_keys(key), args)
        return ReserveResult(bool(granted), int(used), int(reserved), int(reclaimed))

    async def settle(self, key: str, reservation_id: str, actual: int, window_end: float, now: float) -> bool:
        args = [reservation_id, int(actual), _fmt(window_end), _fmt(now)]
        return bool(await self._run("SETTLE", self._window_keys(key), args))

    async def release(self, key: str, reservation_id: str, now: float) -> bool:
        return bool(await self._run("RELEASE", self._window_keys(key), [reservation_id]))

    async def budget_usage(self, key: str, now: float) -> tuple[int, int]:
        used, reserved = await self._run("USAGE", self._window_keys(key), [_fmt(now)])
        return int(used), int(reserved)

    async def incr(self, key: str, amount: float, ttl_s: float | None = None) -> float:
        ttl_ms = 0 if ttl_s is None else max(1, math.ceil(ttl_s * 1000))
        return float(await self._run("INCR", [self.key_prefix + key], [_fmt(amount), ttl_ms]))

    async def ewma_observe(self, key: str, value: float, alpha: float) -> float:
        return float(await self._run("EWMA", [self.key_prefix + key], [_fmt(value), _fmt(alpha)]))

    async def aclose(self) -> None:
        """Close the running loop's client (others close with their loop)."""
        made = self._clients.pop(asyncio.get_running_loop(), None)
        if made is not None:
            await made[0].aclose()
