"""SQLite state backend: several processes on one machine, state survives restarts.

The database runs in WAL mode and every operation is one ``BEGIN IMMEDIATE`` transaction, so
concurrent processes serialise on SQLite's write lock (waiting up to ``busy_timeout_s``). Each
thread gets its own connection. A file that is not a SQLite database raises
:class:`~gateway.state.errors.StateCorruptError` naming the path; it is never overwritten.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from gateway.state import _logic
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
from gateway.state.errors import StateBackendError, StateBackendUnavailableError, StateCorruptError

DEFAULT_BUSY_TIMEOUT_S = 10.0
_PURGE_EVERY = 500  # writes per connection between sweeps of expired keys
# sqlite3.OperationalError messages that mean the state cannot be reached now (so `fail_open` can
# degrade), not that a statement is wrong
_UNAVAILABLE = re.compile(r"database is locked|database table is locked|disk I/O error")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS budget (key TEXT PRIMARY KEY, used INTEGER NOT NULL, window_end REAL NOT NULL);
CREATE TABLE IF NOT EXISTS reservation (
    key TEXT NOT NULL, id TEXT NOT NULL, amount INTEGER NOT NULL, expires_at REAL NOT NULL,
    PRIMARY KEY (key, id));
CREATE TABLE IF NOT EXISTS settled (key TEXT NOT NULL, id TEXT NOT NULL, window_end REAL NOT NULL,
    PRIMARY KEY (key, id));
CREATE TABLE IF NOT EXISTS usage (record_id TEXT PRIMARY KEY, ts REAL NOT NULL, body TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts);
CREATE INDEX IF NOT EXISTS budget_end ON budget (window_end);
CREATE INDEX IF NOT EXISTS settled_end ON settled (window_end);
"""


class _Handle:
    """One thread's connection, with the lock its transactions and ``close`` take."""

    __slots__ = ("closed", "db", "lock", "pid")

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.lock = threading.Lock()
        self.pid = os.getpid()
        self.closed = False


class SQLiteBackend:
    """A :class:`~gateway.state.base.StateBackend` in one SQLite file.

    Args:
        path: The database file; created (with its tables) if missing.
        busy_timeout_s: How long a writer waits for another process's transaction.
        clock: Returns the current Unix time; used only to expire keys with a TTL.

    Raises:
        StateCorruptError: The file exists but is not a readable SQLite database.
        StateBackendError: The file cannot be opened (missing directory, permissions).

    Example:
        >>> import tempfile, os
        >>> backend = SQLiteBackend(os.path.join(tempfile.mkdtemp(), "state.sqlite"))
        >>> backend.incr("requests", 1)
        1.0
    """

    def __init__(
        self,
        path: str,
        *,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.path = str(path)
        self._busy_timeout_s = busy_timeout_s
        self._clock = clock or time.time
        self._local = threading.local()
        self._all: list[_Handle] = []
        self._all_lock = threading.Lock()
        self._writes = itertools.count(1)
        with self._errors():
            handle = self._connect()
            with handle.lock:
                handle.db.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"SQLiteBackend({self.path!r})"

    def _connect(self) -> _Handle:
        """This thread's connection (one per thread and process; opened on first use)."""
        handle: _Handle | None = getattr(self._local, "handle", None)
        if handle is None or handle.pid != os.getpid():  # never reuse a connection across fork
            db = sqlite3.connect(
                self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            handle = _Handle(db)
            self._local.handle = handle
            with self._all_lock:
                self._all.append(handle)
        return handle

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """The one place where sqlite3's errors become state errors."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if _UNAVAILABLE.search(str(exc)):  # held by another writer past the busy timeout, or gone
                raise StateBackendUnavailableError(
                    f"SQLite state file {self.path!r} is unavailable: {exc}", url=f"sqlite:///{self.path}"
                ) from exc
            raise StateBackendError(f"SQLite state file {self.path!r}: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            raise StateCorruptError(self.path, str(exc)) from exc

    @contextlib.contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction; writers take the lock up front (``BEGIN IMMEDIATE``): no upgrade deadlock."""
        with self._errors():
            handle = self._connect()
            handle.lock.acquire()  # close() takes it too: a connection is never closed under a query
            if handle.closed:  # closed meanwhile (close() swapped the thread-locals first): a new one
                handle.lock.release()
                handle = self._connect()
                handle.lock.acquire()
            try:
                db = handle.db
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            finally:
                handle.lock.release()

    def _read(self, db: sqlite3.Connection, key: str) -> Any:
        row = db.execute("SELECT value, expires_at FROM kv WHERE key = ?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= self._clock()):
            return None
        return json.loads(row[0])

    def _write(self, db: sqlite3.Connection, key: str, value: Any, ttl_s: float | None) -> None:
        now = self._clock()
        expires = None if ttl_s is None else now + ttl_s
        db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?, ?)", (key, json.dumps(value), expires))
        if next(self._writes) % _PURGE_EVERY == 0:
            db.execute("DELETE FROM kv WHERE expires_at <= ?", (now,))

    def incr(self, key: str, amount: float, ttl_s: float | None = None) -> float:
        with self._tx() as db:
            row = db.execute("SELECT value, expires_at FROM kv WHERE key = ?", (key,)).fetchone()
            if row is None or (row[1] is not None and row[1] <= self._clock()):
                value = float(amount)
                self._write(db, key, value, ttl_s)
            else:
                value = float(json.loads(row[0])) + amount
                db.execute("UPDATE kv SET value = ? WHERE key = ?", (json.dumps(value), key))
            return value

    def get_json(self, key: str) -> JSONValue | None:
        with self._tx(write=False) as db:
            return self._read(db, key)

    def set_json(self, key: str, value: JSONValue, ttl_s: float | None = None) -> None:
        with self._tx() as db:
            self._write(db, key, value, ttl_s)

    def ewma_observe(self, key: str, value: float, alpha: float) -> float:
        with self._tx() as db:
            mean = _logic.ewma(self._read(db, key), value, alpha)
            self._write(db, key, mean, None)
            return mean

    def rate_limit(
        self, key: str, rate_per_s: float, burst: float, cost: float, now: float, *, force: bool = False
    ) -> Decision:
        with self._tx() as db:
            new_tat, decision = _logic.gcra(self._read(db, key), now, rate_per_s, burst, cost, force)
            if new_tat is not None:
                self._write(db, key, new_tat, _logic.gcra_ttl(new_tat, now))
            return decision

    def _open_window(self, db: sqlite3.Connection, key: str, window_end: float, now: float) -> int:
        """Return the window's settled spend, starting a fresh window (and sweeping ended ones)."""
        row = db.execute("SELECT used, window_end FROM budget WHERE key = ?", (key,)).fetchone()
        if row is not None and row[1] > now:
            return int(row[0])
        for table in ("budget", "settled"):
            db.execute(f"DELETE FROM {table} WHERE window_end <= ?", (now,))  # noqa: S608
        db.execute("DELETE FROM reservation WHERE key NOT IN (SELECT key FROM budget)")
        db.execute("INSERT OR REPLACE INTO budget VALUES (?, 0, ?)", (key, window_end))
        return 0

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
        with self._tx() as db:
            used = self._open_window(db, key, window_end, now)
            reclaimed = db.execute(
                "DELETE FROM reservation WHERE key = ? AND expires_at <= ?", (key, now)
            ).rowcount
            (reserved,) = db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM reservation WHERE key = ?", (key,)
            ).fetchone()
            known = db.execute(
                "SELECT 1 FROM reservation WHERE key = ?1 AND id = ?2 UNION ALL "
                "SELECT 1 FROM settled WHERE key = ?1 AND id = ?2",
                (key, reservation_id),
            ).fetchone()
            if known is not None:
                return ReserveResult(True, used, reserved, reclaimed)
            if used + reserved + amount > limit:
                return ReserveResult(False, used, reserved, reclaimed)
            db.execute(
                "INSERT INTO reservation VALUES (?, ?, ?, ?)", (key, reservation_id, amount, now + lease_s)
            )
            return ReserveResult(True, used, reserved + amount, reclaimed)

    def settle(self, key: str, reservation_id: str, actual: int, window_end: float, now: float) -> bool:
        with self._tx() as db:
            self._open_window(db, key, window_end, now)
            inserted = db.execute(
                "INSERT OR IGNORE INTO settled VALUES (?, ?, ?)", (key, reservation_id, window_end)
            ).rowcount
            if not inserted:
                return False
            db.execute("DELETE FROM reservation WHERE key = ? AND id = ?", (key, reservation_id))
            db.execute("UPDATE budget SET used = used + ? WHERE key = ?", (actual, key))
            return True

    def release(self, key: str, reservation_id: str, now: float) -> bool:
        with self._tx() as db:
            cursor = db.execute("DELETE FROM reservation WHERE key = ? AND id = ?", (key, reservation_id))
            return cursor.rowcount > 0

    def renew(self, key: str, reservation_id: str, lease_s: float, now: float) -> bool:
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE reservation SET expires_at = ? WHERE key = ? AND id = ? AND expires_at > ?",
                (now + lease_s, key, reservation_id, now),
            )
            return cursor.rowcount > 0

    def budget_usage(self, key: str, now: float) -> tuple[int, int]:
        with self._tx(write=False) as db:
            row = db.execute("SELECT used, window_end FROM budget WHERE key = ?", (key,)).fetchone()
            if row is None or row[1] <= now:
                return (0, 0)
            (reserved,) = db.execute(
                "SELECT COALESCE(SUM(amount), 0) FROM reservation WHERE key = ? AND expires_at > ?",
                (key, now),
            ).fetchone()
            return int(row[0]), int(reserved)

    def _breaker(self, key: str, change: Callable[[dict[str, Any]], bool]) -> BreakerState:
        with self._tx() as db:
            state = self._read(db, f"breaker:{key}") or _logic.new_breaker()
            allowed = change(state)
            self._write(db, f"breaker:{key}", state, None)
            return _logic.breaker_view(state, allowed)

    def breaker_allow(self, key: str, now: float) -> BreakerState:
        return self._breaker(key, lambda state: _logic.breaker_allow(state, now))

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
        def change(state: dict[str, Any]) -> bool:
            _logic.breaker_record(state, ok, now, window_s, min_calls, error_rate, cooldown_s, probes)
            return bool(state["status"] != "open")

        return self._breaker(key, change)

    def append_usage(self, records: Sequence[UsageRecord]) -> None:
        rows = [(r.record_id, r.ts, _logic.usage_to_json(r)) for r in records]
        with self._tx() as db:
            db.executemany("INSERT OR IGNORE INTO usage VALUES (?, ?, ?)", rows)

    def query_usage(
        self, since: float, group_by: Sequence[str] = (), until: float | None = None
    ) -> list[UsageTotal]:
        return sum_usage(self.usage_records(since, until), group_by)

    def usage_records(self, since: float, until: float | None = None) -> list[UsageRecord]:
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT body FROM usage WHERE ts >= ? AND ts < ?",
                (since, float("inf") if until is None else until),
            ).fetchall()
        return [_logic.usage_from_json(body) for (body,) in rows]

    def prune_usage(self, before: float) -> int:
        with self._tx() as db:
            return db.execute("DELETE FROM usage WHERE ts < ?", (before,)).rowcount

    def put_eval(self, eval_set: str, model: str, record: Mapping[str, JSONValue]) -> None:
        self.set_json(eval_key(eval_set, model), dict(record))

    def latest_eval(self, eval_set: str, model: str) -> dict[str, JSONValue] | None:
        value = self.get_json(eval_key(eval_set, model))
        return None if value is None else dict(value)

    def close(self) -> None:
        """Close every thread's connection, each once no query runs on it (a background thread may
        still be finishing one: closing under it would crash sqlite3); later calls reopen."""
        self._local = threading.local()
        with self._all_lock:
            handles, self._all = self._all, []
        for handle in handles:
            with handle.lock:
                handle.closed = True
                handle.db.close()
