"""`AsyncEngine`: one background thread runs `LLMEngine.step()`; callers stream `TokenEvent`s.

Requests and aborts reach the thread through a queue, so the `LLMEngine` is only ever touched by
that thread. Each request's events go back through its own sink: an `asyncio.Queue` fed with
`call_soon_threadsafe` for `generate`, a `queue.Queue` for `generate_sync`.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, cast

import torch

from local_engine.engine.llm_engine import EngineStats, LLMEngine
from local_engine.engine.sequence import TokenEvent
from local_engine.errors import EngineClosedError, EngineError
from local_engine.sampling import SamplingParams
from local_engine.settings import EngineSettings
from local_engine.tokenizer import Tokenizer

__all__ = ["AsyncEngine"]

_DONE = object()  # end of a request's stream
Sink = Callable[[object], None]


class AsyncEngine:
    """Thread-safe, asyncio-friendly front of an `LLMEngine`; build one with `load_engine`."""

    def __init__(self, engine: LLMEngine | Callable[[], LLMEngine], *, threads: int | None = None) -> None:
        """`engine`, or a function that builds one: then it is built on the engine thread.

        Building there matters on CPU: torch's OpenMP keeps one thread team per thread that runs
        parallel work, and a second team (the loading thread's) makes GNU OpenMP throttle the
        spinning of both on a machine with few cores, which halved batch-1 decode on 2 cores
        (54 vs 100 tok/s). Errors of the build are raised here.
        """
        self.threads = threads
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._sinks: dict[str, Sink] = {}
        self._ids = itertools.count()
        self._closed = False
        self._error: BaseException | None = None
        started: queue.SimpleQueue[BaseException | None] = queue.SimpleQueue()
        build = None if isinstance(engine, LLMEngine) else engine
        if isinstance(engine, LLMEngine):
            self.engine, self._stats = engine, engine.stats()
        self._thread = threading.Thread(
            target=self._loop, args=(build, started), name="local-engine", daemon=True
        )
        self._thread.start()
        failure = started.get()
        if failure is not None:
            self._closed = True
            raise failure

    @property
    def tokenizer(self) -> Tokenizer:
        return self.engine.tokenizer

    @property
    def max_model_len(self) -> int:
        return self.engine.max_model_len

    @property
    def settings(self) -> EngineSettings:
        """The engine's settings, defaults resolved (device, dtype, quantization, max_batch, ...)."""
        return self.engine.settings

    def stats(self) -> EngineStats:
        """Queue depth, running sequences, free KV blocks and recent tokens/s, as of the last step
        (field names as the router's `LocalEngineLoad`)."""
        return self._stats

    def count_tokens(self, text_or_messages: str | Sequence[dict[str, Any]], **template_kwargs: Any) -> int:
        return self.tokenizer.count_tokens(text_or_messages, **template_kwargs)

    # -- the engine thread -------------------------------------------------------------------------

    def _loop(
        self, build: Callable[[], LLMEngine] | None, started: queue.SimpleQueue[BaseException | None]
    ) -> None:
        if self.threads is not None:
            torch.set_num_threads(self.threads)  # process-wide in torch: documented on load_engine
        if build is not None:
            try:
                self.engine = build()
            except BaseException as exc:  # noqa: BLE001 - re-raised by the constructor
                started.put(exc)
                return
            self._stats = self.engine.stats()
        started.put(None)
        try:
            while True:
                block = not self.engine.has_unfinished()
                if not self._drain(block):
                    return
                outputs = self.engine.step()
                for out in outputs:
                    self._deliver(out.request_id, out.event)
                    if out.finished and self._deliver(out.request_id, _DONE):
                        self._sinks.pop(out.request_id, None)
                self._stats = self.engine.stats()
        except BaseException as exc:  # noqa: BLE001 - converted: every open stream gets the error
            self._error = exc
            self._closed = True
            for sink in list(self._sinks.values()):
                sink(EngineClosedError(f"the engine loop stopped: {exc!r}", code="engine.loop-failed"))
            self._sinks.clear()

    def _deliver(self, request_id: str, item: object) -> bool:
        """Hand `item` to the request's stream; a stream whose event loop is gone is aborted."""
        sink = self._sinks.get(request_id)
        if sink is None:
            return False
        try:
            sink(item)
        except RuntimeError:  # call_soon_threadsafe on a closed loop: nobody will read this stream
            self.engine.abort(request_id)
            self._sinks.pop(request_id, None)
            return False
        return True

    def _drain(self, block: bool) -> bool:
        """Apply queued commands (waiting for one when idle); False means stop the loop."""
        while True:
            try:
                kind, payload = self._commands.get(block=block)
            except queue.Empty:
                return True
            block = False
            if kind == "close":
                for request_id, sink in list(self._sinks.items()):
                    self.engine.abort(request_id)
                    sink(EngineClosedError("the engine was closed", code="engine.closed"))
                self._sinks.clear()
                return False
            if kind == "abort":
                self.engine.abort(payload)
                self._sinks.pop(payload, None)
            elif kind == "add":
                request_id, prompt, params, sink = payload
                try:
                    self.engine.add_request(prompt, params, request_id)
                except (EngineError, ValueError, TypeError) as exc:  # a bad request fails its own stream
                    sink(exc)
                    continue
                self._sinks[request_id] = sink
            self._stats = self.engine.stats()

    def _submit(self, prompt: str | Sequence[int], params: SamplingParams | None, sink: Sink) -> str:
        if self._closed:
            raise EngineClosedError("the engine is closed", code="engine.closed") from self._error
        request_id = f"local-{next(self._ids)}"
        self._commands.put(("add", (request_id, prompt, params or SamplingParams(), sink)))
        return request_id

    def abort(self, request_id: str) -> None:
        """Stop a request and free its KV cache blocks (thread-safe; unknown ids are ignored)."""
        self._commands.put(("abort", request_id))

    def close(self) -> None:
        """Stop the loop; open streams end with `EngineClosedError`."""
        if not self._closed:
            self._closed = True
            self._commands.put(("close", None))
            self._thread.join(timeout=30)

    # -- the callers' side -------------------------------------------------------------------------

    async def generate(
        self, prompt: str | Sequence[int], params: SamplingParams | None = None
    ) -> AsyncIterator[TokenEvent]:
        """Stream the events of one request; closing or cancelling the iterator aborts it.

        Args:
            prompt: text (special tokens in it are parsed) or token ids; for chat, render the
                messages with `tokenizer.apply_chat_template` first.
            params: sampling and stopping; `SamplingParams()` when None.

        Raises:
            RequestError: the prompt does not fit the context.
            EngineClosedError: the engine was closed or its loop failed.
        """
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[object] = asyncio.Queue()
        request_id = self._submit(
            prompt, params, lambda item: loop.call_soon_threadsafe(events.put_nowait, item)
        )
        finished = False
        try:
            while True:
                item = await events.get()
                if item is _DONE:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                yield cast(TokenEvent, item)
        finally:
            if not finished:
                self.abort(request_id)

    def generate_sync(
        self, prompt: str | Sequence[int], params: SamplingParams | None = None
    ) -> Iterator[TokenEvent]:
        """`generate` for synchronous callers: a generator; closing it aborts the request."""
        events: queue.SimpleQueue[object] = queue.SimpleQueue()
        request_id = self._submit(prompt, params, events.put)
        finished = False
        try:
            while True:
                item = events.get()
                if item is _DONE:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                yield cast(TokenEvent, item)
        finally:
            if not finished:
                self.abort(request_id)

    async def complete(self, prompt: str | Sequence[int], params: SamplingParams | None = None) -> list[str]:
        """Run to the end; return the text of each of the `n` choices."""
        texts: dict[int, list[str]] = {}
        async for event in self.generate(prompt, params):
            texts.setdefault(event.index, []).append(event.text_delta)
        return ["".join(parts) for _, parts in sorted(texts.items())]

    def __enter__(self) -> AsyncEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
