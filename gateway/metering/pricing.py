"""Cost in USD, as ``Decimal``, from per-1M-token prices.

A request's cost is the sum of four parts:

- non-cached prompt tokens × ``input``;
- cached prompt tokens × ``cached_input`` (``input`` when the model has no cached price);
- non-reasoning completion tokens × ``output``;
- reasoning tokens × ``reasoning`` (``output`` when reasoning is not priced separately: OpenAI and
  most providers bill reasoning as output).

Prices come from the bundled catalog, overlaid by a policy's ``models`` section. A model without a
price costs ``None`` (never zero, never dropped): a warning is logged once per model.

Example:
    >>> table = PriceTable({"openai/gpt-4o-mini": ModelPrice(Decimal("0.15"), Decimal("0.60"), Decimal("0.075"))})
    >>> table.cost("openai/gpt-4o-mini", prompt_tokens=1000, completion_tokens=200, cached_tokens=400)
    Decimal('0.00024')
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.catalog import Catalog, ModelSpec

__all__ = ["ModelPrice", "PriceTable"]

logger = logging.getLogger("gateway.metering")

PER_TOKENS = Decimal(1_000_000)


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per one million tokens of one model.

    Attributes:
        input: Non-cached prompt tokens.
        output: Completion tokens.
        cached_input: Cached prompt tokens; ``None`` bills them at ``input``.
        reasoning: Reasoning tokens; ``None`` bills them at ``output``.
    """

    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    reasoning: Decimal | None = None

    def cost(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, reasoning_tokens: int = 0
    ) -> Decimal:
        """USD for these tokens; ``cached_tokens`` is part of ``prompt_tokens``, ``reasoning_tokens`` of
        ``completion_tokens`` (as in OpenAI's ``usage``)."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        reasoning = min(max(reasoning_tokens, 0), completion_tokens)
        micro = (
            (prompt_tokens - cached) * self.input
            + cached * (self.cached_input if self.cached_input is not None else self.input)
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
        self._lock = threading.Lock()

    @classmethod
    def from_specs(cls, specs: Iterable[ModelSpec]) -> PriceTable:
        """A table of every spec that has both an input and an output price."""
        prices = {
            spec.name: ModelPrice(
                input=spec.input_price, output=spec.output_price, cached_input=spec.cached_input_price
            )
            for spec in specs
            if spec.input_price is not None and spec.output_price is not None
        }
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
        return price

    def cost(
        self,
        name: str,
        *,
        prompt_tokens: int,
        completion_tokens: int,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        provider: str | None = None,
    ) -> Decimal | None:
        """USD for these tokens on ``name``, or ``None`` (with a warning, once) if it has no price."""
        price = self.lookup(name, provider)
        if price is None:
            self._warn_unpriced(name)
            return None
        return price.cost(prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens)

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
