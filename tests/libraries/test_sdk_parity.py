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
    ("Event loop is closed": a RuntimeError under openai 3.57, an APIConnectionError under 2.32); Switchyard's upstream pool
    keeps connections per loop (``gateway/transports/pool_async.py``), so the second call works."""
    base_url = openai_upstream.base_url + "/v1"
    _failure_on_a_second_event_loop(openai, base_url)  # RuntimeError (3.57) or APIConnectionError (2.32)
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


def test_every_encoding_the_client_offers_is_decoded() -> None:
    """The upstream pool keeps the client's Accept-Encoding (here 'gzip, deflate', plus 'zstd' where
    the HTTP package finds zstandard, as in .venv-libs) and decodes whichever the upstream picks."""
    import gzip
    import json
    import zlib

    from tests.client.test_hostile_http import OK_BODY
    from tests.servers.raw import RawAnswer, RawRequest, RawServer, response

    def encoders() -> dict[str, object]:
        found: dict[str, object] = {"gzip": gzip.compress, "deflate": zlib.compress}
        try:
            import zstandard
        except ImportError:
            return found
        found["zstd"] = zstandard.ZstdCompressor().compress
        return found

    def answer(request: RawRequest) -> RawAnswer:
        offered = [e.strip() for e in request.headers.get("accept-encoding", "").split(",")]
        chosen = offered[-1]  # the last one offered: zstd where it is
        body = encoders()[chosen](OK_BODY)  # type: ignore[operator]
        headers = {
            "content-type": "application/json",
            "content-length": str(len(body)),
            "content-encoding": chosen,
        }
        return RawAnswer(response("200 OK", headers, body), keep_open=True)

    def reply(module) -> tuple[str, str | None]:  # type: ignore[no-untyped-def]
        with RawServer(answer) as server:
            client = module.OpenAI(api_key="sk-test", base_url=server.base_url + "/v1", max_retries=0)
            content = (
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                .choices[0]
                .message.content
            )
            return server.requests[-1].headers["accept-encoding"], content

    expected = reply(openai)
    assert (
        reply(gateway) == expected and expected[1] == json.loads(OK_BODY)["choices"][0]["message"]["content"]
    )
