"""Redis state backend: state shared by every process on every machine.

Every multi-step operation is one Lua script, run with EVALSHA and loaded again transparently
when Redis answers ``NOSCRIPT`` (after a restart or ``SCRIPT FLUSH``): redis-py's
``register_script`` does exactly that.

Failure behaviour: each command gives up after ``timeout_s`` (connect and read alike) and redis-py's
own retries are switched off, so an unreachable, stopped or restarting server surfaces as
:class:`~gateway.state.errors.StateBackendUnavailableError` within about ``timeout_s``; nothing
hangs. After a failure, calls fail at once for ``retry_interval_s`` rather than each waiting out
the timeout. Callers decide what that means: budgets fail closed, rate limits follow their
``fail_open`` flag. Once the server is back, the next call reconnects by itself. A command that
timed out may still run when a stopped server resumes: a late ``reserve`` then holds room until its
lease ends (the safe direction), and a late ``settle`` is idempotent.

Keys are ``<key_prefix><key>``. The keys one script touches share a hash tag (a budget window's
four keys, the two usage keys), which keeps the scripts Cluster-safe; this class itself speaks to
one server (or a proxy in front of a cluster).

Retention: a budget window's keys expire a minute after the window ends (its settled ids are kept
until then, which is what makes settlement idempotent); a rate limit's key expires once it no longer
restricts anything; usage records stay until :meth:`RedisBackend.prune_usage`.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway.state import _logic, _lua
from gateway.state.base import (
    BreakerState,
    Decision,
    JSONValue,
    ReserveResult,
    UsageRecord,
    UsageTotal,
    eval_key,
    sum_usage,
)
from gateway.state.errors import StateBackendError, StateBackendUnavailableError
from gateway.state.urls import redact_url

if TYPE_CHECKING:
    from redis.commands.core import Script

DEFAULT_KEY_PREFIX = "switchyard:"
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_RETRY_INTERVAL_S = 0.25
_USAGE_CHUNK = 1000


def _fmt(value: float) -> str:
    return repr(float(value))


class RedisBackend:
    """A :class:`~gateway.state.base.StateBackend` on a Redis server.

    Args:
        url: ``redis://[:password@]host:port/db`` (or ``rediss://``).
        key_prefix: Prepended to every key, so several gateways (or tests) can share one server.
        timeout_s: Connect and read timeout of every command.
        retry_interval_s: After a connection failure, calls fail at once for this long instead of
            each waiting ``timeout_s`` on a dead server; then the next call tries again.
        monotonic: The clock of ``retry_interval_s``.

    Raises:
        StateBackendUnavailableError: The server cannot be reached at start-up. The message names
            the URL with its password replaced by ``***``.
    """

    def __init__(
        self,
        url: str,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry_interval_s: float = DEFAULT_RETRY_INTERVAL_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = redact_url(url)
        self.key_prefix = key_prefix
        self._retry_interval_s = retry_interval_s
        self._monotonic = monotonic
        self._down_until = 0.0
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
            driver_info=None,  # no CLIENT SETINFO round trip on each (re)connect
        )
        self._password = self._client.connection_pool.connection_kwargs.get("password")
        script = self._client.register_script
        self._incr, self._ewma, self._gcra = script(_lua.INCR), script(_lua.EWMA), script(_lua.GCRA)
        self._reserve, self._settle = script(_lua.RESERVE), script(_lua.SETTLE)
        self._release, self._usage = script(_lua.RELEASE), script(_lua.USAGE)
        self._renew = script(_lua.RENEW)
        self._allow, self._record = script(_lua.BREAKER_ALLOW), script(_lua.BREAKER_RECORD)
        self._append, self._prune = script(_lua.APPEND_USAGE), script(_lua.PRUNE_USAGE)
        # One hash tag for both usage keys, so their scripts stay within one Cluster slot.
        self._usage_keys = [f"{key_prefix}{{usage}}:records", f"{key_prefix}{{usage}}:index"]
        with self._errors():
            self._client.ping()

    def __repr__(self) -> str:
        return f"RedisBackend({self.url!r}, key_prefix={self.key_prefix!r})"

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """The one place where redis-py's errors become state errors, with the password removed."""
        if self._monotonic() < self._down_until:
            raise StateBackendUnavailableError(
                f"Redis at {self.url} failed less than {self._retry_interval_s} s ago; not retrying yet",
                url=self.url,
            )
        try:
            yield
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._down_until = self._monotonic() + self._retry_interval_s
            # The pool's other connections are as dead (a restarted server reset them all): drop
            # them now, rather than fail once on each after the server is back.
            self._client.connection_pool.disconnect(inuse_connections=False)
            raise StateBackendUnavailableError(
                f"cannot reach Redis at {self.url}: {self._scrub(exc)}. Check that the server is running "
                "and reachable, or choose another state backend.",
                url=self.url,
            ) from None
        except redis.RedisError as exc:
            raise StateBackendError(f"Redis at {self.url} failed: {self._scrub(exc)}") from None

    def _scrub(self, exc: BaseException) -> str:
        text = str(exc)
        return text.replace(self._password, "***") if self._password else text

    def _key(self, key: str) -> str:
        return self.key_prefix + key

    def _window_keys(self, key: str) -> list[str]:
        base = f"{self.key_prefix}{{{key}}}"
        return [base, base + ":live", base + ":expiry", base + ":settled"]

    def _run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        with self._errors():
            return script(keys=list(keys), args=list(args), client=self._client)

    def incr(self, key: str, amount: float, ttl_s: float | None = None) -> float:
        ttl_ms = 0 if ttl_s is None else max(1, math.ceil(ttl_s * 1000))
        return float(self._run(self._incr, [self._key(key)], [_fmt(amount), ttl_ms]))

    def get_json(self, key: str) -> JSONValue | None:
        with self._errors():
            text = self._client.get(self._key(key))
        return None if text is None else json.loads(text)

    def set_json(self, key: str, value: JSONValue, ttl_s: float | None = None) -> None:
        ttl_ms = None if ttl_s is None else max(1, math.ceil(ttl_s * 1000))
        with self._errors():
            self._client.set(self._key(key), json.dumps(value), px=ttl_ms)

    def ewma_observe(self, key: str, value: float, alpha: float) -> float:
        _logic.ewma(None, value, alpha)  # validates alpha the same way as the other backends
        return float(self._run(self._ewma, [self._key(key)], [_fmt(value), _fmt(alpha)]))

    def rate_limit(
        self, key: str, rate_per_s: float, burst: float, cost: float, now: float, *, force: bool = False
    ) -> Decision:
        _logic.gcra(None, now, rate_per_s, burst, 0, True)  # validates rate and burst
        args = [_fmt(rate_per_s), _fmt(burst), _fmt(cost), _fmt(now), "1" if force else "0"]
        allowed, retry_after, remaining = self._run(self._gcra, [self._key(key)], args)
        return Decision(bool(allowed), float(retry_after), int(remaining))

    def reserve(
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
        granted, used, reserved, reclaimed = self._run(self._reserve, self._window_keys(key), args)
        return ReserveResult(bool(granted), int(used), int(reserved), int(reclaimed))

    def settle(self, key: str, reservation_id: str, actual: int, window_end: float, now: float) -> bool:
        args = [reservation_id, int(actual), _fmt(window_end), _fmt(now)]
        return bool(self._run(self._settle, self._window_keys(key), args))

    def release(self, key: str, reservation_id: str, now: float) -> bool:
        return bool(self._run(self._release, self._window_keys(key), [reservation_id]))

    def renew(self, key: str, reservation_id: str, lease_s: float, now: float) -> bool:
        return bool(
            self._run(self._renew, self._window_keys(key), [reservation_id, _fmt(lease_s), _fmt(now)])
        )

    def budget_usage(self, key: str, now: float) -> tuple[int, int]:
        used, reserved = self._run(self._usage, self._window_keys(key), [_fmt(now)])
        return int(used), int(reserved)

    @staticmethod
    def _breaker(reply: list[Any]) -> BreakerState:
        status, allowed, calls, failures, retry_at = reply
        return BreakerState(status.decode(), bool(allowed), int(calls), int(failures), float(retry_at))

    def breaker_allow(self, key: str, now: float) -> BreakerState:
        return self._breaker(self._run(self._allow, [self._key(f"breaker:{key}")], [_fmt(now)]))

    def breaker_record(
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
        return self._breaker(self._run(self._record, [self._key(f"breaker:{key}")], args))

    def append_usage(self, records: Sequence[UsageRecord]) -> None:
        args: list[Any] = []
        for record in records:
            args += [record.record_id, _fmt(record.ts), _logic.usage_to_json(record)]
        if args:
            self._run(self._append, self._usage_keys, args)

    def query_usage(
        self, since: float, group_by: Sequence[str] = (), until: float | None = None
    ) -> list[UsageTotal]:
        return sum_usage(self.usage_records(since, until), group_by)

    def usage_records(self, since: float, until: float | None = None) -> list[UsageRecord]:
        high = "+inf" if until is None else f"({_fmt(until)}"
        with self._errors():
            records, index = self._usage_keys
            ids: list[Any] = self._client.zrangebyscore(index, _fmt(since), high)  # type: ignore[assignment]
            bodies: list[Any] = []
            for start in range(0, len(ids), _USAGE_CHUNK):
                bodies += self._client.hmget(records, ids[start : start + _USAGE_CHUNK])
        return [_logic.usage_from_json(body) for body in bodies if body is not None]

    def prune_usage(self, before: float) -> int:
        deleted = 0
        while True:
            batch = int(self._run(self._prune, self._usage_keys, [_fmt(before), _USAGE_CHUNK]))
            deleted += batch
            if batch < _USAGE_CHUNK:
                return deleted

    def put_eval(self, eval_set: str, model: str, record: Mapping[str, JSONValue]) -> None:
        self.set_json(eval_key(eval_set, model), dict(record))

    def latest_eval(self, eval_set: str, model: str) -> dict[str, JSONValue] | None:
        value = self.get_json(eval_key(eval_set, model))
        return None if value is None else dict(value)

    def close(self) -> None:
        self._client.close()
