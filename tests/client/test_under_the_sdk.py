"""``gateway.OpenAI`` is the SDK's client with Switchyard under it: what that promises, checked.

Against the loopback OpenAI server: the facades are the SDK's classes; routed endpoints carry
routing headers and ``gateway.info``; other endpoints pass through untouched; a plain openai client
sharing the HTTP client is not routed; errors are raised where and as the SDK raises them (a 429 at
``create(stream=True)``, no retry by the SDK on top of Switchyard's own); both HTTP packages work.
"""

from __future__ import annotations

import httpx
import httpx2
import openai
import pytest

import gateway
from tests.servers.http import LoopbackServer

MESSAGES = [{"role": "user", "content": "hi"}]


def test_routed_reply_has_routing_headers_and_info(openai_url: str, openai_upstream: LoopbackServer) -> None:
    with gateway.OpenAI(api_key="sk-test-sdk", base_url=openai_url) as client:
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        reply = raw.parse()
        assert (
            raw.headers["x-switchyard-provider"] == "openai"
            and raw.headers["x-switchyard-model"] == "gpt-4o-mini"
        )
        assert reply._request_id == openai_upstream.log[-1].headers.get("x-request-id") or reply._request_id
        info = gateway.info(reply)
        assert info is not None and [a.outcome for a in info.attempts] == ["ok"]
        assert gateway.info(raw) == info
        with client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        ) as r:
            assert r.headers["x-switchyard-provider"] == "openai" and r.parse().choices


def test_stream_info_is_complete_after_the_stream(openai_url: str) -> None:
    with gateway.OpenAI(api_key="sk-test-sdk", base_url=openai_url) as client:
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        before = gateway.info(stream)
        assert before is not None and before.provider == "openai" and not before.attempts
        list(stream)
        after = gateway.info(stream)
        assert after is not None and [a.outcome for a in after.attempts] == ["ok"]
        with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as helper:
            text = "".join(e.delta for e in helper if e.type == "content.delta")
        assert text == "Echo: hi" and gateway.info(helper) is not None


def test_a_429_on_a_stream_raises_at_create(openai_url: str, openai_upstream: LoopbackServer) -> None:
    with gateway.OpenAI(api_key="sk-test-sdk", base_url=openai_url, max_retries=1) as client:
        openai_upstream.reset_log()
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model="error:429", messages=MESSAGES, stream=True)
    assert info.value.response.headers["x-should-retry"] == "false"
    assert len(openai_upstream.log) == 2  # Switchyard's one retry, and no second layer of SDK retries


def test_other_endpoints_pass_through_unchanged(openai_url: str, openai_upstream: LoopbackServer) -> None:
    with gateway.OpenAI(api_key="sk-test-sdk", base_url=openai_url, max_retries=0) as client:
        openai_upstream.reset_log()
        with pytest.raises(openai.APIStatusError):
            client.files.list()  # the loopback server has no files API: its answer comes back as is
        assert openai_upstream.log[-1].path == "/v1/files"
        assert openai_upstream.log[-1].headers["authorization"] == "Bearer sk-test-sdk"


def test_a_plain_openai_client_on_the_same_http_client_is_not_routed(openai_url: str) -> None:
    http = httpx2.Client()
    with gateway.OpenAI(api_key="sk-test-sdk", base_url=openai_url, http_client=http) as ours:
        ours.models.list()
        plain = openai.OpenAI(api_key="sk-test-sdk", base_url=openai_url, http_client=http)
        raw = plain.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        assert "x-switchyard-id" not in raw.headers


@pytest.mark.parametrize("module", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_both_http_packages_and_their_timeouts(module: object, openai_url: str) -> None:
    http = module.Client()  # type: ignore[attr-defined]
    timeout = module.Timeout(10.0)  # type: ignore[attr-defined]
    with gateway.OpenAI(
        api_key="sk-test-sdk", base_url=openai_url, http_client=http, timeout=timeout
    ) as client:
        assert (
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices[0].message.content
        )
        assert (
            len(list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))) > 1
        )


def test_extra_query_and_default_query_reach_the_upstream(
    openai_url: str, openai_upstream: LoopbackServer
) -> None:
    with gateway.OpenAI(api_key="sk-test-sdk", base_url=openai_url, default_query={"a": "1"}) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, extra_query={"b": "2"})
    assert openai_upstream.log[-1].query == {"a": ["1"], "b": ["2"]}


def test_header_injection_is_refused_before_any_call(
    openai_url: str, openai_upstream: LoopbackServer
) -> None:
    with gateway.OpenAI(api_key="sk-test-sdk", base_url=openai_url) as client:
        openai_upstream.reset_log()
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-trace": "a\r\nx-smuggled: 1"}
            )
    assert "x-trace" in info.value.message and "smuggled" not in info.value.message
    assert openai_upstream.log == []


def test_azure_deployments_are_the_clients_own_endpoint(openai_upstream: LoopbackServer) -> None:
    with gateway.AzureOpenAI(
        api_key="azure-key-test", azure_endpoint=openai_upstream.base_url, api_version="2024-10-21"
    ) as client:
        reply = client.chat.completions.create(model="my-deployment", messages=MESSAGES)
    sent = openai_upstream.log[-1]
    assert reply.choices[0].message.content == "Echo: hi"
    assert sent.path == "/openai/deployments/my-deployment/chat/completions"
    assert sent.headers["api-key"] == "azure-key-test" and sent.query["api-version"] == ["2024-10-21"]


def test_without_a_key_other_providers_still_work_and_a_bare_model_says_why(
    monkeypatch: pytest.MonkeyPatch, openai_url: str, openai_upstream: LoopbackServer
) -> None:
    from tests.servers import anthropic_server

    with LoopbackServer(anthropic_server.handle) as anthropic, gateway.OpenAI(base_url=openai_url) as client:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic.base_url)
        reply = client.chat.completions.create(model="anthropic/claude-haiku-4-5", messages=MESSAGES)
        assert reply.choices[0].message.content == "Echo: hi"
        openai_upstream.reset_log()
        with pytest.raises(openai.AuthenticationError, match="OPENAI_API_KEY"):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert openai_upstream.log == []


def test_with_options_keeps_the_policy(tmp_path: object, openai_url: str) -> None:
    from pathlib import Path

    policy = Path(str(tmp_path)) / "p.yaml"
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
    with gateway.OpenAI(api_key="sk-test-sdk", base_url=openai_url, policy=policy) as client:
        copy = client.with_options(max_retries=0)
        reply = copy.chat.completions.create(model="route:chat", messages=MESSAGES)
        info = gateway.info(reply)
        assert info is not None and info.route == "chat" and info.model == "a"
        assert copy._switchyard.runtime is client._switchyard.runtime
        assert [m.id for m in client.models.list()] == ["route:chat", "a"]
        assert client.models.retrieve("route:chat").owned_by == "switchyard"
