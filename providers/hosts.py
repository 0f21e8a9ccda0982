"""Hosts are data: every deployment the gateway knows without a policy, one frozen record each.

An OpenAI-compatible host is not a module; it is a row here naming its protocol, base URL, the
environment variables its own SDK or docs use, and its quirks. A policy adds or overrides rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from providers.base import HostProfile

__all__ = ["HOSTS", "Host"]


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    kind: str  # wire protocol: openai | anthropic | gemini | local
    base_url: str
    api_key_env: tuple[str, ...] = ()
    base_url_env: str | None = None
    profile: HostProfile = field(default_factory=HostProfile)
    options: dict[str, Any] = field(default_factory=dict)


_NO_STREAM_USAGE = HostProfile(supports_stream_usage=False)

HOSTS: dict[str, Host] = {
    host.name: host
    for host in (
        Host("openai", "openai", "https://api.openai.com/v1", ("OPENAI_API_KEY",), "OPENAI_BASE_URL"),
        Host(
            "azure",
            "openai",
            "",
            ("AZURE_OPENAI_API_KEY",),
            "AZURE_OPENAI_ENDPOINT",
            HostProfile(auth_header="api-key"),
            {"azure": True, "api_version_env": "OPENAI_API_VERSION"},
        ),
        Host("fireworks", "openai", "https://api.fireworks.ai/inference/v1", ("FIREWORKS_API_KEY",)),
        Host("together", "openai", "https://api.together.xyz/v1", ("TOGETHER_API_KEY",)),
        Host(
            "groq",
            "openai",
            "https://api.groq.com/openai/v1",
            ("GROQ_API_KEY",),
            None,
            HostProfile(supports_logprobs=False, supports_n=False, drops=frozenset({"logit_bias"})),
        ),
        Host("deepseek", "openai", "https://api.deepseek.com/v1", ("DEEPSEEK_API_KEY",)),
        Host("mistral", "openai", "https://api.mistral.ai/v1", ("MISTRAL_API_KEY",)),
        Host("openrouter", "openai", "https://openrouter.ai/api/v1", ("OPENROUTER_API_KEY",)),
        Host("cerebras", "openai", "https://api.cerebras.ai/v1", ("CEREBRAS_API_KEY",)),
        Host("vllm", "openai", "http://localhost:8000/v1", ("VLLM_API_KEY",), "VLLM_BASE_URL"),
        Host("sglang", "openai", "http://localhost:30000/v1", ("SGLANG_API_KEY",), "SGLANG_BASE_URL"),
        Host(
            "ollama",
            "openai",
            "http://localhost:11434/v1",
            ("OLLAMA_API_KEY",),
            "OLLAMA_BASE_URL",
            _NO_STREAM_USAGE,
        ),
        Host(
            "anthropic",
            "anthropic",
            "https://api.anthropic.com",
            ("ANTHROPIC_API_KEY",),
            "ANTHROPIC_BASE_URL",
        ),
        Host(
            "gemini",
            "gemini",
            "https://generativelanguage.googleapis.com",
            ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
            "GEMINI_BASE_URL",
        ),
        Host("local", "local", "local://", ()),
    )
}
