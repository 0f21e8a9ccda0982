"""Where usage records go, written off the request path.

A sink is anything with ``write(records)`` and ``close()``:

- :class:`MemorySink`: keeps full records in the process (tests, small tools).
- :class:`StateSink`: appends to a :class:`~gateway.state.base.StateBackend` (memory, SQLite file,
  Redis), which stores each ``record_id`` once and sums usage for ``switchyard usage``.
- :class:`CallbackSink`: hands each full record to your function (a queue, a data warehouse).

The request path never calls a sink. It calls :meth:`BufferedWriter.submit`, which appends to a
bounded in-memory queue and returns; a background thread writes batches. When the queue is full the
record is not written: it is **counted** (``stats().dropped``) and reported by a warning, never lost
silently. The queue is flushed by :meth:`BufferedWriter.flush`, on :meth:`BufferedWriter.close` and
when the interpreter exits. A sink that raises is retried on the next batch (up to
``max_write_attempts``), then its records are counted as ``failed`` and logged.
"""

from __future__ import annotations

import atexit
import collections
import logging
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from gateway._redact import redact
from gateway.metering.records import UsageRecord
from gateway.metering.spool import DiskSpool, default_spool_dir
from gateway.state.base import StateBackend
from gateway.state.errors import StateBackendUnavailableError

__all__ = ["BatchWriter", "BufferedWriter", "CallbackSink", "MemorySink", "Sink", "StateSink", "WriterStats"]

logger = logging.getLogger("gateway.metering")

DEFAULT_QUEUE_SIZE = 10_000
DEFAULT_BATCH_SIZE = 500
DEFAULT_FLUSH_INTERVAL_S = 0.25
DEFAULT_MAX_WRITE_ATTEMPTS = 3

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


@runtime_checkable
class Sink(Protocol):
    """Stores usage records; called only from a writer's background thread."""

    def write(self, records: Sequence[UsageRecord]) -> None:
        """Store ``records``; a record whose ``record_id`` is already stored must change nothing."""
        ...

    def close(self) -> None:
        """Release resources."""
        ...


class MemorySink:
    """Full usage records kept in memory, one per ``record_id``.

    Example:
        >>> sink = MemorySink()
        >>> sink.write([UsageRecord("r1", 0, 0.0, "gpt-4o-mini", "openai", prompt_tokens=3)] * 2)
        >>> len(sink.records)
        1
    """

    def __init__(self) -> None:
        self._records: dict[str, UsageRecord] = {}
        self._lock = threading.Lock()

    def write(self, records: Sequence[UsageRecord]) -> None:
        with self._lock:
            for record in records:
                self._records.setdefault(record.record_id, record)

    @property
    def records(self) -> list[UsageRecord]:
        """The stored records, in the order they arrived."""
        with self._lock:
            return list(self._records.values())

    def close(self) -> None:
        return None


_DEFAULT_SPOOL: Any = object()


class StateSink:
    """Usage records appended to a state backend (``StateBackend.append_usage``, idempotent).

    The backend stores the fields its totals group by (see ``UsageRecord.to_state``). When the
    backend is unreachable, the batch goes to an on-disk spool (``spool.py``) instead of failing,
    and the spool is drained into the backend once it answers again: at the next batch, or within
    ``retry_interval_s`` when the writer is idle. So a state outage loses no usage record (up to
    the spool's bound, beyond which records are counted and logged).

    Args:
        backend: An open backend; :meth:`from_url` opens one from ``memory://``, ``sqlite:///path``
            or ``redis://…``.
        owns_backend: Close the backend when the sink closes.
        spool: A ``DiskSpool``; by default one per backend under ``default_spool_dir`` (none for an
            in-memory backend, which cannot be unreachable); ``None`` to raise instead.
        retry_interval_s: How often an idle writer tries to drain the spool.
    """

    def __init__(
        self,
        backend: StateBackend,
        *,
        owns_backend: bool = False,
        spool: DiskSpool | None = _DEFAULT_SPOOL,
        retry_interval_s: float = 1.0,
    ) -> None:
        self.backend = backend
        self._owns = owns_backend
        if spool is _DEFAULT_SPOOL:
            from gateway.state.memory import MemoryBackend

            spool = (
                None if isinstance(backend, MemoryBackend) else DiskSpool(default_spool_dir(repr(backend)))
            )
        self.spool = spool
        self._retry_interval_s = retry_interval_s
        self._next_drain = 0.0
        # Records another process left behind are drained at the first batch or idle tick.
        self._spooled = spool is not None and spool.pending() > 0

    @classmethod
    def from_url(cls, url: str) -> StateSink:
        """Open the backend ``url`` names; the sink closes it."""
        from gateway.state import open_backend

        return cls(open_backend(url), owns_backend=True)

    def write(self, records: Sequence[UsageRecord]) -> None:
        if self.spool is None:
            self._append(records)
            return
        try:
            if self._spooled:
                self._drain(self.spool)
            self._append(records)
        except StateBackendUnavailableError as exc:
            self._spool(self.spool, records, exc)

    def _append(self, records: Sequence[UsageRecord]) -> None:
        self.backend.append_usage([record.to_state() for record in records])

    def _spool(self, spool: DiskSpool, records: Sequence[UsageRecord], exc: Exception) -> None:
        if not self._spooled:
            logger.warning(
                "usage records spooled to %s until the state backend is back: %s", spool.directory, exc
            )
        self._spooled = True
        self._next_drain = time.monotonic() + self._retry_interval_s
        spool.put(records)

    def _drain(self, spool: DiskSpool) -> None:
        written = spool.drain(self._append)
        self._spooled = False
        if written:
            logger.warning("usage spool drained: %d records written to the state backend", written)

    def tick(self) -> None:
        """Called by an idle writer: drain the spool once the backend may be back."""
        if self.spool is None or not self._spooled or time.monotonic() < self._next_drain:
            return
        try:
            self._drain(self.spool)
        except StateBackendUnavailableError:
            self._next_drain = time.monotonic() + self._retry_interval_s

    def close(self) -> None:
        if self._spooled and self.spool is not None:
            try:
                self._drain(self.spool)
            except StateBackendUnavailableError:
                logger.warning(
                    "usage records left in %s (the state backend is unreachable); the next process "
                    "using this backend writes them",
                    self.spool.directory,
                )
        if self._owns:
            self.backend.close()

    def __repr__(self) -> str:
        return f"StateSink({self.backend!r})"


class CallbackSink:
    """Calls ``callback(record)`` for each record, from the writer's thread.

    Args:
        callback: Receives each :class:`UsageRecord` once (the meter drops replays).
    """

    def __init__(self, callback: Callable[[UsageRecord], object]) -> None:
        self.callback = callback

    def write(self, records: Sequence[UsageRecord]) -> None:
        for record in records:
            self.callback(record)

    def close(self) -> None:
        return None


class BatchWriter(Protocol[T_contra]):
    """What a :class:`BufferedWriter` writes to: a sink, or the meter's pricing stage."""

    def write(self, records: Sequence[T_contra]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters of one writer.

    Attributes:
        submitted: Records accepted into the queue.
        written: Records the sink stored.
        dropped: Records refused because the queue was full.
        failed: Records the sink refused ``max_write_attempts`` times.
        queued: Records waiting now.
    """

    submitted: int
    written: int
    dropped: int
    failed: int
    queued: int


class BufferedWriter(Generic[T]):
    """A bounded queue in front of one sink, written by a daemon thread.

    Args:
        sink: Where the records go.
        queue_size: The most records waiting; beyond it a record is dropped and counted.
        batch_size: The most records per ``sink.write``.
        flush_interval_s: How long a record may wait for a batch to fill.
        max_write_attempts: How many times a failing batch is tried before it is counted as failed.
    """

    def __init__(
        self,
        sink: BatchWriter[T],
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        max_write_attempts: int = DEFAULT_MAX_WRITE_ATTEMPTS,
    ) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ValueError(f"queue_size and batch_size must be >= 1, got {queue_size} and {batch_size}")
        self.sink = sink
        self._queue: collections.deque[T] = collections.deque()
        self._size, self._batch, self._interval = queue_size, batch_size, flush_interval_s
        self._max_attempts = max_write_attempts
        self._cond = threading.Condition()
        self._in_flight = 0
        self._closing = self._wake = False
        self._submitted = self._written = self._dropped = self._failed = 0
        self._thread = threading.Thread(target=self._run, name="switchyard-usage-writer", daemon=True)
        self._thread.start()
        self._exit_hook = _close_at_exit(self)
        atexit.register(self._exit_hook)

    def submit(self, record: T) -> bool:
        """Queue ``record`` without blocking; ``False`` (counted, warned) when the queue is full."""
        with self._cond:
            if self._closing or len(self._queue) >= self._size:
                self._dropped += 1
                dropped = self._dropped
            else:
                self._queue.append(record)
                self._submitted += 1
                if len(self._queue) >= self._batch:
                    self._cond.notify()
                return True
        if dropped == 1 or dropped % 1000 == 0:
            logger.warning(
                "usage queue of %r full (%d records): %d records dropped so far; raise queue_size or "
                "check that the sink keeps up",
                type(self.sink).__name__,
                self._size,
                dropped,
            )
        return False

    def stats(self) -> WriterStats:
        with self._cond:
            return WriterStats(
                self._submitted,
                self._written,
                self._dropped,
                self._failed,
                len(self._queue) + self._in_flight,
            )

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Write everything queued now; ``True`` when the queue drained within ``timeout``."""
        with self._cond:
            self._wake = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: not self._queue and not self._in_flight, timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Flush, stop the thread and close the sink. Records submitted afterwards are dropped."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        atexit.unregister(self._exit_hook)
        self.sink.close()

    def _run(self) -> None:
        attempts = 0
        batch: list[T] = []
        while True:
            with self._cond:
                if not batch:
                    self._cond.wait_for(self._ready, None if self._closing else self._interval)
                    self._wake = False
                    batch = [self._queue.popleft() for _ in range(min(self._batch, len(self._queue)))]
                    self._in_flight = len(batch)
                if not batch and self._closing:
                    self._cond.notify_all()
                    return
            if not batch:
                self._tick()
            if batch:
                ok = self._write(batch, attempts)
                attempts = 0 if ok else attempts + 1
                if ok or attempts >= self._max_attempts:
                    batch, attempts = [], 0
                elif not self._closing:
                    time.sleep(min(self._interval, 1.0))
            with self._cond:
                if not batch:
                    self._in_flight = 0
                self._cond.notify_all()

    def _tick(self) -> None:
        tick = getattr(self.sink, "tick", None)
        if tick is None:
            return
        try:
            tick()
        except Exception as exc:  # noqa: BLE001 - a failing idle hook is logged, the writer goes on
            logger.warning("usage sink %s idle hook failed: %s", type(self.sink).__name__, redact(str(exc)))

    def _ready(self) -> bool:
        return self._closing or self._wake or len(self._queue) >= self._batch

    def _write(self, batch: list[T], attempts: int) -> bool:
        try:
            self.sink.write(batch)
        except Exception as exc:  # noqa: BLE001 - a sink's failure is counted and logged, never raised
            last = attempts + 1 >= self._max_attempts
            with self._cond:
                if last:
                    self._failed += len(batch)
            logger.warning(
                "usage sink %s failed to write %d records (%s: %s)%s",
                type(self.sink).__name__,
                len(batch),
                type(exc).__name__,
                redact(str(exc)),
                "; giving up on them" if last else "; will retry",
            )
            return False
        with self._cond:
            self._written += len(batch)
        return True


def _close_at_exit(writer: BufferedWriter[Any]) -> Callable[[], None]:
    ref = weakref.ref(writer)

    def close() -> None:
        alive = ref()
        if alive is not None:
            alive.close(timeout=5.0)

    return close
