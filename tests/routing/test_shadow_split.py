"""``shadow`` and ``split`` on a route: a background copy to another model, and an A/B draw of the head.

The shadow's upstream holds every request until the test lets it go, so a caller's reply that
arrives while the copy is still held proves the copy never delays the caller (no timing involved).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

import gateway
from gateway.budgets import Subject
from gateway.cli import main
from gateway.commands.replay import replay_report
from gateway.core.shadow import ShadowStats
from gateway.core.types import ChatRequest
from gateway.policy import load_policy, parse_policy
from gateway.router import ModelStats, StatsSnapshot, plan
from gateway.state.sqlite import SQLiteBackend
from tests.servers.http import LoopbackServer, Recorded, Reply
from tests.servers.openai_server import handle

MESSAGES = [{"role": "user", "content": "is my parcel on its way?"}]


class Held:
    """An upstream that answers only once ``release`` is set."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.arrived = threading.Event()

    def __call__(self, rec: Recorded) -> Reply:
        self.arrived.set()
        self.release.wait(10)
        return handle(rec)


@pytest.fixture
def upstreams() -> Iterator[tuple[LoopbackServer, LoopbackServer, Held]]:
    held = Held()
    with LoopbackServer(handle) as primary, LoopbackServer(held) as candidate:
        yield primary, candidate, held
        held.release.set()


def write_policy(tmp_path: Path, primary: str, candidate: str, share: float = 1.0, extra: str = "") -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"""
version: 1
providers:
  main-host: {{kind: openai, base_url: "{primary}", api_key: "sk-main"}}
  trial-host: {{kind: openai, base_url: "{candidate}", api_key: "sk-trial"}}
models:
  main: {{provider: main-host, model: main-1, price: {{input: 1, output: 2}}}}
  trial: {{provider: trial-host, model: trial-1, price: {{input: 3, output: 4}}}}
routes:
  support: {{candidates: [main], shadow: {{candidate: trial, share: {share}}}}}
state: {{backend: sqlite, path: "{tmp_path / "state.sqlite"}"}}
{extra}
"""
    )
    return path


def wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.01)


def routes_logged(tmp_path: Path) -> Counter[tuple[str, str]]:
    backend = SQLiteBackend(str(tmp_path / "state.sqlite"))
    try:
        return Counter((r.route, r.model) for r in backend.usage_records(0))
    finally:
        backend.close()


def test_shadow_copy_runs_in_the_background_and_is_metered_apart(upstreams, tmp_path: Path) -> None:
    primary, candidate, held = upstreams
    with gateway.OpenAI(policy=str(write_policy(tmp_path, primary.base_url, candidate.base_url))) as client:
        reply = client.chat.completions.create(model="route:support", messages=MESSAGES)
        stream = client.chat.completions.create(model="route:support", messages=MESSAGES, stream=True)
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        # both answers came back while the copies are still held upstream
        assert held.arrived.wait(5) and not held.release.is_set()
        assert reply.model == "main-1" and streamed.startswith("Echo:")
        assert gateway.info(reply).model == "main"
        shadows = client._switchyard.core.shadows
        held.release.set()
        wait_for(lambda: shadows.stats().answered == 2)
        assert shadows.stats() == ShadowStats(sent=2, answered=2, failed=0, skipped=0, refused=0)
        client._switchyard.runtime.meter.flush()
    copies = [rec.json() for rec in candidate.log]
    assert [(c["model"], c["messages"], c.get("stream")) for c in copies] == [("trial-1", MESSAGES, None)] * 2
    assert routes_logged(tmp_path) == {("support", "main"): 2, ("shadow:support", "trial"): 2}
    # replay re-plans the route's own requests, not the copies
    backend = SQLiteBackend(str(tmp_path / "state.sqlite"))
    records = backend.usage_records(0)
    backend.close()
    report = replay_report(records, load_policy(str(tmp_path / "policy.yaml")), lambda eval_set: None)
    assert (report["requests"], report["skipped"]) == (2, {"shadow": 2})


def test_async_client_shadows_on_its_event_loop(upstreams, tmp_path: Path) -> None:
    primary, candidate, held = upstreams
    policy = write_policy(tmp_path, primary.base_url, candidate.base_url)

    async def scenario() -> None:
        async with gateway.AsyncOpenAI(policy=str(policy)) as client:
            reply = await client.chat.completions.create(model="route:support", messages=MESSAGES)
            assert reply.model == "main-1"
            shadows = client._switchyard.core.shadows
            assert shadows.stats().answered == 0  # the copy is held upstream: the caller did not wait
            held.release.set()
            deadline = time.monotonic() + 10
            while shadows.stats().answered < 1 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert shadows.stats() == ShadowStats(sent=1, answered=1, failed=0, skipped=0, refused=0)
            client._switchyard.runtime.meter.flush()

    asyncio.run(scenario())
    assert routes_logged(tmp_path) == {("support", "main"): 1, ("shadow:support", "trial"): 1}


def test_a_failing_shadow_never_reaches_the_caller(tmp_path: Path) -> None:
    with LoopbackServer(handle) as primary:
        path = write_policy(tmp_path, primary.base_url, "http://127.0.0.1:9/v1")  # nothing listens there
        with gateway.OpenAI(policy=str(path)) as client:
            reply = client.chat.completions.create(model="route:support", messages=MESSAGES)
            shadows = client._switchyard.core.shadows
            wait_for(lambda: shadows.stats().failed == 1)
    assert reply.model == "main-1"


BUDGETS = """
budgets:
  route-line: {match: {route: support}, window: day, limit_usd: 10}
  shadow-line: {match: {route: "shadow:support"}, window: day, limit_usd: %s}
"""


def test_the_shadow_has_its_own_budget_line(upstreams, tmp_path: Path) -> None:
    primary, candidate, held = upstreams
    held.release.set()
    policy = write_policy(tmp_path, primary.base_url, candidate.base_url, extra=BUDGETS % "10")
    with gateway.OpenAI(policy=str(policy)) as client:
        for _ in range(2):
            client.chat.completions.create(model="route:support", messages=MESSAGES, max_tokens=20)
        shadows = client._switchyard.core.shadows
        wait_for(lambda: shadows.stats().answered == 2)
        budgets = client._switchyard.runtime.guard.budgets
        route_line = {s.name: s for s in budgets.status(Subject(route="support"))}["route-line"]
        shadow_line = {s.name: s for s in budgets.status(Subject(route="shadow:support"))}["shadow-line"]
        client._switchyard.runtime.meter.flush()
    backend = SQLiteBackend(str(tmp_path / "state.sqlite"))
    cost = {route: sum(r.cost_usd for r in backend.usage_records(0) if r.route == route) for route in ("support", "shadow:support")}  # fmt: skip
    backend.close()
    assert cost["support"] > 0 and cost["shadow:support"] > cost["support"]  # trial is the pricier model
    assert (route_line.used, route_line.reserved) == (cost["support"], 0)
    assert (shadow_line.used, shadow_line.reserved) == (cost["shadow:support"], 0)


def test_a_shadow_over_its_budget_is_not_sent(
    upstreams, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    primary, candidate, held = upstreams
    policy = write_policy(tmp_path, primary.base_url, candidate.base_url, extra=BUDGETS % "0.0000001")
    assert main(["policy", "check", "--strict", str(policy)]) == 0  # shadow:support is a route to match
    with gateway.OpenAI(policy=str(policy)) as client:
        replies = [client.chat.completions.create(model="route:support", messages=MESSAGES) for _ in range(2)]
        shadows = client._switchyard.core.shadows
        wait_for(lambda: shadows.stats().refused == 2)
    assert [r.model for r in replies] == ["main-1", "main-1"] and candidate.log == []


def test_no_copy_without_a_draw(upstreams, tmp_path: Path) -> None:
    primary, candidate, _ = upstreams
    policy = write_policy(tmp_path, primary.base_url, candidate.base_url, share=0.000001)
    with gateway.OpenAI(policy=str(policy)) as client:
        for _ in range(5):
            client.chat.completions.create(model="route:support", messages=MESSAGES)
        assert client._switchyard.core.shadows.stats().sent == 0
    assert candidate.log == []


SPLIT = """
version: 1
routes:
  ab:
    candidates: [openai/gpt-4o-mini, openai/gpt-4o, openai/gpt-4.1-mini]
    split: {gpt-4o-mini: 0.3, openai/gpt-4o: 0.7}
    explore: 0.5
"""


def test_split_draws_the_head_by_weight_and_keeps_the_rest_as_fallbacks() -> None:
    policy = parse_policy(SPLIT)
    request = ChatRequest(model="route:ab", messages=MESSAGES)
    rng = random.Random(7)
    plans = [plan(request, "ab", policy, StatsSnapshot(), prompt_tokens=20, rng=rng) for _ in range(2000)]
    heads = Counter(p.candidates[0].model for p in plans)
    assert set(heads) == {"openai/gpt-4o-mini", "openai/gpt-4o"}  # no explore to the third: the split decides
    assert 0.25 < heads["openai/gpt-4o-mini"] / 2000 < 0.35
    assert {p.candidates[0].basis for p in plans} <= {"split", "utility"}
    assert all(len(p.candidates) == 3 for p in plans)
    # an arm that cannot serve leaves the draw to the other
    open_breaker = StatsSnapshot(models={"openai/gpt-4o": ModelStats(breaker_open=True)})
    heads = Counter(
        plan(request, "ab", policy, open_breaker, prompt_tokens=20, rng=rng).candidates[0].model
        for _ in range(50)
    )
    assert heads == {"openai/gpt-4o-mini": 50}


def test_policy_check_locates_shadow_and_split_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(
        """version: 1
routes:
  a:
    candidates: [gpt-4o-mini, gpt-4o]
    shadow: {candidate: gpt-4o-mni, share: 0.05}
    split: {gpt-4o-mini: 1, o3: 1}
  b:
    candidates: [gpt-4o-mini]
    shadow: {candidate: gpt-4o, share: 1.5}
"""
    )
    assert main(["policy", "check", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{path}:9:40 at routes.b.shadow.share: Input should be less than or equal to 1 [policy.less-than-equal]",
        f"{path}: 1 error(s)",
    ]
    path.write_text(path.read_text().replace("share: 1.5", "share: 0.5"))
    assert main(["policy", "check", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{path}:5:25 at routes.a.shadow.candidate: unknown shadow model 'gpt-4o-mni'; did you mean "
        "'gpt-4o-mini'? [policy.unknown-model]",
        f"{path}:6:29 at routes.a.split.o3: split weight for 'o3', which is not a candidate of this route "
        "[policy.unknown-model]",
        f"{path}: 2 error(s)",
    ]


def test_policy_explain_names_the_split_and_the_shadow(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ab.yaml"
    path.write_text(SPLIT.replace("explore: 0.5", "shadow: {candidate: gpt-4.1-nano, share: 0.05}"))
    assert (
        main(["policy", "explain", str(path), "--route", "ab", "--prompt", "hello", "--prompt-tokens", "5"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[4].split()[:2] == ["1", "openai/gpt-4o"] and lines[4].endswith("split")
    assert lines[-2:] == [
        "split (A/B): the head is drawn by weight from gpt-4o-mini 0.3, openai/gpt-4o 0.7; without a draw, the heaviest",
        "shadow: 5.0% of requests copied to gpt-4.1-nano in the background (metered as route shadow:ab)",
    ]


def test_shadow_answers_are_captured_beside_the_served_ones_and_scored(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """With ``capture:`` (even at sample_rate 0) a shadowed request and its copy are both kept, paired
    by ``metadata.shadow_of``; ``switchyard eval shadow`` scores the copy against the served answer."""
    import json
    import sys

    from gateway.capture import DatasetStore

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    from loopback_upstream import serve

    with LoopbackServer(handle) as primary, serve("trial") as trial_url:
        path = write_policy(tmp_path, primary.base_url, trial_url)
        text = path.read_text().replace(
            "shadow: {candidate: trial, share: 1.0}}",
            f'shadow: {{candidate: trial, share: 1.0}}, capture: {{sample_rate: 0.0, store: "{tmp_path}/cap.sqlite"}}}}',
        )
        path.write_text(text)
        with gateway.OpenAI(policy=str(path)) as client:
            for word in ("alpha", "beta", "gamma"):
                client.chat.completions.create(
                    model="route:support", messages=[{"role": "user", "content": word}]
                )
            shadows = client._switchyard.core.shadows
            wait_for(lambda: shadows.stats().answered == 3)
    store = DatasetStore(tmp_path / "cap.sqlite")
    served = {e.id: e for e in store.examples("support")}
    copies = list(store.examples("shadow:support"))
    store.close()
    assert len(served) == 3 and len(copies) == 3  # the sample rate of 0 did not drop the pairs
    assert {c.metadata["shadow_of"] for c in copies} == set(served)
    assert all(c.completion == "[trial] " + served[c.metadata["shadow_of"]].completion for c in copies)
    assert main(["eval", "shadow", "support", "--policy", str(path), "--format", "json"]) == 0
    [exact] = json.loads(capsys.readouterr().out)
    assert (exact["shadow_model"], exact["served_models"], exact["pairs"], exact["agreement"]) == (
        "trial",
        ["main"],
        3,
        0.0,
    )
    assert exact["interval_95"][0] == 0.0 and 0.4 < exact["interval_95"][1] < 0.6  # Wilson, n = 3
    assert main(["eval", "shadow", "support", "--policy", str(path), "--scorer", "contains"]) == 0
    table = capsys.readouterr().out
    assert "| trial | main | 3 | 1.000 |" in table
    assert main(["eval", "shadow", "support", "--policy", str(path), "--scorer", "no.such:thing"]) == 2
    assert (
        main(["eval", "shadow", "support", "--policy", str(path), "--scorer", "judge"]) == 2
    )  # no judge named
    with LoopbackServer(_verdict) as judge_host:
        text = (
            path.read_text()
            .replace(
                "models:",
                "models:\n  grader: {provider: judge-host, model: grader-1, price: {input: 1, output: 1}}",
            )
            .replace(
                "providers:",
                f'providers:\n  judge-host: {{kind: openai, base_url: "{judge_host.base_url}", api_key: "sk-judge"}}',
            )
        )
        path.write_text(text)
        argv = [
            "eval",
            "shadow",
            "support",
            "--policy",
            str(path),
            "--scorer",
            "judge",
            "--judge",
            "grader",
            "--format",
            "json",
        ]
        assert main(argv) == 0
        [judged] = json.loads(capsys.readouterr().out)
        assert (judged["pairs"], judged["agreement"]) == (3, 0.75)
        asked = [rec.json() for rec in judge_host.log]
        assert len(asked) == 3 and all(
            "Reference answer: Echo:" in a["messages"][1]["content"] for a in asked
        )


def _verdict(rec: Recorded) -> Reply:
    """A judge that grades every answer 0.75."""
    import json as _json

    from tests.servers import openai_server
    from tests.servers.http import JSONReply

    reply = openai_server.chat(rec.json() or {})
    assert isinstance(reply, JSONReply)
    reply.body["choices"][0]["message"]["content"] = _json.dumps({"score": 0.75, "reason": "close"})
    return reply
