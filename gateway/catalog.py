"""The bundled model catalog: prices, context windows, capabilities and priors, as of a date.

Entries are named ``provider/model`` (``openai/gpt-4o-mini``, ``local/smollm2-135m-instruct``). Prices
are USD per one million tokens and kept as ``Decimal``. ``quality`` (0..1), ``ttft_s`` and
``tokens_per_s`` are rough priors: the router uses them until live statistics and eval scores take
over. A policy's ``models`` section overrides any field of an entry of the same name.

Prices come from a maintained price database when it is installed: the ``genai-prices`` package
(offline, from the data it ships with) replaces each entry's input, cached-input, output and
cache-write prices where it knows the model; the prices in ``catalog/models.json`` are the fallback
for the models it does not know, or when it is not installed. ``Catalog.price_source`` says which.
Prices tiered by prompt length are taken at their base tier.

Example:
    >>> from gateway.catalog import load_catalog
    >>> catalog = load_catalog()
    >>> catalog.models["openai/gpt-4o-mini"].context_window
    128000
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

__all__ = ["DEFAULT_TOKENS_PER_S", "DEFAULT_TTFT_S", "Catalog", "ModelSpec", "load_catalog"]

# Priors for a model nobody measured yet: slow enough that measured models are preferred on speed.
DEFAULT_TTFT_S = 1.0
DEFAULT_TOKENS_PER_S = 50.0


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A model with every field resolved: the catalog entry overlaid with the policy's overrides."""

    name: str
    provider: str
    upstream: str
    input_price: Decimal | None = None
    cached_input_price: Decimal | None = None
    output_price: Decimal | None = None
    cache_write_price: Decimal | None = None  # prompt tokens written to the cache, 5-minute TTL
    cache_write_1h_price: Decimal | None = None  # the same, 1-hour TTL
    context_window: int | None = None
    max_output: int | None = None
    # A model nobody described is assumed capable: trying it and falling back on an error costs
    # less than never routing to a model that could have served.
    tools: bool = True
    vision: bool = True
    json_schema: bool = True
    streaming: bool = True
    tags: frozenset[str] = frozenset()
    quality: float | None = None
    ttft_s: float = DEFAULT_TTFT_S
    tokens_per_s: float = DEFAULT_TOKENS_PER_S

    @property
    def has_price(self) -> bool:
        """Whether both the input and the output price are known."""
        return self.input_price is not None and self.output_price is not None

    def supports(self, capability: str) -> bool:
        """Whether the model has ``capability`` (``tools``, ``vision``, ``json_schema``, ``streaming``)."""
        return bool(getattr(self, capability))


@dataclass(frozen=True, slots=True)
class Catalog:
    """The bundled catalog: ``as_of`` is the date its prices were read.

    ``price_source`` is ``"genai-prices <version>"`` when that database supplied the prices it
    knows, else ``"bundled"``.
    """

    as_of: str
    models: dict[str, ModelSpec]
    price_source: str = "bundled"


@cache
def load_catalog() -> Catalog:
    """Load ``gateway/catalog/models.json`` once per process.

    Returns:
        The catalog, keyed by ``provider/model`` name.
    """
    text = resources.files("gateway").joinpath("catalog/models.json").read_text(encoding="utf-8")
    raw = json.loads(text)
    models = {name: _spec(name, entry) for name, entry in raw["models"].items()}
    from gateway.catalog_prices import maintained_prices

    maintained = maintained_prices(models.values())
    if maintained is None:
        return Catalog(as_of=str(raw["as_of"]), models=models)
    source, prices = maintained
    models = {name: prices.get(name, spec) for name, spec in models.items()}
    return Catalog(as_of=str(raw["as_of"]), models=models, price_source=source)


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _spec(name: str, entry: dict[str, Any]) -> ModelSpec:
    price = entry.get("price") or {}
    caps = entry.get("capabilities") or {}
    return ModelSpec(
        name=name,
        provider=entry["provider"],
        upstream=entry["model"],
        input_price=_decimal(price.get("input")),
        cached_input_price=_decimal(price.get("cached_input")),
        output_price=_decimal(price.get("output")),
        cache_write_price=_decimal(price.get("cache_write")),
        cache_write_1h_price=_decimal(price.get("cache_write_1h")),
        context_window=entry.get("context_window"),
        max_output=entry.get("max_output"),
        tools=bool(caps.get("tools", True)),
        vision=bool(caps.get("vision", True)),
        json_schema=bool(caps.get("json_schema", True)),
        streaming=bool(caps.get("streaming", True)),
        tags=frozenset(entry.get("tags") or ()),
        quality=entry.get("quality"),
        ttft_s=float(entry.get("ttft_s") or DEFAULT_TTFT_S),
        tokens_per_s=float(entry.get("tokens_per_s") or DEFAULT_TOKENS_PER_S),
    )
