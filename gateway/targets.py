"""From a ``model=`` string to the deployment(s) to call.

- ``"route:NAME"``: a route of the policy; the router orders its candidates (``gateway.core.plan``).
- ``"provider/model"`` where ``provider`` is a host of ``providers/hosts.py`` or of the policy:
  that provider, configured by the policy, else by the environment variables its own SDK reads.
- a name the policy declares under ``models``: that model's provider and upstream name.
- any other name: the client's own endpoint (``base_url``/``OPENAI_BASE_URL``), as in the SDK.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway._redact import register_secret
from gateway.core.errors import AuthenticationError, NotFoundError
from providers.base import HostProfile, Target
from providers.hosts import HOSTS, Host

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """What the client was constructed with (or read from the environment)."""

    api_key: str | None = field(default=None, repr=False)
    base_url: str = OPENAI_DEFAULT_BASE_URL
    organization: str | None = None
    project: str | None = None
    default_headers: Mapping[str, str] = field(default_factory=dict)
    default_query: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"ClientConfig(base_url={self.base_url!r}, organization={self.organization!r})"


def client_config_from_env(
    *,
    api_key: str | None,
    base_url: str | None,
    organization: str | None,
    project: str | None,
    default_headers: Mapping[str, str] | None,
    default_query: Mapping[str, object] | None,
    env: Mapping[str, str] | None = None,
) -> ClientConfig:
    env = os.environ if env is None else env
    key = api_key if api_key is not None else env.get("OPENAI_API_KEY")
    register_secret(key)  # so that an upstream echoing it back never shows it
    return ClientConfig(
        api_key=key,
        base_url=str(base_url or env.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE_URL),
        organization=organization if organization is not None else env.get("OPENAI_ORG_ID"),
        project=project if project is not None else env.get("OPENAI_PROJECT_ID"),
        default_headers=dict(default_headers or {}),
        default_query={k: str(v) for k, v in (default_query or {}).items()},
    )


def client_target(config: ClientConfig, model: str, provider: str = "openai") -> Target:
    """The client's own endpoint, as the openai SDK would call it."""
    headers: dict[str, str] = {}
    if config.organization:
        headers["OpenAI-Organization"] = config.organization
    if config.project:
        headers["OpenAI-Project"] = config.project
    headers.update(config.default_headers)
    return Target(
        provider=provider,
        kind="openai",
        base_url=config.base_url,
        model=model,
        api_key=config.api_key,
        headers=headers,
        query=dict(config.default_query),
    )


def host_target(host: Host, model: str, env: Mapping[str, str] | None = None) -> Target:
    """A built-in host configured from the environment variables its own SDK reads."""
    env = os.environ if env is None else env
    api_key = next((env[name] for name in host.api_key_env if env.get(name)), None)
    register_secret(api_key)
    base_url = (env.get(host.base_url_env) if host.base_url_env else None) or host.base_url
    options: dict[str, Any] = dict(host.options)
    if host.options.get("azure"):
        options["api_version"] = env.get(str(host.options.get("api_version_env", "")), "2024-10-21")
    return Target(
        provider=host.name,
        kind=host.kind,
        base_url=base_url,
        model=model,
        api_key=api_key,
        profile=host.profile,
        options=options,
    )


def split_model(model: str) -> tuple[str | None, str]:
    """``"groq/llama-3.1-8b"`` -> ``("groq", "llama-3.1-8b")``; a bare name -> ``(None, name)``."""
    head, sep, rest = model.partition("/")
    if sep and head in HOSTS:
        return head, rest
    return None, model


def require_key(target: Target) -> None:
    """Fail before any network call when a provider that needs a key has none."""
    if target.kind == "local" or target.api_key:
        return
    host = HOSTS.get(target.provider)
    names = " or ".join(host.api_key_env) if host and host.api_key_env else "an API key"
    if host is not None and not host.api_key_env:
        return
    if target.base_url.startswith(("http://127.0.0.1", "http://localhost")):
        return  # a local OpenAI-compatible server (vLLM, Ollama, a test server) may need no key
    raise AuthenticationError(
        f"No API key for provider {target.provider!r}: set {names} or pass api_key=",
        body={"message": "missing api key", "type": "invalid_request_error", "code": "missing_api_key"},
        status_code=401,
    )


def unknown_route(name: str) -> NotFoundError:
    return NotFoundError(
        f"route {name!r} is not defined: pass policy= with a routes.{name} entry",
        body={"message": f"unknown route {name!r}", "type": "invalid_request_error", "code": "unknown_route"},
        status_code=404,
    )


__all__ = [
    "ClientConfig",
    "HostProfile",
    "client_config_from_env",
    "client_target",
    "host_target",
    "require_key",
    "split_model",
    "unknown_route",
]
