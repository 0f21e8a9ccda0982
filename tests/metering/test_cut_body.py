"""A non-streamed answer whose body is cut after a success status is metered, not dropped.

The upstream answered 200 and began the body, so it read the prompt (and bills it): the attempt's
record carries the prompt, counted with the candidate's tokenizer and marked estimated; the
completion it never delivered is unknown (0). A failure before any status (refused, no answer)
still consumes nothing and leaves no record. Over the core's own pool and over the client's send.
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

import gateway
from gateway.metering import Meter
from gateway.metering.sinks import MemorySink
from gateway.metering.tokens import count_chat
from tests.client.test_hostile_http import OK_BODY
from tests.servers.http import LoopbackServer
from tests.servers.openai_server import handle
from tests.servers.raw import RawAnswer, RawRequest, RawServer, response

MESSAGES = [{"role": "user", "content": "count my prompt, please"}]


def cut(request: RawRequest) -> RawAnswer:
    headers = {"content-type": "application/json", "content-length": str(len(OK_BODY))}
    return RawAnswer(response("200 OK", headers, OK_BODY[: len(OK_BODY) // 2]))  # then the connection closes


def refused(request: RawRequest) -> RawAnswer:
    return RawAnswer(None)  # closes without answering


def _policy(tmp_path: Path, hostile: str, healthy: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""version: 1
providers:
  hostile: {{kind: openai, base_url: "{hostile}/v1", api_key: "sk-hostile-0123456789"}}
  healthy: {{kind: openai, base_url: "{healthy}/v1", api_key: "sk-healthy-0123456789"}}
models:
  first: {{provider: hostile, model: upstream-hostile, price: {{input: 1, output: 1}}}}
  second: {{provider: healthy, model: gpt-4o-mini, price: {{input: 5, output: 5}}}}
routes:
  chat: {{candidates: [first, second], minimize: cost, retry: {{max_retries: 0}}}}
"""
    )
    return path


@pytest.mark.parametrize("http", ["pool", "client"])
def test_a_cut_body_after_200_is_metered_as_an_estimated_prompt(tmp_path: Path, http: str) -> None:
    sink = MemorySink()
    meter = Meter(sink)
    with RawServer(cut) as hostile, LoopbackServer(handle) as healthy:
        kwargs: dict[str, object] = {}
        if http == "client":  # an event hook makes the core send through the client itself
            kwargs = {"http_client": openai.DefaultHttpxClient(event_hooks={"request": [lambda r: None]})}
        policy = _policy(tmp_path, hostile.base_url, healthy.base_url)
        with gateway.OpenAI(
            api_key="sk-test", policy=policy, observer=meter, max_retries=0, **kwargs
        ) as client:
            reply = client.chat.completions.create(model="route:chat", messages=MESSAGES)
            assert gateway.info(reply).model == "second"  # fell back
    meter.close()
    by_model = {r.model: r for r in sink.records}
    assert set(by_model) == {"first", "second"}
    lost = by_model["first"]
    assert (lost.outcome, lost.estimated, lost.completion_tokens) == ("error", True, 0)
    assert lost.prompt_tokens == count_chat(json.loads(json.dumps(MESSAGES)), "first").tokens > 0
    assert not by_model["second"].estimated


def test_no_answer_at_all_consumed_nothing(tmp_path: Path) -> None:
    sink = MemorySink()
    meter = Meter(sink)
    with RawServer(refused) as hostile, LoopbackServer(handle) as healthy:
        policy = _policy(tmp_path, hostile.base_url, healthy.base_url)
        with gateway.OpenAI(api_key="sk-test", policy=policy, observer=meter, max_retries=0) as client:
            client.chat.completions.create(model="route:chat", messages=MESSAGES)
    meter.close()
    assert [r.model for r in sink.records] == ["second"]
