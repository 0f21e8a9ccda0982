"""Hedging a stream (asyncio): two attempts race to their first content chunk; the winner streams.

Each contender's attempt runs in its own task that pumps the chunks its ``StreamAttempt`` lets
through into a one-slot queue (so it stays at most a chunk or two ahead of the caller). The first
contender to produce a chunk wins; the other is cancelled, which closes its connection, and is
reported as ``cancelled``. A contender that fails before any chunk is reported and the race goes
on with the other; when both fail, ``HedgeFailed`` carries the primary's error to the loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from typing import Any

from gateway.core.attempts import Candidate, Outcome, StreamAttempt, StreamInfo, interrupted, stream_outcome
from gateway.core.errors import APIError
from gateway.core.types import ChatCompletionChunk
from gateway.resilience.run import RequestRun

Item = tuple[str, Any]  # ("chunk", chunk) | ("end", None) | ("error", APIError)
Opener = Callable[[StreamAttempt, StreamInfo], AsyncGenerator[ChatCompletionChunk, None]]


class HedgeFailed(Exception):  # noqa: N818 - a signal between the race and the loop, never raised to callers
    """Both contenders failed before any content; ``error`` is the primary's."""

    def __init__(self, error: APIError) -> None:
        super().__init__(str(error))
        self.error = error


class Contender:
    """One attempt of the race, pumping its chunks into a one-slot queue from its own task."""

    def __init__(self, run: RequestRun, candidate: Candidate, open_stream: Opener) -> None:
        self.run = run
        self.candidate = candidate
        self.attempt = StreamAttempt(candidate, time.perf_counter(), run.plan.buffer_tokens)
        self.info = StreamInfo()
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=1)
        self.task = asyncio.create_task(self._pump(open_stream(self.attempt, self.info)))
        self.reported = False

    async def _pump(self, chunks: AsyncGenerator[ChatCompletionChunk, None]) -> None:
        try:
            async with aclosing(chunks) as stream:
                async for chunk in stream:
                    await self.queue.put(("chunk", chunk))
        except APIError as exc:
            await self.queue.put(("error", exc))
            return
        await self.queue.put(("end", None))

    async def get(self) -> Item:
        return await self.queue.get()

    def report(self, error: APIError | None, outcome: Outcome | None = None) -> None:
        if self.reported:
            return
        self.reported = True
        attempt = self.attempt
        self.run.finish(self.candidate, attempt.t0, error, outcome or stream_outcome(attempt, error))

    async def cancel(self, outcome: str = "cancelled") -> None:
        if not self.task.done():
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        base = stream_outcome(self.attempt, None, closed=True)
        self.report(None, dataclasses.replace(base, outcome=outcome))


async def hedged_stream(
    run: RequestRun,
    first: Candidate,
    second: Candidate,
    delay: float,
    open_stream: Callable[[Candidate], Opener],
    holder: StreamInfo,
) -> AsyncGenerator[ChatCompletionChunk, None]:
    """Stream from whichever of ``first`` and ``second`` (started after ``delay``) answers first."""
    primary = Contender(run, first, open_stream(first))
    contenders = [primary]
    try:
        winner, item = await _first_item(run, primary, second, delay, open_stream, contenders)
        async for chunk in _follow(run, winner, item, holder):
            yield chunk
    except (GeneratorExit, asyncio.CancelledError):
        for contender in contenders:
            await contender.cancel("closed" if contender.attempt.delivered else "cancelled")
        raise


async def _first_item(
    run: RequestRun,
    primary: Contender,
    second: Candidate,
    delay: float,
    open_stream: Callable[[Candidate], Opener],
    contenders: list[Contender],
) -> tuple[Contender, Item]:
    try:
        item = await asyncio.wait_for(primary.get(), delay)
    except TimeoutError:
        item = None
    if item is None and await run.aadmit(second, first=True):
        hedge = Contender(run, second, open_stream(second))
        contenders.append(hedge)
        return await _race(primary, hedge)
    if item is None:
        item = await primary.get()
    if item[0] == "error":
        primary.report(item[1])
        raise HedgeFailed(item[1])
    return primary, item


async def _race(primary: Contender, hedge: Contender) -> tuple[Contender, Item]:
    getters = {asyncio.create_task(c.get()): c for c in (primary, hedge)}
    errors: dict[int, APIError] = {}
    try:
        while getters:
            done, _ = await asyncio.wait(getters, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                contender = getters.pop(task)
                item = task.result()
                if item[0] == "error":
                    contender.report(item[1])
                    errors[id(contender)] = item[1]
                    continue
                for other_task, other in getters.items():
                    other_task.cancel()
                    await other.cancel()
                return contender, item
    finally:
        for task in getters:
            task.cancel()
    raise HedgeFailed(errors.get(id(primary)) or errors[id(hedge)])


async def _follow(
    run: RequestRun, winner: Contender, item: Item, holder: StreamInfo
) -> AsyncGenerator[ChatCompletionChunk, None]:
    """The winner's chunks, from its first item to the end or a failure."""
    while (chunk := follow_item(run, winner, item, holder)) is not None:
        yield chunk
        item = await winner.get()


def follow_item(run: RequestRun, winner: Any, item: Item, holder: StreamInfo) -> ChatCompletionChunk | None:
    """One item of the winning contender, for both races (this one and ``hedge_sync.py``): a chunk to
    pass on, ``None`` at its clean end (recorded), or its failure raised (interrupted after content)."""
    kind, value = item
    if kind == "chunk":
        holder.http_response = winner.info.http_response
        holder.candidate = winner.candidate
        return value  # type: ignore[no-any-return]
    if kind == "end":
        winner.report(None)
        holder.http_response = winner.info.http_response
        holder.gateway = run.info(run.records[-1])
        return None
    winner.report(value)
    if winner.attempt.delivered:
        raise interrupted(winner.candidate.target.provider, winner.attempt.delivered, value) from value
    raise HedgeFailed(value)
