"""Prices from a maintained database: the ``genai-prices`` package, offline, when it is installed.

``maintained_prices`` re-prices the bundled catalog's entries that the database knows;
``maintained_price`` prices one model that the catalog does not name (a policy model without a
``price``, a model asked for directly). Both return ``None`` without the package, and the bundled
prices (or the policy's) stay in force: the database is a source, never a requirement.

Only the data shipped with the installed package is read: nothing here starts genai-prices'
background updater or touches the network. A price tiered by prompt length is taken at its base
tier (the tiers are a known gap, see docs/metering.md).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.catalog import ModelSpec

__all__ = ["PROVIDER_IDS", "maintained_price", "maintained_prices"]

logger = logging.getLogger("gateway.catalog")

# Our provider names -> genai-prices provider ids, where they differ or exist at all. A provider not
# here (``local``, a self-hosted vLLM) is never looked up: a price for the same model name served
# elsewhere would be wrong for it.
PROVIDER_IDS = {
    "openai": "openai",
    "azure": "azure",
    "anthropic": "anthropic",
    "gemini": "google",
    "google": "google",
    "groq": "groq",
    "together": "together",
    "fireworks": "fireworks",
    "deepseek": "deepseek",
    "mistral": "mistral",
    "openrouter": "openrouter",
    "cerebras": "cerebras",
    "x-ai": "x-ai",
}

# genai-prices' price keys -> ModelSpec's price fields.
_FIELDS = {
    "input_mtok": "input_price",
    "cache_read_mtok": "cached_input_price",
    "output_mtok": "output_price",
    "cache_write_mtok": "cache_write_price",
    "cache_write_1h_mtok": "cache_write_1h_price",
}


@cache
def _snapshot() -> tuple[str, Any] | None:
    try:
        import genai_prices
        from genai_prices import data_snapshot
    except ImportError:
        return None
    return f"genai-prices {genai_prices.__version__}", data_snapshot.get_snapshot()


def _price_fields(provider: str, model: str) -> dict[str, Decimal] | None:
    loaded = _snapshot()
    provider_id = PROVIDER_IDS.get(provider)
    if loaded is None or provider_id is None:
        return None
    try:
        _, info = loaded[1].find_provider_model(model, None, provider_id, None)
    except LookupError:  # genai-prices raises LookupError for an unknown provider or model
        return None
    prices = info.get_prices(datetime.now(tz=UTC))
    fields: dict[str, Decimal] = {}
    for key, field in _FIELDS.items():
        value = getattr(prices, key, None)
        value = getattr(value, "base", value)  # TieredPrices: the base tier
        if isinstance(value, Decimal):
            fields[field] = value
    if "input_price" not in fields or "output_price" not in fields:
        return None  # not a token-priced model (images, audio): keep what we had
    return fields


def maintained_price(spec: ModelSpec) -> ModelSpec | None:
    """``spec`` with the database's prices for ``spec.provider`` / ``spec.upstream``, or ``None``."""
    fields = _price_fields(spec.provider, spec.upstream)
    return dataclasses.replace(spec, **fields) if fields is not None else None  # type: ignore[arg-type]


def maintained_prices(specs: Iterable[ModelSpec]) -> tuple[str, dict[str, ModelSpec]] | None:
    """(source, re-priced specs by name) for the specs the database knows; ``None`` without it."""
    loaded = _snapshot()
    if loaded is None:
        return None
    priced = {}
    for spec in specs:
        found = maintained_price(spec)
        if found is not None:
            priced[spec.name] = found
    logger.debug("%s priced %d catalog models", loaded[0], len(priced))
    return loaded[0], priced
