"""The module-level client (``gateway/sdk/module_client.py``): ``gateway.chat…`` as ``openai.chat…``.

Its settings are module attributes read on every use, a changed one takes effect on the next call,
and Switchyard's ``gateway.default_policy`` routes it like any client. (The same program printing the same
thing and sending the same requests with either import is ``tests/dropin/programs/module_client.py``.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

import gateway
from gateway.errors import GatewayError
from tests.servers.http import LoopbackServer

MESSAGES = [{"role": "user", "content": "module"}]


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("api_key", "base_url", "default_policy", "max_retries", "default_headers"):
        monkeypatch.setattr(gateway, name, getattr(gateway, name))  # restored after the test
    monkeypatch.delenv("OPENAI_API_TYPE", raising=False)


def test_settings_are_read_when_a_resource_is_used(openai_url: str, openai_upstream: LoopbackServer) -> None:
    gateway.base_url, gateway.api_key, gateway.max_retries = openai_url, "sk-module-one", 0
    reply = gateway.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.choices[0].message.content == "Echo: module"
    assert openai_upstream.log[-1].headers["authorization"] == "Bearer sk-module-one"
    first = gateway.sdk.module_client.load()
    gateway.api_key = "sk-module-two"
    gateway.default_headers = {"x-module": "yes"}
    gateway.embeddings.create(model="text-embedding-3-small", input="x")
    seen = openai_upstream.log[-1].headers
    assert (seen["authorization"], seen["x-module"]) == ("Bearer sk-module-two", "yes")
    assert gateway.sdk.module_client.load() is not first
    assert gateway.chat is gateway.chat and "completions" in dir(gateway.chat)


def test_the_module_client_is_routed_by_the_default_policy(tmp_path: Path, openai_url: str) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        f"""
version: 1
providers:
  alpha: {{kind: openai, base_url: "{openai_url}", api_key: "sk-alpha-key"}}
models:
  a: {{provider: alpha, model: gpt-4o-mini, price: {{input: 1, output: 1}}}}
routes:
  chat: {{candidates: [a]}}
"""
    )
    gateway.default_policy, gateway.base_url, gateway.api_key = str(policy), openai_url, "sk-module"
    reply = gateway.chat.completions.create(model="route:chat", messages=MESSAGES)
    info = gateway.info(reply)
    assert info is not None and (info.route, info.model) == ("chat", "a")


def test_azure_module_mode_says_to_make_a_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_TYPE", "azure")
    with pytest.raises(GatewayError, match="AzureOpenAI"):
        gateway.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_switchyard_packages_keep_their_names_beside_the_sdks_resources() -> None:
    """A resource of the SDK's module client named like a Switchyard package stays the package;
    this lists every such name, so a new clash in a later SDK is seen here first."""
    import importlib
    import pkgutil

    import openai
    import openai._module_client

    own = {m.name for m in pkgutil.iter_modules(gateway.__path__)}
    resources = {n for n in dir(openai._module_client) if n.islower() and not n.startswith("_")}
    assert own & resources <= gateway.sdk.module_client._OWN_SUBMODULES
    assert gateway.__getattr__("evals") is openai.evals  # not routed: not a proxy of ours
    importlib.import_module("gateway.evals")
    assert gateway.evals.__name__ == "gateway.evals"
