"""Loopback "models" of known quality for the eval tests, and a policy that names them.

``good`` answers every quiz question right, ``bad`` answers none, ``judge`` grades (or, for the
``garbage`` model name, rambles). All three speak OpenAI's protocol through the shared loopback
server, so each keeps a request log the tests count calls with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.policy import Policy, parse_policy
from tests.servers import brain, openai_server
from tests.servers.http import Handler, JSONReply, LoopbackServer, Recorded, Reply

ANSWERS = {
    "What is 2+2?": "4",
    "Capital of France?": "Paris",
    "Pick the prime: A) 4 B) 7 C) 9": "B",
    "Largest planet?": "Jupiter",
}

SET_TEXT = "\n".join(
    [
        json.dumps({"set": {"name": "quiz", "route": "qa"}}),
        json.dumps({"id": "sum", "prompt": "What is 2+2?", "expected": 4, "scorer": "numeric"}),
        json.dumps({"id": "capital", "prompt": "Capital of France?", "expected": "paris"}),
        json.dumps(
            {"id": "prime", "prompt": "Pick the prime: A) 4 B) 7 C) 9", "expected": "B", "scorer": "choice"}
        ),
        json.dumps(
            {"id": "planet", "prompt": "Largest planet?", "expected": "Jupiter", "scorer": "contains"}
        ),
    ]
)


def quiz(correct: bool) -> Handler:
    def handle(rec: Recorded) -> Reply:
        body = rec.json() or {}
        if str(body.get("model", "")).startswith("error:"):
            return openai_server.handle(rec)
        reply = openai_server.chat(body)
        if body.get("tools"):
            return reply
        assert isinstance(reply, JSONReply)
        question = brain.text_of(body["messages"][-1]["content"])
        reply.body["choices"][0]["message"]["content"] = ANSWERS.get(question, "?") if correct else "no idea"
        return reply

    return handle


def judge(rec: Recorded) -> Reply:
    body = rec.json() or {}
    reply = openai_server.chat(body)
    assert isinstance(reply, JSONReply)
    verdict = (
        "Looks great to me!" if body["model"] == "garbage" else json.dumps({"score": 0.8, "reason": "fine"})
    )
    reply.body["choices"][0]["message"]["content"] = verdict
    return reply


@pytest.fixture(scope="session")
def servers() -> Iterator[dict[str, LoopbackServer]]:
    with LoopbackServer(quiz(True)) as good, LoopbackServer(quiz(False)) as bad, LoopbackServer(judge) as j:
        yield {"good": good, "bad": bad, "judge": j}


def policy_text(servers: dict[str, LoopbackServer]) -> str:
    providers = "\n".join(
        f"  {name}: {{kind: openai, base_url: '{s.base_url}/v1', api_key: sk-test}}"
        for name, s in servers.items()
    )
    return f"""version: 1
providers:
{providers}
models:
  good/model: {{provider: good, model: m, price: {{input: 10, output: 20}}, quality: 0.2}}
  bad/model: {{provider: bad, model: m, price: {{input: 0.1, output: 0.2}}, quality: 0.9}}
  bad/broken: {{provider: bad, model: 'error:500'}}
  judge/grader: {{provider: judge, model: grader, price: {{input: 1, output: 1}}}}
  judge/garbage: {{provider: judge, model: garbage, price: {{input: 1, output: 1}}}}
routes:
  qa: {{candidates: [good/model, bad/model], eval_set: quiz, weights: {{quality: 1, cost: 0.1}}}}
  plain: {{candidates: [good/model, bad/model]}}
"""


@pytest.fixture
def policy(servers: dict[str, LoopbackServer]) -> Policy:
    for server in servers.values():
        server.reset_log()
    return parse_policy(policy_text(servers))


@pytest.fixture
def policy_file(servers: dict[str, LoopbackServer], tmp_path: Path) -> Path:
    for server in servers.values():
        server.reset_log()
    path = tmp_path / "policy.yaml"
    path.write_text(policy_text(servers))
    return path


@pytest.fixture
def set_file(tmp_path: Path) -> Path:
    path = tmp_path / "quiz.jsonl"
    path.write_text(SET_TEXT + "\n")
    return path
