"""Hedging for the blocking client: the same race as ``hedge_stream.py`` and the async executor's, in threads.

A blocking call cannot be raced in its own thread, so each contender runs in a worker thread (with
the caller's context variables, so its attempts reach the request's metering and budgets) and hands
its outcome to the caller's thread through a queue. The decisions are the asyncio twin's:

- unary: the primary starts; if it has not answered after the hedge delay, the partner starts; the
  first success wins and the other is left to finish unread (the upstream bills it), recorded as
  ``cancelled`` with its usage; both failing raises the primary's error;
- stream: the first contender to produce a content chunk wins and streams through a one-slot queue;
  the other is stopped (its socket shut, so a read in progress ends) and recorded as ``cancelled``;
  a contender failing before any chunk is reported and the race goes on with the other.
"""

from __future__ import annotations

import contextvars
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from gateway.core.attempts import Candidate, Outcome, StreamAttempt, StreamInfo, stream_outcome
from gateway.core.errors import APIError
from gateway.core.types import ChatCompletionChunk
from gateway.resilience.hedge_stream import HedgeFailed, follow_item
from gateway.resilience.run import RequestRun

Item = tuple[str, Any]  # ("chunk", chunk) | ("end", None) | ("error", APIError)
SyncOpener = Callable[[StreamAttempt, StreamInfo], Iterator[ChatCompletionChunk]]


def start(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon thread running ``target`` in a copy of the caller's context."""
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(target,), name=name, daemon=True)
    thread.start()
    return thread


# --- unary -----------------------------------------------------------------------------------------

Served = tuple[Candidate, float, Any, Any]  # the winner, its start, its result and usage
Once = Callable[[Candidate], tuple[Any, Any]]  # one call: (result, usage), or raises APIError


class _Race:
    """Who won: decided once, under a lock, so that exactly one success is served and every other
    attempt is recorded by its own thread (a success as ``cancelled`` with its usage)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.winner: int | None = None

    def claim(self, index: int) -> bool:
        with self._lock:
            if self.winner is None:
                self.winner = index
            return self.winner == index

    def lost(self, index: int) -> bool:
        with self._lock:
            return self.winner is not None and self.winner != index


def hedged_unary(run: RequestRun, once: Once, first: Candidate, second: Candidate, delay: float) -> Served:
    """The first successful of ``first`` and (after ``delay``, if admitted) ``second``; the winner's
    success is recorded by the caller, every other outcome here. Both failing raises the primary's
    error; a primary failing before the delay raises it without starting the hedge."""
    outcomes: queue.Queue[tuple[int, BaseException | Served]] = queue.Queue()
    race = _Race()

    def side(index: int, candidate: Candidate) -> Callable[[], None]:
        def attempt() -> None:
            t0 = time.perf_counter()
            try:
                result, usage = once(candidate)
            except APIError as exc:
                if race.lost(index):  # the other answered: no breaker hears of this one
                    run.finish(candidate, t0, None, Outcome(outcome="cancelled"))
                else:
                    run.finish(candidate, t0, exc)
                outcomes.put((index, exc))
                return
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread as is
                outcomes.put((index, exc))
                return
            if race.claim(index):
                outcomes.put((index, (candidate, t0, result, usage)))
            else:  # finished unread: the upstream bills it, so it is metered
                run.finish(candidate, t0, None, Outcome(usage=usage, outcome="cancelled"))

        return attempt

    start(side(0, first), "switchyard-hedge-primary")
    try:
        first_outcome: tuple[int, BaseException | Served] | None = outcomes.get(timeout=delay)
    except queue.Empty:
        first_outcome = None
    if first_outcome is None and run.admit(second, first=True):
        start(side(1, second), "switchyard-hedge")
        errors: dict[int, BaseException] = {}
        while len(errors) < 2:
            index, value = outcomes.get()
            if not isinstance(value, BaseException):
                return value
            errors[index] = value
        raise errors[0]
    _, value = first_outcome if first_outcome is not None else outcomes.get()
    if isinstance(value, BaseException):
        raise value
    return value


# --- streams ---------------------------------------------------------------------------------------


class Contender:
    """One stream of the race, pumped from its own thread into a one-slot queue."""

    def __init__(
        self, run: RequestRun, candidate: Candidate, open_stream: SyncOpener, arrived: threading.Event
    ) -> None:
        self.run = run
        self.arrived = arrived  # set whenever an item is queued (the race waits on it)
        self.candidate = candidate
        self.attempt = StreamAttempt(candidate, time.perf_counter(), run.plan.buffer_tokens)
        self.info = StreamInfo()
        self.items: queue.Queue[Item] = queue.Queue(maxsize=1)
        self.stopped = threading.Event()
        self.reported = False
        self._lock = threading.Lock()
        self._chunks = open_stream(self.attempt, self.info)
        self.thread = start(self._pump, f"switchyard-hedge-{candidate.name}")

    def _pump(self) -> None:
        try:
            for chunk in self._chunks:
                if not self._put(("chunk", chunk)):
                    return
        except APIError as exc:
            self._put(("error", exc))
            return
        except Exception as exc:  # noqa: BLE001 - a stopped contender's socket was shut under it
            if not self.stopped.is_set():
                self._put(("error", APIError(f"hedged stream failed: {type(exc).__name__}", None, body=None)))
            return
        finally:
            self._chunks.close()  # type: ignore[attr-defined]
        self._put(("end", None))

    def _put(self, item: Item) -> bool:
        while not self.stopped.is_set():
            try:
                self.items.put(item, timeout=0.05)
            except queue.Full:
                continue
            self.arrived.set()
            return True
        return False

    def get(self, timeout: float | None = None) -> Item | None:
        try:
            return self.items.get(timeout=timeout)
        except queue.Empty:
            return None

    def get_nowait(self) -> Item | None:
        try:
            return self.items.get_nowait()
        except queue.Empty:
            return None

    def report(self, error: APIError | None, outcome: Outcome | None = None) -> None:
        with self._lock:
            if self.reported:
                return
            self.reported = True
        self.run.finish(
            self.candidate, self.attempt.t0, error, outcome or stream_outcome(self.attempt, error)
        )

    def stop(self, outcome: str = "cancelled") -> None:
        """Stop pumping (its socket is shut so a read in progress ends) and record it as ``outcome``."""
        self.stopped.set()
        _shut(self.info.http_response)  # the pump thread then ends on its own; nothing waits for it
        base = stream_outcome(self.attempt, None, closed=True)
        self.report(None, Outcome(base.usage, base.ttft_s, base.streamed_text, base.estimated, outcome))


def _shut(response: Any) -> None:
    stream = getattr(response, "extensions", {}).get("network_stream") if response is not None else None
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def hedged_stream_sync(
    run: RequestRun,
    first: Candidate,
    second: Candidate,
    delay: float,
    open_stream: Callable[[Candidate], SyncOpener],
    holder: StreamInfo,
) -> Iterator[ChatCompletionChunk]:
    """Stream from whichever of ``first`` and ``second`` (started after ``delay``) answers first."""
    arrived = threading.Event()
    primary = Contender(run, first, open_stream(first), arrived)
    contenders = [primary]
    try:
        winner, item = _first_item(run, primary, second, delay, open_stream, contenders)
        yield from _follow(run, winner, item, holder)
    except GeneratorExit:
        for contender in contenders:
            contender.stop("closed" if contender.attempt.delivered else "cancelled")
        raise
    finally:
        for contender in contenders:
            if not contender.reported:
                contender.stop()


def _first_item(
    run: RequestRun,
    primary: Contender,
    second: Candidate,
    delay: float,
    open_stream: Callable[[Candidate], SyncOpener],
    contenders: list[Contender],
) -> tuple[Contender, Item]:
    item = primary.get(timeout=delay)
    if item is None and run.admit(second, first=True):
        hedge = Contender(run, second, open_stream(second), primary.arrived)
        contenders.append(hedge)
        return _race(primary, hedge)
    if item is None:
        item = primary.get()
    assert item is not None
    if item[0] == "error":
        primary.report(item[1])
        raise HedgeFailed(item[1])
    return primary, item


def _race(primary: Contender, hedge: Contender) -> tuple[Contender, Item]:
    racing = [primary, hedge]
    errors: dict[int, APIError] = {}
    while racing:
        primary.arrived.clear()  # before looking: an item queued after the look sets it again
        ready = [(c, item) for c in racing if (item := c.get_nowait()) is not None]
        if not ready:
            primary.arrived.wait()
            continue
        for contender, item in ready:
            if item[0] == "error":
                contender.report(item[1])
                errors[id(contender)] = item[1]
                racing.remove(contender)
                continue
            for other in racing:
                if other is not contender:
                    other.stop()
            return contender, item
    raise HedgeFailed(errors.get(id(primary)) or errors[id(hedge)])


def _follow(
    run: RequestRun, winner: Contender, item: Item, holder: StreamInfo
) -> Iterator[ChatCompletionChunk]:
    """The winner's chunks, from its first item to the end or a failure."""
    while (chunk := follow_item(run, winner, item, holder)) is not None:
        yield chunk
        got = winner.get()
        assert got is not None
        item = got
