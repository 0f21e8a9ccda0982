"""The bundled catalog: well-formed, dated, and holding the models the presets name."""

from __future__ import annotations

import datetime
from decimal import Decimal

from gateway.catalog import ModelSpec, load_catalog
from providers.hosts import HOSTS


def test_catalog_is_cached_and_dated() -> None:
    catalog = load_catalog()
    assert load_catalog() is catalog
    assert datetime.date.fromisoformat(catalog.as_of)


def test_every_entry_is_provider_slash_model_on_a_known_host() -> None:
    for name, spec in load_catalog().models.items():
        provider, _ = name.split("/", 1)
        assert spec.provider == provider and provider in HOSTS, name
        assert spec.has_price and spec.context_window, name
        assert spec.quality is None or 0 <= spec.quality <= 1


def test_the_local_model() -> None:
    assert load_catalog().models["local/smollm2-135m-instruct"] == ModelSpec(
        name="local/smollm2-135m-instruct",
        provider="local",
        upstream="smollm2-135m-instruct",
        input_price=Decimal(0),
        cached_input_price=Decimal(0),
        output_price=Decimal(0),
        context_window=8192,
        max_output=2048,
        tools=False,
        vision=False,
        json_schema=False,
        streaming=True,
        tags=frozenset({"local", "open-weights"}),
        quality=0.15,
        ttft_s=0.05,
        tokens_per_s=40.0,
    )


def test_well_known_models_are_present() -> None:
    names = set(load_catalog().models)
    for name in (
        "openai/gpt-4o", "openai/gpt-4o-mini", "openai/gpt-4.1", "openai/o3-mini", "openai/gpt-5",
        "openai/text-embedding-3-small", "anthropic/claude-3-5-haiku", "anthropic/claude-sonnet-4",
        "anthropic/claude-opus-4-1", "anthropic/claude-haiku-4-5", "gemini/gemini-2.0-flash",
        "gemini/gemini-2.5-flash", "gemini/gemini-2.5-pro", "groq/llama-3.3-70b-versatile",
        "together/llama-3.3-70b-instruct-turbo", "fireworks/llama-v3p3-70b-instruct",
    ):  # fmt: skip
        assert name in names, name
