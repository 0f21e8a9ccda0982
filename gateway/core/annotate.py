"""Finishing touches on a reply's routing information, and budget settlement around streams.

``annotate`` prices the serving attempt (the policy's prices, else the bundled catalog's) and lists
the parameters a route's ``drop_unsupported_params`` dropped. ``guarded_stream`` and its async twin
run a stream with its own attempt list and settle the request's budget holds however it ends.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from gateway.core.attempts import AttemptRecord, Plan
from gateway.core.types import ChatCompletion, ChatCompletionChunk, ChatRequest

if TYPE_CHECKING:
    from gateway.guard import Admission


def annotate(reply: ChatCompletion, plan: Plan, req: ChatRequest, prices: Any = None) -> ChatCompletion:
    """Complete ``reply.gateway``: the cost of the serving attempt when its price is known, and the
    parameters the serving provider dropped (a route's ``drop_unsupported_params``)."""
    info = reply.gateway
    if info is None:
        return reply
    served = next((c for c in plan.candidates if c.name == info.model), None)
    usage = reply.usage
    price = _price_table(prices).lookup(info.model, info.provider) if usage is not None else None
    if price is not None and usage is not None:
        details = usage.prompt_tokens_details
        reasoning = usage.completion_tokens_details
        cost = price.cost(  # the meter's rules (gateway/metering/meter.py: attempt_tokens)
            usage.prompt_tokens,
            usage.completion_tokens,
            cached_tokens=(details.cached_tokens or 0) if details else 0,
            reasoning_tokens=(reasoning.reasoning_tokens or 0) if reasoning else 0,
            cache_write_tokens=(details.cache_write_tokens or 0) if details else 0,
            cache_write_1h_tokens=(details.cache_write_1h_tokens or 0) if details else 0,
        )
        info.cost_usd = str(cost)
    if served is None or not served.target.options.get("drop_unsupported_params"):
        return reply
    import providers

    unsupported = getattr(providers.load(served.target.kind), "unsupported_params", None)
    if unsupported is not None:
        info.dropped_params = list(unsupported(req))
    return reply


_CATALOG_PRICES: Any = None


def _price_table(prices: Any) -> Any:
    """The client's (policy) prices, else the bundled catalog's, loaded once."""
    global _CATALOG_PRICES
    if prices is not None:
        return prices
    if _CATALOG_PRICES is None:
        from gateway.metering.pricing import PriceTable

        _CATALOG_PRICES = PriceTable.from_catalog()
    return _CATALOG_PRICES


def guarded_stream(
    iterator: Iterator[ChatCompletionChunk], admission: Admission
) -> Iterator[ChatCompletionChunk]:
    """Run the stream with its own attempt list, and settle the budgets when it ends (however it ends)."""
    from gateway.guard import CURRENT_ATTEMPTS

    records: list[AttemptRecord] = []
    context = contextvars.copy_context()
    context.run(CURRENT_ATTEMPTS.set, records)
    try:
        while True:
            try:
                chunk = context.run(next, iterator)
            except StopIteration:
                return
            yield chunk
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            context.run(close)
        admission.settle(records)


async def guarded_async_stream(
    iterator: AsyncIterator[ChatCompletionChunk], admission: Admission
) -> AsyncIterator[ChatCompletionChunk]:
    from gateway.guard import CURRENT_ATTEMPTS

    records: list[AttemptRecord] = []
    context = contextvars.copy_context()
    context.run(CURRENT_ATTEMPTS.set, records)
    try:
        while True:
            try:
                chunk = await asyncio.create_task(_anext(iterator), context=context)
            except StopAsyncIteration:
                return
            yield chunk
    finally:
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await asyncio.create_task(aclose(), context=context)
        admission.settle(records)


async def _anext(iterator: AsyncIterator[ChatCompletionChunk]) -> ChatCompletionChunk:
    return await iterator.__anext__()
