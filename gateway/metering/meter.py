"""The ``Meter``: an observer that turns each attempt into at most one priced usage record.

Rules, in order:

1. An attempt that consumed tokens produces exactly one record; one that consumed none (an error
   before any content, a refused request) produces none. An attempt *consumed tokens* when the
   upstream reported usage with a non-zero total, when a stream delivered text, or when it
   succeeded (a success without usage is recorded with zero tokens and marked estimated).
2. Reported usage is authoritative. A stream without reported usage is counted from the text it
   delivered (``AttemptRecord.streamed_text``, see ``tokens.count_text``) and marked estimated.
3. Records are idempotent per ``(request_id, attempt)``: the meter drops a replay it has seen, and
   every sink stores a record id once, so replays across processes change nothing either.
4. Nothing on the request path blocks: attempts go to one bounded queue; a writer thread counts,
   prices and writes them to every sink (``sinks.py``).

Example:
    >>> from gateway import OpenAI
    >>> from gateway.metering import Meter, MemorySink
    >>> sink = MemorySink()
    >>> meter = Meter(sink)
    >>> client = OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1", observer=meter)
    >>> meter.close()
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.core.attempts import AttemptRecord
from gateway.metering.pricing import PriceTable
from gateway.metering.records import UsageRecord, api_key_id, outcome_of, split_metadata
from gateway.metering.sinks import (
    DEFAULT_FLUSH_INTERVAL_S,
    DEFAULT_QUEUE_SIZE,
    BufferedWriter,
    Sink,
    StateSink,
    WriterStats,
)
from gateway.metering.tokens import CountFn, count_text
from gateway.state.base import StateBackend

__all__ = ["AttemptTokens", "Meter", "MeterStats", "attempt_tokens", "usage_record"]

logger = logging.getLogger("gateway.metering")

SEEN_CAPACITY = 100_000  # record ids remembered for in-process deduplication

# An attempt waiting to be metered: when it ended, and the prices in force then (a reload between
# the attempt and its metering does not re-price it).
_Queued = tuple[AttemptRecord, float, PriceTable | None]


@dataclass(frozen=True, slots=True)
class MeterStats:
    """What the meter did so far.

    Attributes:
        records: Usage records produced.
        skipped: Attempts that consumed no tokens (no record, by design).
        replays: Attempts seen a second time and ignored.
        unpriced: Records whose model has no price (cost ``None``).
        queue: The counters of the queue between the request path and the sinks (in attempts).
    """

    records: int
    skipped: int
    replays: int
    unpriced: int
    queue: WriterStats

    @property
    def dropped(self) -> int:
        """Attempts a full queue refused (counted and warned, never silent)."""
        return self.queue.dropped


@dataclass(frozen=True, slots=True)
class AttemptTokens:
    """The tokens one attempt consumed (cached reads and cache writes within prompt, the 1-hour
    writes within the writes, reasoning within completion)."""

    prompt: int
    cached: int
    completion: int
    reasoning: int
    estimated: bool
    cache_write: int = 0
    cache_write_1h: int = 0


def attempt_tokens(
    attempt: AttemptRecord, count_fns: Mapping[str, CountFn] | None = None
) -> AttemptTokens | None:
    """What an attempt consumed, by the rules above, or ``None`` when it consumed nothing."""
    usage = attempt.usage
    if usage is not None:
        prompt_details, completion_details = usage.prompt_tokens_details, usage.completion_tokens_details
        tokens = AttemptTokens(
            prompt=usage.prompt_tokens,
            cached=(prompt_details.cached_tokens or 0) if prompt_details is not None else 0,
            completion=usage.completion_tokens,
            reasoning=(completion_details.reasoning_tokens or 0) if completion_details is not None else 0,
            estimated=attempt.usage_estimated,
            cache_write=(prompt_details.cache_write_tokens or 0) if prompt_details is not None else 0,
            cache_write_1h=(prompt_details.cache_write_1h_tokens or 0) if prompt_details is not None else 0,
        )
    elif attempt.streamed_text:
        count_fn = (count_fns or {}).get(attempt.candidate.name)
        completion = count_text(attempt.streamed_text, attempt.candidate.name, count_fn=count_fn).tokens
        tokens = AttemptTokens(0, 0, completion, 0, True)
    elif attempt.outcome == "ok":
        return AttemptTokens(0, 0, 0, 0, True)
    else:
        return None
    if tokens.prompt + tokens.completion <= 0 and attempt.outcome != "ok":
        return None  # a failure that reported zero usage consumed nothing
    return tokens


def usage_record(
    attempt: AttemptRecord,
    prices: PriceTable,
    *,
    now: float,
    count_fns: Mapping[str, CountFn] | None = None,
) -> UsageRecord | None:
    """The usage record of one attempt, or ``None`` when it consumed no tokens.

    Args:
        attempt: What the request loop reported.
        prices: Where the cost comes from.
        now: The wall-clock time the record is stamped with.
        count_fns: Local models' tokenizers by model name, to count unreported stream usage exactly.
    """
    tokens = attempt_tokens(attempt, count_fns)
    if tokens is None:
        return None
    candidate = attempt.candidate
    prompt, cached, completion, reasoning = tokens.prompt, tokens.cached, tokens.completion, tokens.reasoning
    estimated = tokens.estimated
    team, tags = split_metadata(attempt.metadata)
    cost = prices.cost(
        candidate.name,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        reasoning_tokens=reasoning,
        cache_write_tokens=tokens.cache_write,
        cache_write_1h_tokens=tokens.cache_write_1h,
        provider=candidate.target.provider,
    )
    return UsageRecord(
        request_id=attempt.request_id,
        attempt=attempt.attempt,
        ts=now,
        model=candidate.name,
        provider=candidate.target.provider,
        prompt_tokens=prompt,
        cached_tokens=cached,
        completion_tokens=completion,
        reasoning_tokens=reasoning,
        cost_usd=cost,
        user=attempt.user,
        key_id=api_key_id(candidate.target.api_key),
        team=team,
        tags=tags,
        route=attempt.route or "",
        latency_s=attempt.duration_s,
        ttft_s=attempt.ttft_s,
        outcome=outcome_of(attempt.outcome),
        status_code=attempt.status_code,
        estimated=estimated,
        cache_write_tokens=tokens.cache_write,
        cache_write_1h_tokens=tokens.cache_write_1h,
        policy_revision=attempt.policy_revision,
    )


class Meter:
    """Observes attempts and writes one priced usage record per attempt that consumed tokens.

    On the request path the meter only drops replays and queues the attempt (a few microseconds);
    counting, pricing and attribution happen on the writer thread, which then writes every sink.
    Sinks are idempotent, so a batch retried after one sink failed is harmless to the others.

    Args:
        sinks: One sink or several.
        prices: The price table, or a callable returning the one in force (a hot-reloaded
            policy's, see ``pricing.policy_prices``); the bundled catalog's when ``None``.
        count_fns: Local models' own tokenizers, by model name.
        queue_size: The most attempts waiting to be metered; beyond it they are dropped and counted.
        flush_interval_s: How long an attempt may wait in the queue.
        clock: Wall-clock time for the records' ``ts``.
    """

    def __init__(
        self,
        sinks: Sink | Sequence[Sink] = (),
        *,
        prices: PriceTable | Callable[[], PriceTable] | None = None,
        count_fns: Mapping[str, CountFn] | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sinks: tuple[Sink, ...] = (sinks,) if isinstance(sinks, Sink) else tuple(sinks)
        self._prices = prices
        self._count_fns = dict(count_fns or {})
        self._clock = clock
        self._seen: collections.OrderedDict[tuple[str, int], None] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._records = self._skipped = self._replays = self._unpriced = 0
        self._writer = BufferedWriter(
            _PricingStage(self), queue_size=queue_size, flush_interval_s=flush_interval_s
        )

    @classmethod
    def from_policy(
        cls, policy: Any, *, backend: StateBackend | None = None, sinks: Sequence[Sink] = (), **kwargs: Any
    ) -> Meter:
        """A meter configured by a policy: its prices and its ``state`` section.

        Prices are the catalog's overlaid by the policy's ``models``. Records go to ``backend`` (pass
        the one the client's budgets use, to share connections) or else to the backend that
        ``state`` names (``memory``, ``sqlite`` + ``path``, ``redis`` + ``url`` + ``key_prefix``),
        plus any extra ``sinks``.

        Args:
            policy: A loaded ``gateway.policy.Policy``.
            backend: An open state backend to write to instead of opening one.
            sinks: More sinks (a ``CallbackSink`` to a warehouse, …).
            **kwargs: The other arguments of ``Meter``.
        """
        if backend is None:
            from gateway.state import open_backend, policy_backend_config

            backend = open_backend(policy_backend_config(policy.state))
            state_sink = StateSink(backend, owns_backend=True)
        else:
            state_sink = StateSink(backend)
        kwargs.setdefault("prices", PriceTable.from_policy(policy))
        return cls([state_sink, *sinks], **kwargs)

    @property
    def prices(self) -> PriceTable:
        """The price table in force (the catalog's is loaded on first use)."""
        if self._prices is None:
            self._prices = PriceTable.from_catalog()
        return self._prices() if callable(self._prices) else self._prices

    def attempt_finished(self, record: AttemptRecord) -> None:
        """The observer hook: queue one attempt for metering. Never blocks, never raises."""
        key = (record.request_id, record.attempt)
        with self._lock:
            if key in self._seen:
                self._replays += 1
                return
            self._seen[key] = None
            if len(self._seen) > SEEN_CAPACITY:
                self._seen.popitem(last=False)
        prices = self._prices() if callable(self._prices) else self._prices  # None: loaded by the writer
        self._writer.submit((record, self._clock(), prices))

    def stats(self) -> MeterStats:
        """Counters of the meter and of its queue."""
        with self._lock:
            counts = (self._records, self._skipped, self._replays, self._unpriced)
        return MeterStats(*counts, queue=self._writer.stats())

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Meter and write everything queued now; ``True`` when done within ``timeout``."""
        return self._writer.flush(timeout)

    def close(self) -> None:
        """Flush, stop the writer thread and close the sinks. Also done at interpreter exit."""
        self._writer.close()
        dropped = self.stats().dropped
        if dropped:
            logger.warning("the usage meter dropped %d attempts because its queue was full", dropped)

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _meter(self, batch: Sequence[_Queued]) -> list[UsageRecord]:
        records = []
        for attempt, now, prices in batch:
            try:
                table = prices if prices is not None else self.prices
                usage = usage_record(attempt, table, now=now, count_fns=self._count_fns)
            except Exception:  # noqa: BLE001 - one bad attempt must not stop the others; logged
                logger.exception("could not meter attempt %s:%d", attempt.request_id, attempt.attempt)
                continue
            with self._lock:
                if usage is None:
                    self._skipped += 1
                    continue
                self._records += 1
                self._unpriced += usage.cost_usd is None
            records.append(usage)
        return records


class _PricingStage:
    """The writer thread's work: attempts in, priced records out to every sink."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        # The writer retries a refused batch with the same list: meter it once, write it again.
        self._batch: Sequence[_Queued] | None = None
        self._priced: list[UsageRecord] = []

    def write(self, records: Sequence[_Queued]) -> None:
        if records is not self._batch:
            self._batch, self._priced = records, self.meter._meter(records)
        for sink in self.meter.sinks:
            if self._priced:
                sink.write(self._priced)

    def tick(self) -> None:
        for sink in self.meter.sinks:
            tick = getattr(sink, "tick", None)
            if tick is not None:
                tick()

    def close(self) -> None:
        for sink in self.meter.sinks:
            try:
                sink.close()
            except Exception:  # noqa: BLE001 - closing the others matters more; logged
                logger.exception("could not close usage sink %s", type(sink).__name__)
