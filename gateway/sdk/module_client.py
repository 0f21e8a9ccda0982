"""The module-level client: ``import gateway as openai`` then ``openai.chat.completions.create(...)``.

As the SDK's own: the settings are module attributes (``gateway.api_key``, ``base_url``,
``organization``, ``project``, ``webhook_secret``, ``timeout``, ``max_retries``, ``default_headers``,
``default_query``, ``http_client``, and Switchyard's ``default_policy``, the clients' ``policy=``), read when a resource is used, and
every resource of the SDK's module client (``chat``, ``responses``, ``files``, …) is a proxy to the
same attribute of one ``gateway.OpenAI`` built from them. A changed setting builds a new client for
the next call (the SDK reads them on every call too). Azure's module-level mode is not offered:
make a ``gateway.AzureOpenAI(...)`` instead.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from typing import Any

SETTINGS = (
    "api_key",
    "organization",
    "project",
    "webhook_secret",
    "base_url",
    "timeout",
    "max_retries",
    "default_headers",
    "default_query",
    "http_client",
    "default_policy",
)

# Names of the SDK's module client that are Switchyard packages too; they stay Switchyard's.
_OWN_SUBMODULES = frozenset({"evals"})

_lock = threading.Lock()
_current: tuple[tuple[Any, ...], Any] | None = None
_proxies: dict[str, ResourceProxy] = {}


def _key(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else ("id", id(value))


def load() -> Any:
    """The module's client for the settings as they are now."""
    global _current
    module = sys.modules["gateway"]
    if (getattr(module, "api_type", None) or os.environ.get("OPENAI_API_TYPE")) == "azure":
        from gateway.errors import GatewayError

        raise GatewayError(
            "the module-level client is not routed for Azure (api_type='azure'): "
            "make a client, `client = gateway.AzureOpenAI(...)`"
        )
    values = {name: getattr(module, name) for name in SETTINGS}
    values["policy"] = values.pop("default_policy")
    key = tuple(_key(v) for v in values.values())
    with _lock:
        if _current is not None and _current[0] == key:
            return _current[1]
        client = _client_class()(**{k: v for k, v in values.items() if v is not None})
        _current = (key, client)
        return client


@functools.cache
def _client_class() -> type:
    from gateway.sdk.clients import OpenAI

    class _ModuleClient(OpenAI):
        """Named as the SDK's module client, whose class name its User-Agent header carries."""

    return _ModuleClient


class ResourceProxy:
    """``gateway.<resource>``: the attribute of the module's client, resolved on every use."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(getattr(load(), self._name), attr)

    def __dir__(self) -> list[str]:
        return dir(getattr(load(), self._name))

    def __repr__(self) -> str:
        return f"<gateway.{self._name}: the module-level client's {self._name}>"


def resource(name: str) -> ResourceProxy | None:
    """A proxy for ``name`` when the openai module offers it as a module-level resource."""
    import openai

    proxied = openai.__dict__.get(name)
    if proxied is None or type(proxied).__module__ != "openai._module_client":
        return None
    if name in _OWN_SUBMODULES:  # ``gateway.evals`` is Switchyard's eval package: a client reaches OpenAI's
        return None
    proxy = _proxies.get(name)
    if proxy is None:
        proxy = _proxies.setdefault(name, ResourceProxy(name))
    return proxy
