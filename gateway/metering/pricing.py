"""Cost in USD, as ``Decimal``, from per-1M-token prices.

A request's cost is the sum of these parts:

- prompt tokens neither read from nor written to the cache × ``input``;
- cached prompt tokens × ``cached_input`` (``input`` when the model has no cached price);
- prompt tokens written to the cache × ``cache_write`` (5-minute TTL) or ``cache_write_1h``
  (1-hour TTL). Without a cache-write price, a Claude model's writes cost 1.25x ``input`` (5
  minutes) and 2x (1 hour), as Anthropic bills them; any other model's cost ``input``;
- non-reasoning completion tokens × ``output``;
- reasoning tokens × ``reasoning`` (``output`` when reasoning is not priced separately: OpenAI and
  most providers bill reasoning as output).

Prices come from the catalog (``genai-prices`` where it knows the model, else the bundled
``models.json``), overlaid by a policy's ``models`` section; a model neither names is looked up in
``genai-prices`` by provider and name. A model without a price costs ``None`` (never zero, never
dropped): a warning is logged once per model.

A table can follow a hot-reloaded policy: ``policy_prices(source)`` rebuilds it when the policy
object changes (see ``gateway/policy/reload.py``).

Example:
    >>> table = PriceTable({"openai/gpt-4o-mini": ModelPrice(Decimal("0.15"), Decimal("0.60"), Decimal("0.075"))})
    >>> table.cost("openai/gpt-4o-mini", prompt_tokens=1000, completion_tokens=200, cached_tokens=400)
    Decimal('0.00024')
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.catalog import Catalog, ModelSpec
    from gateway.core.types import CompletionUsage

__all__ = ["ModelPrice", "PriceTable", "policy_prices", "usage_cost"]

logger = logging.getLogger("gateway.metering")

PER_TOKENS = Decimal(1_000_000)
# Anthropic bills a cache write at 1.25x the input price (5-minute TTL) and 2x (1-hour TTL).
CLAUDE_CACHE_WRITE = (Decimal("1.25"), Decimal(2))


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per one million tokens of one model.

    Attributes:
        input: Non-cached prompt tokens.
        output: Completion tokens.
        cached_input: Cached prompt tokens; ``None`` bills them at ``input``.
        reasoning: Reasoning tokens; ``None`` bills them at ``output``.
        cache_write: Prompt tokens written to the cache with a 5-minute TTL; ``None`` bills them
            at ``input``.
        cache_write_1h: Those written with a 1-hour TTL; ``None`` bills them at ``cache_write``.
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    reasoning: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> ModelPrice | None:
        """The price of a catalog or policy model, ``None`` when it lacks an input or output price.

        A Claude model without cache-write prices (a policy that overrides only ``input``) gets
        Anthropic's multiples of its input price.
        """
        if spec.input_price is None or spec.output_price is None:
            return None
        write, write_1h = spec.cache_write_price, spec.cache_write_1h_price
        if write is None and (spec.provider == "anthropic" or "claude" in spec.upstream.lower()):
            write = spec.input_price * CLAUDE_CACHE_WRITE[0]
            write_1h = write_1h if write_1h is not None else spec.input_price * CLAUDE_CACHE_WRITE[1]
        return cls(spec.input_price, spec.output_price, spec.cached_input_price, None, write, write_1h)

    def cost(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
    ) -> Decimal:
        """USD for these tokens; ``cached_tokens`` and ``cache_write_tokens`` are part of
        ``prompt_tokens``, ``reasoning_tokens`` of ``completion_tokens`` (as in OpenAI's ``usage``),
        and ``cache_write_1h_tokens`` part of ``cache_write_tokens``."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        written = min(max(cache_write_tokens, 0), prompt_tokens - cached)
        written_1h = min(max(cache_write_1h_tokens, 0), written)
        reasoning = min(max(reasoning_tokens, 0), completion_tokens)
        write = self.cache_write if self.cache_write is not None else self.input
        write_1h = self.cache_write_1h if self.cache_write_1h is not None else write
        micro = (
            (prompt_tokens - cached - written) * self.input
            + cached * (self.cached_input if self.cached_input is not None else self.input)
            + (written - written_1h) * write
            + written_1h * write_1h
            + (completion_tokens - reasoning) * self.output
            + reasoning * (self.reasoning if self.reasoning is not None else self.output)
        )
        usd = (micro / PER_TOKENS).normalize()
        # normalize() writes whole amounts as 1E+1; keep a plain exponent for readable records.
        return usd if usd.as_tuple().exponent <= 0 else usd.quantize(Decimal(1))  # type: ignore[operator]


class PriceTable:
    """Prices by model name, looked up leniently (``gpt-4o-mini`` finds ``openai/gpt-4o-mini``).

    Args:
        prices: ``{"provider/model": ModelPrice}``.

    Build one from the catalog with :meth:`from_catalog`, or from a policy's resolved models with
    :meth:`from_specs` (``PriceTable.from_specs(policy_index(policy).models.values())``).
    """

    def __init__(self, prices: Mapping[str, ModelPrice] | None = None) -> None:
        self._prices = dict(prices or {})
        bare: dict[str, list[str]] = {}
        for name in self._prices:
            bare.setdefault(name.rsplit("/", 1)[-1], []).append(name)
        self._bare = {b: names[0] for b, names in bare.items() if len(names) == 1}
        self._warned: set[str] = set()
        self._looked_up: dict[str, ModelPrice | None] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_specs(cls, specs: Iterable[ModelSpec]) -> PriceTable:
        """A table of every spec that has both an input and an output price."""
        prices = {spec.name: price for spec in specs if (price := ModelPrice.from_spec(spec)) is not None}
        return cls(prices)

    @classmethod
    def from_catalog(cls, catalog: Catalog | None = None) -> PriceTable:
        """The bundled catalog's prices (loaded when ``catalog`` is ``None``)."""
        if catalog is None:
            from gateway.catalog import load_catalog

            catalog = load_catalog()
        return cls.from_specs(catalog.models.values())

    @classmethod
    def from_policy(cls, policy: Any) -> PriceTable:
        """The catalog's prices overlaid by a policy's ``models`` (its resolved model index)."""
        from gateway.catalog import load_catalog
        from gateway.policy import policy_index

        specs = {**load_catalog().models, **policy_index(policy).models}
        return cls.from_specs(specs.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.lookup(name) is not None

    def __len__(self) -> int:
        return len(self._prices)

    def lookup(self, name: str, provider: str | None = None) -> ModelPrice | None:
        """The price of ``name``: exact, then ``provider/name``, then a unique bare name."""
        price = self._prices.get(name)
        if price is None and provider:
            price = self._prices.get(f"{provider}/{name}")
        if price is None:
            full = self._bare.get(name.rsplit("/", 1)[-1])
            price = self._prices.get(full) if full is not None else None
        if price is None and provider:
            price = self._maintained(name, provider)
        return price

    def _maintained(self, name: str, provider: str) -> ModelPrice | None:
        """A model the table does not name, priced by ``genai-prices`` (remembered, misses too)."""
        key = f"{provider}/{name}"
        with self._lock:
            if key in self._looked_up:
                return self._looked_up[key]
        from gateway.catalog import ModelSpec
        from gateway.catalog_prices import maintained_price

        spec = maintained_price(ModelSpec(name=key, provider=provider, upstream=name))
        price = ModelPrice.from_spec(spec) if spec is not None else None
        with self._lock:
            self._looked_up[key] = price
        return price

    def cost(
        self,
        name: str,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        cache_write_tokens: int = 0,
        cache_write_1h_tokens: int = 0,
        provider: str | None = None,
    ) -> Decimal | None:
        """USD for these tokens on ``name``, or ``None`` (with a warning, once) if it has no price."""
        price = self.lookup(name, provider)
        if price is None:
            self._warn_unpriced(name)
            return None
        return price.cost(
            prompt_tokens,
            completion_tokens,
            cached_tokens,
            reasoning_tokens,
            cache_write_tokens,
            cache_write_1h_tokens,
        )

    def _warn_unpriced(self, name: str) -> None:
        with self._lock:
            if name in self._warned:
                return
            self._warned.add(name)
        logger.warning(
            "no price for model %r: its usage is recorded with cost null; add a price to the policy's "
            "models section (models: {%s: {price: {input: …, output: …}}})",
            name,
            name,
        )


def usage_cost(price: ModelPrice, usage: CompletionUsage) -> Decimal:
    """USD for an OpenAI-shaped ``usage`` (cached reads, cache writes and reasoning from its details)."""
    prompt, completion = usage.prompt_tokens_details, usage.completion_tokens_details
    return price.cost(
        usage.prompt_tokens,
        usage.completion_tokens,
        cached_tokens=(prompt.cached_tokens or 0) if prompt else 0,
        reasoning_tokens=(completion.reasoning_tokens or 0) if completion else 0,
        cache_write_tokens=(prompt.cache_write_tokens or 0) if prompt else 0,
        cache_write_1h_tokens=(prompt.cache_write_1h_tokens or 0) if prompt else 0,
    )


def policy_prices(source: Any) -> PriceTable | Callable[[], PriceTable]:
    """The prices of a policy: a table for a loaded ``Policy``; for a hot-reloaded one (a callable
    returning the policy in force), a callable returning the table of that policy, rebuilt when the
    policy object changes and shared by every caller until then."""
    if not callable(source):
        return PriceTable.from_policy(source)
    lock = threading.Lock()
    built: list[tuple[Any, PriceTable]] = []

    def current() -> PriceTable:
        policy = source()
        with lock:
            if built and built[0][0] is policy:
                return built[0][1]
        table = PriceTable.from_policy(policy)
        with lock:
            built[:] = [(policy, table)]
        return table

    return current
