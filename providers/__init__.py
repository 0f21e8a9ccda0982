"""Wire protocols, one module each, loaded lazily by name.

``load("anthropic")`` imports ``providers.anthropic`` on first use; ``import gateway`` loads no
protocol it does not use and never loads torch (``providers.local`` reaches ``local_engine`` only
when a local model is called).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from providers.base import ProviderModule

__all__ = ["PROTOCOLS", "load"]

# The registry: protocol name -> module path. Adding a provider adds one line here.
PROTOCOLS: dict[str, str] = {
    "openai": "providers.openai",
    "anthropic": "providers.anthropic",
    "gemini": "providers.gemini",
    "local": "providers.local",
}


def load(kind: str) -> ProviderModule:
    """Import and return the provider module for the wire protocol ``kind``."""
    try:
        path = PROTOCOLS[kind]
    except KeyError:
        raise ValueError(f"unknown provider kind {kind!r}; expected one of {sorted(PROTOCOLS)}") from None
    return cast("ProviderModule", importlib.import_module(path))
