"""What the libraries rely on from the SDK itself, compared with plain ``openai`` of the same version.

Unlike the other modules here, this one needs no client library: it runs in both venvs (the main
one's openai 3.x and .venv-libs' openai 2.32), and ``gateway`` must do what ``openai`` does in each.
"""

from __future__ import annotations

import asyncio

import openai
import pytest

import gateway
from tests.servers.http import LoopbackServer

MESSAGES = [{"role": "user", "content": "hi"}]


def _failure_on_a_second_event_loop(module, base_url: str) -> type[BaseException] | None:
    """An ``AsyncOpenAI`` used under one ``asyncio.run`` and then another, as notebooks, Celery tasks
    and per-test event loops do: its pooled connection belongs to the closed loop."""
    client = module.AsyncOpenAI(api_key="sk-test", base_url=base_url, max_retries=0)
    asyncio.run(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES))
    try:
        asyncio.run(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES))
    except Exception as exc:  # noqa: BLE001 - the class is what is compared
        return type(exc)
    return None


def test_reuse_across_event_loops_works_where_the_sdk_may_fail(openai_upstream: LoopbackServer) -> None:
    """A deliberate difference: the SDK's pool hands the second loop the first loop's connection
    ("Event loop is closed", a RuntimeError, in openai 2.32 and 3.57 alike); Switchyard's upstream pool
    keeps connections per loop (``gateway/transports/pool_async.py``), so the second call works."""
    base_url = openai_upstream.base_url + "/v1"
    sdk = _failure_on_a_second_event_loop(openai, base_url)
    assert sdk in (None, RuntimeError)  # what the SDK does; anything else would be news
    assert _failure_on_a_second_event_loop(gateway, base_url) is None


def test_upstream_error_document_reaches_the_caller_whole(openai_upstream: LoopbackServer) -> None:
    def failure(module) -> openai.APIStatusError:
        client = module.OpenAI(api_key="sk-test", base_url=openai_upstream.base_url + "/v1", max_retries=0)
        with client, pytest.raises(openai.APIStatusError) as caught:
            # a recorded OpenRouter 429, whose document has "user_id" beside "error"
            client.chat.completions.create(model="fixture:openrouter_error_429_upstream", messages=MESSAGES)
        return caught.value

    want, got = failure(openai), failure(gateway)
    assert (type(got), got.status_code, got.body, got.message, got.response.json()) == (
        type(want),
        want.status_code,
        want.body,
        want.message,
        want.response.json(),
    )
