"""From a model name to the deployment to call: what the client needs to build a ``Target``.

A model's provider is a provider section of the policy, a built-in host (``providers.hosts``), or
both: the policy's fields win, the host fills the rest (its base URL, its API-key variables, its
quirks profile). Secrets are read here and handed over in ``Target.api_key`` (hidden from repr).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway._redact import register_secret
from gateway.catalog import ModelSpec
from gateway.core.errors import PolicyError
from gateway.policy.located import did_you_mean
from gateway.policy.references import model_names, policy_index, resolve_model_name
from gateway.policy.schema import Policy
from providers.base import HostProfile, Target
from providers.hosts import HOSTS

__all__ = ["ResolvedProvider", "resolve_target", "resolve_target_config"]


@dataclass(frozen=True, slots=True)
class ResolvedProvider:
    """A provider with the policy's settings over the built-in host's, secrets read from the env."""

    name: str
    kind: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)
    profile: HostProfile = field(default_factory=HostProfile)


def _model_spec(policy: Policy, model_name: str) -> ModelSpec:
    index = policy_index(policy)
    name = resolve_model_name(policy, model_name)
    if name is not None and name in index.models:
        return index.models[name]
    from gateway.catalog import load_catalog

    catalog = load_catalog().models
    if name is not None and name in catalog:
        return catalog[name]
    hint = did_you_mean(model_name, model_names([*policy.models, *index.models]))
    raise PolicyError(f"unknown model {model_name!r}{hint}", code="policy.unknown-model")


def _provider(policy: Policy, name: str, env: Mapping[str, str]) -> ResolvedProvider:
    config = policy.providers.get(name)
    host = HOSTS.get(name)
    if config is None and host is None:
        hint = did_you_mean(name, [*policy.providers, *HOSTS])
        raise PolicyError(f"unknown provider {name!r}{hint}", code="policy.unknown-provider")
    kind = (config.kind if config else None) or (host.kind if host else "openai")
    base_url = (config.base_url if config else None) or ""
    if not base_url and host is not None:
        base_url = env.get(host.base_url_env or "", "") or host.base_url
    api_key = config.api_key.get_secret_value() if config and config.api_key else None
    if api_key is None and host is not None:
        api_key = next((env[var] for var in host.api_key_env if env.get(var)), None)
    options: dict[str, Any] = dict(host.options) if host else {}
    if config is not None:
        options.update(config.options)
        if config.api_version is not None:
            options["api_version"] = config.api_version
    version_env = options.pop("api_version_env", None)
    if "api_version" not in options and isinstance(version_env, str) and env.get(version_env):
        options["api_version"] = env[version_env]
    headers = {key: value.get_secret_value() for key, value in config.headers.items()} if config else {}
    for secret in (api_key, *headers.values()):
        register_secret(secret)  # so redact() removes it from messages, logs and spans
    return ResolvedProvider(
        name=name,
        kind=kind,
        base_url=base_url,
        api_key=api_key,
        headers=headers,
        options=options,
        profile=host.profile if host else HostProfile(),
    )


def resolve_target_config(
    policy: Policy, model_name: str, *, env: Mapping[str, str] | None = None
) -> tuple[ResolvedProvider, ModelSpec]:
    """The provider settings and the resolved model for ``model_name``.

    Args:
        policy: the loaded policy.
        model_name: a policy model, a catalog entry (``openai/gpt-4o``) or a unique bare name.
        env: where host API keys are looked up when the policy gives none; ``os.environ`` by default.

    Raises:
        PolicyError: the model or its provider is unknown (with a did-you-mean).
    """
    spec = _model_spec(policy, model_name)
    return _provider(policy, spec.provider, os.environ if env is None else env), spec


def resolve_target(policy: Policy, model_name: str, *, env: Mapping[str, str] | None = None) -> Target:
    """The ``providers.base.Target`` to call for ``model_name``.

    Example:
        >>> from gateway.policy import parse_policy
        >>> policy = parse_policy("version: 1")
        >>> resolve_target(policy, "groq/llama-3.1-8b-instant", env={}).base_url
        'https://api.groq.com/openai/v1'
    """
    provider, spec = resolve_target_config(policy, model_name, env=env)
    return Target(
        provider=provider.name,
        kind=provider.kind,
        base_url=provider.base_url,
        model=spec.upstream,
        api_key=provider.api_key,
        headers=provider.headers,
        profile=provider.profile,
        options=provider.options,
    )
