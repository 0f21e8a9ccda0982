"""From a model name to the Target the client calls: policy settings over the built-in host."""

from __future__ import annotations

import pytest

from gateway.core.errors import PolicyError
from gateway.policy import parse_policy, resolve_target, resolve_target_config
from providers.base import HostProfile, Target
from providers.hosts import HOSTS

POLICY = """\
version: 1
providers:
  openai:
    api_key: ${OPENAI_API_KEY}
    headers: {OpenAI-Organization: org-1}
  azure-east:
    kind: openai
    base_url: https://east.openai.azure.com/openai/deployments/gpt4o
    api_key: ${AZURE_KEY}
    api_version: "2024-10-21"
models:
  cheap: {provider: openai, model: gpt-4o-mini}
  azure-4o: {provider: azure-east, model: gpt-4o}
"""
ENV = {"OPENAI_API_KEY": "sk-1", "AZURE_KEY": "az-1"}


@pytest.fixture
def policy():
    return parse_policy(POLICY, filename="p.yaml", env=ENV)


def test_policy_provider_over_the_host(policy) -> None:
    target = resolve_target(policy, "cheap", env={})
    assert target == Target(
        provider="openai",
        kind="openai",
        base_url="https://api.openai.com/v1",
        model="gpt-4o-mini",
        api_key="sk-1",
        headers={"OpenAI-Organization": "org-1"},
        profile=HOSTS["openai"].profile,
    )
    assert "sk-1" not in repr(target)


def test_custom_provider_with_options(policy) -> None:
    provider, spec = resolve_target_config(policy, "azure-4o", env={})
    assert (provider.kind, provider.options, spec.upstream) == (
        "openai",
        {"api_version": "2024-10-21"},
        "gpt-4o",
    )
    assert spec.input_price is not None  # inherited from the catalog entry openai/gpt-4o
    assert "az-1" not in repr(provider)
    assert provider.profile == HostProfile()


def test_catalog_model_on_a_host_reads_the_host_env(policy) -> None:
    target = resolve_target(policy, "groq/llama-3.1-8b-instant", env={"GROQ_API_KEY": "gq"})
    assert (target.base_url, target.api_key, target.model) == (
        "https://api.groq.com/openai/v1",
        "gq",
        "llama-3.1-8b-instant",
    )
    assert resolve_target(policy, "groq/llama-3.1-8b-instant", env={}).api_key is None


def test_host_base_url_env_and_azure_version_env() -> None:
    policy = parse_policy(
        "version: 1\nmodels:\n  az: {provider: azure, model: gpt-4o}\n", filename="p.yaml", env={}
    )
    env = {
        "AZURE_OPENAI_ENDPOINT": "https://x.azure.com",
        "OPENAI_API_VERSION": "2025-01-01",
        "AZURE_OPENAI_API_KEY": "k",
    }
    provider, _ = resolve_target_config(policy, "az", env=env)
    assert (provider.base_url, provider.options, provider.api_key) == (
        "https://x.azure.com",
        {"azure": True, "api_version": "2025-01-01"},
        "k",
    )


def test_bare_catalog_name_and_unknown_model(policy) -> None:
    assert resolve_target(policy, "claude-haiku-4-5", env={}).model == "claude-haiku-4-5-20251001"
    with pytest.raises(PolicyError) as info:
        resolve_target(policy, "gpt-4o-mni", env={})
    assert "did you mean 'gpt-4o-mini'?" in info.value.message


def test_policy_secrets_are_registered_for_redaction(policy) -> None:
    from gateway._redact import redact

    assert redact("upstream said: bad key az-1-long-secret") == "upstream said: bad key az-1-long-secret"
    parse_policy(POLICY, filename="p.yaml", env={"OPENAI_API_KEY": "sk-registered-1234", "AZURE_KEY": "az-1"})
    assert redact("upstream said: bad key sk-registered-1234") == "upstream said: bad key <redacted>"
    resolve_target(policy, "groq/llama-3.1-8b-instant", env={"GROQ_API_KEY": "gq-from-host-env"})
    assert redact("gq-from-host-env") == "<redacted>"
