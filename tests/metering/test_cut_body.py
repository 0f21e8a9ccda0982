"""A non-streamed answer whose body is cut after a success status is metered, not dropped.

The upstream answered 200 and began the body, so it read the prompt and generated the completion
(and bills both): the attempt's record carries the prompt, counted with the candidate's tokenizer,
and the completion at the attempt's output ceiling (the request's ``max_tokens``, else the output its
budget reservation assumed: the route's observed p99, capped by the model's maximum; without a budget
the model's maximum), marked estimated, and the budget is charged the same. A failure before any
status (refused, no answer) still consumes nothing and leaves no record. Over the core's own pool and
over the client's send, through the blocking and the async client; chat completions and the
Responses API relayed natively to an OpenAI upstream alike.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import openai
import pytest

import gateway
from gateway.budgets import Budget, Budgets, Subject
from gateway.metering import Meter, PriceTable
from gateway.metering.sinks import MemorySink
from gateway.metering.tokens import count_chat
from gateway.policy import load_policy
from gateway.state.base import UsageRecord as StateUsage
from gateway.state.sqlite import SQLiteBackend
from tests.client.test_hostile_http import OK_BODY
from tests.servers import openai_responses
from tests.servers.http import LoopbackServer
from tests.servers.openai_server import handle
from tests.servers.raw import RawAnswer, RawRequest, RawServer, response

MESSAGES = [{"role": "user", "content": "count my prompt, please"}]
FIRST_MAX = 300  # the hostile model's maximum output (policy max_output)


def cut_after_half(body: bytes) -> Callable[[RawRequest], RawAnswer]:
    """An upstream that announces all of ``body`` after 200, sends half, then closes the connection."""
    headers = {"content-type": "application/json", "content-length": str(len(body))}

    def answer(request: RawRequest) -> RawAnswer:
        return RawAnswer(response("200 OK", headers, body[: len(body) // 2]))

    return answer


cut = cut_after_half(OK_BODY)


def refused(request: RawRequest) -> RawAnswer:
    return RawAnswer(None)  # closes without answering


def _policy(tmp_path: Path, hostile: str, healthy: str, extra: str = "") -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""version: 1
providers:
  hostile: {{kind: openai, base_url: "{hostile}/v1", api_key: "hostile-credential"}}
  healthy: {{kind: openai, base_url: "{healthy}/v1", api_key: "healthy-credential"}}
models:
  first: {{provider: hostile, model: upstream-hostile, price: {{input: 1, output: 1}}, max_output: {FIRST_MAX}}}
  second: {{provider: healthy, model: gpt-4o-mini, price: {{input: 5, output: 5}}}}
routes:
  chat: {{candidates: [first, second], minimize: cost, retry: {{max_retries: 0}}}}
{extra}"""
    )
    return path


@pytest.mark.parametrize("http", ["pool", "client"])
def test_a_cut_body_after_200_is_metered_at_the_output_ceiling(tmp_path: Path, http: str) -> None:
    sink = MemorySink()
    meter = Meter(sink)
    with RawServer(cut) as hostile, LoopbackServer(handle) as healthy:
        kwargs: dict[str, object] = {}
        if http == "client":  # an event hook makes the core send through the client itself
            kwargs = {"http_client": openai.DefaultHttpxClient(event_hooks={"request": [lambda r: None]})}
        policy = _policy(tmp_path, hostile.base_url, healthy.base_url)
        with gateway.OpenAI(
            api_key="caller-credential", policy=policy, observer=meter, max_retries=0, **kwargs
        ) as client:
            reply = client.chat.completions.create(model="route:chat", messages=MESSAGES)
            assert gateway.info(reply).model == "second"  # fell back
    meter.close()
    by_model = {r.model: r for r in sink.records}
    assert set(by_model) == {"first", "second"}
    lost = by_model["first"]
    # no budget, no max_tokens: the model's maximum output (the upstream's answer may have run that long)
    assert (lost.outcome, lost.estimated, lost.completion_tokens) == ("error", True, FIRST_MAX)
    assert lost.prompt_tokens == count_chat(json.loads(json.dumps(MESSAGES)), "first").tokens > 0
    assert not by_model["second"].estimated


def test_no_answer_at_all_consumed_nothing(tmp_path: Path) -> None:
    sink = MemorySink()
    meter = Meter(sink)
    with RawServer(refused) as hostile, LoopbackServer(handle) as healthy:
        policy = _policy(tmp_path, hostile.base_url, healthy.base_url)
        with gateway.OpenAI(
            api_key="caller-credential", policy=policy, observer=meter, max_retries=0
        ) as client:
            client.chat.completions.create(model="route:chat", messages=MESSAGES)
    meter.close()
    assert [r.model for r in sink.records] == ["second"]


def _history(state: Path, outputs: range) -> None:
    """The usage records earlier complete answers of ``first`` on ``chat`` left in the store."""
    backend = SQLiteBackend(str(state))
    now = time.time()
    backend.append_usage(
        [
            StateUsage(f"old-{n}", now - 60, "", "-", "chat", "hostile", "first", 10, n, Decimal(0))
            for n in outputs
        ]
    )
    backend.close()


def _spent(state: Path) -> tuple[int, int]:
    backend = SQLiteBackend(str(state))
    try:
        [status] = Budgets(backend, [Budget("all", LIMIT, "tokens", "day", "global")]).status(Subject())
    finally:
        backend.close()
    return int(status.used), int(status.reserved)


LIMIT = 1_000_000


@pytest.mark.parametrize(
    ("client", "max_tokens", "history", "ceiling"),
    [
        ("sync", 64, None, 64),  # max_tokens bounds what the upstream can have generated
        ("async", 64, None, 64),
        ("sync", None, None, FIRST_MAX),  # too little history: the reservation held the model's maximum
        ("sync", None, range(1, 101), 99),  # the reservation's estimate: the route's observed p99
        ("async", None, range(1, 101), 99),
        ("sync", None, range(1000, 1100), FIRST_MAX),  # the p99 capped by the model's maximum
    ],
)
def test_a_cut_body_is_charged_to_the_budget_at_what_its_reservation_held(
    tmp_path: Path, client: str, max_tokens: int | None, history: range | None, ceiling: int
) -> None:
    state = tmp_path / "state.sqlite"
    if history is not None:
        _history(state, history)
    extra = f'state: {{backend: sqlite, path: "{state}"}}\nbudgets: {{all: {{window: day, limit_tokens: {LIMIT}}}}}\n'
    limits = {} if max_tokens is None else {"max_tokens": max_tokens}
    with RawServer(cut) as hostile, LoopbackServer(handle) as healthy:
        policy = _policy(tmp_path, hostile.base_url, healthy.base_url, extra)
        sink = MemorySink()
        meter = Meter(sink, prices=PriceTable.from_policy(load_policy(policy)))
        if client == "sync":
            with gateway.OpenAI(policy=policy, observer=meter, max_retries=0) as sync_client:
                sync_client.chat.completions.create(model="route:chat", messages=MESSAGES, **limits)
        else:

            async def main() -> None:
                async with gateway.AsyncOpenAI(policy=policy, observer=meter, max_retries=0) as async_client:
                    await async_client.chat.completions.create(
                        model="route:chat", messages=MESSAGES, **limits
                    )

            asyncio.run(main())
    meter.close()
    by_model = {r.model: r for r in sink.records}
    lost, served = by_model["first"], by_model["second"]
    prompt = count_chat(json.loads(json.dumps(MESSAGES)), "first").tokens
    assert (lost.outcome, lost.estimated, lost.prompt_tokens, lost.completion_tokens) == (
        "error",
        True,
        prompt,
        ceiling,
    )
    assert lost.cost_usd == Decimal(prompt + ceiling) / 1_000_000  # $1 per 1M in and out
    # the budget was charged both attempts, the cut one at its ceiling, and holds nothing more
    assert _spent(state) == (
        lost.prompt_tokens + ceiling + served.prompt_tokens + served.completion_tokens,
        0,
    )


# --- the Responses API relayed natively meets the same rule ----------------------------------------

RESPONSES_BODY = json.dumps(
    openai_responses.handle({"model": "gpt-4o-mini", "input": MESSAGES[0]["content"]}, "req_cut").body
).encode()

cut_response = cut_after_half(RESPONSES_BODY)  # a whole ``Response`` object announced


def _native_policy(tmp_path: Path, hostile: str, state: Path) -> Path:
    """One candidate on a provider the core relays the Responses API to natively (``openai``)."""
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""version: 1
providers:
  openai: {{kind: openai, base_url: "{hostile}/v1", api_key: "hostile-credential"}}
models:
  first: {{provider: openai, model: upstream-hostile, price: {{input: 1, output: 1}}, max_output: {FIRST_MAX}}}
routes:
  chat: {{candidates: [first], retry: {{max_retries: 0}}}}
state: {{backend: sqlite, path: "{state}"}}
budgets: {{all: {{window: day, limit_tokens: {LIMIT}}}}}
"""
    )
    return path


@pytest.mark.parametrize(
    ("client", "max_output_tokens", "history", "ceiling"),
    [
        ("sync", 64, None, 64),  # max_output_tokens bounds what the upstream can have generated
        ("async", 64, None, 64),
        ("client-send", 64, None, 64),  # the core sends through the client's own http client
        ("sync", None, None, FIRST_MAX),  # the reservation held the model's maximum
        ("async", None, range(1, 101), 99),  # the reservation's estimate: the route's observed p99
    ],
)
def test_a_cut_responses_body_relayed_natively_is_metered_at_the_output_ceiling(
    tmp_path: Path, client: str, max_output_tokens: int | None, history: range | None, ceiling: int
) -> None:
    """``client.responses.create`` relayed as written to an OpenAI upstream whose body is cut after
    200: the caller gets a typed error, the attempt is metered (prompt counted, completion at the
    ceiling, estimated) and the budget is charged the same, as for chat completions."""
    state = tmp_path / "state.sqlite"
    if history is not None:
        _history(state, history)
    limits = {} if max_output_tokens is None else {"max_output_tokens": max_output_tokens}
    with RawServer(cut_response) as hostile:
        policy = _native_policy(tmp_path, hostile.base_url, state)
        sink = MemorySink()
        meter = Meter(sink, prices=PriceTable.from_policy(load_policy(policy)))
        if client == "async":

            async def main() -> None:
                async with gateway.AsyncOpenAI(policy=policy, observer=meter, max_retries=0) as async_client:
                    await async_client.responses.create(
                        model="route:chat", input=MESSAGES[0]["content"], **limits
                    )

            with pytest.raises(openai.APIConnectionError, match="incomplete|complete message body"):
                asyncio.run(main())
        else:
            kwargs: dict[str, object] = {}
            if client == "client-send":
                kwargs = {"http_client": openai.DefaultHttpxClient(event_hooks={"request": [lambda r: None]})}
            with gateway.OpenAI(policy=policy, observer=meter, max_retries=0, **kwargs) as sync_client:
                with pytest.raises(openai.APIConnectionError, match="incomplete|complete message body"):
                    sync_client.responses.create(model="route:chat", input=MESSAGES[0]["content"], **limits)
        assert [r.path for r in hostile.requests] == ["/v1/responses"]  # relayed natively, sent once
    meter.close()
    [lost] = sink.records
    prompt = count_chat(json.loads(json.dumps(MESSAGES)), "first").tokens
    assert (lost.model, lost.outcome, lost.estimated, lost.prompt_tokens, lost.completion_tokens) == (
        "first",
        "error",
        True,
        prompt,
        ceiling,
    )
    assert lost.cost_usd == Decimal(prompt + ceiling) / 1_000_000  # $1 per 1M in and out
    assert _spent(state) == (prompt + ceiling, 0)  # charged at the ceiling, nothing left held
