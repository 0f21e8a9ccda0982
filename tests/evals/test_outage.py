"""An upstream outage during ``eval run``: failed calls are errors, never scores of 0.

One loopback upstream answers the quiz right except for the ``planet`` case, which it fails with
a 503 (a partial outage); the conftest's ``bad/broken`` fails everything (a whole outage).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.evals import EvalStore, ModelCaller, parse_set, run_eval
from gateway.policy import Policy, parse_policy
from gateway.state import open_backend
from tests.evals.conftest import SET_TEXT, policy_text, quiz
from tests.servers import brain
from tests.servers.http import LoopbackServer, Recorded, Reply
from tests.servers.openai_server import error_reply


def _planet_down(rec: Recorded) -> Reply:
    body = rec.json() or {}
    if brain.text_of(body["messages"][-1]["content"]) == "Largest planet?":
        return error_reply(503)
    return quiz(True)(rec)


@pytest.fixture(scope="module")
def flaky() -> Iterator[LoopbackServer]:
    with LoopbackServer(_planet_down) as server:
        yield server


def _text(servers: dict[str, LoopbackServer], flaky: LoopbackServer) -> str:
    text = policy_text(servers)
    text = text.replace(
        "providers:\n",
        f"providers:\n  flaky: {{kind: openai, base_url: '{flaky.base_url}/v1', api_key: sk-test}}\n",
    )
    return text.replace(
        "models:\n", "models:\n  flaky/model: {provider: flaky, model: m, price: {input: 1, output: 1}}\n"
    )


@pytest.fixture
def outage_policy(servers: dict[str, LoopbackServer], flaky: LoopbackServer) -> Policy:
    return parse_policy(_text(servers, flaky))


@pytest.mark.parametrize("allow_errors", [False, True])
def test_a_partial_outage_is_excluded_and_counted_or_not_stored(
    outage_policy: Policy, allow_errors: bool
) -> None:
    store = EvalStore(open_backend("memory://"))
    quiz_set = parse_set(SET_TEXT)
    with ModelCaller(outage_policy, max_retries=0) as caller:
        run = run_eval(
            quiz_set, ["flaky/model", "good/model"], caller=caller, store=store, allow_errors=allow_errors
        )
    flaky_summary, good_summary = run.summaries
    planet = run.results["flaky/model"][3]
    assert (planet.case_id, planet.status, planet.score) == ("planet", "call_error", None)
    # the three answered cases are right: the outage does not drag the mean down
    assert (flaky_summary.mean, flaky_summary.scored, flaky_summary.failures) == (1.0, 3, 1)
    assert flaky_summary.failure_examples == (f"planet: {planet.error}",)
    stored = {s.model for s in store.summaries("quiz")}
    if allow_errors:
        assert run.unstored == {} and stored == {"flaky/model", "good/model"}
    else:
        assert list(run.unstored) == ["flaky/model"] and stored == {"good/model"}
        assert run.unstored["flaky/model"].startswith(
            f"flaky/model: 1 of 4 model calls failed (planet: {planet.error}); nothing stored for it"
        )
    # the answered cases are cached: a rerun after the outage calls only the failed one
    assert store.get_case("quiz", quiz_set.version, "flaky/model", "sum") is not None
    assert store.get_case("quiz", quiz_set.version, "flaky/model", "planet") is None


def test_eval_run_during_an_outage_exits_non_zero_and_names_the_model(
    servers: dict[str, LoopbackServer],
    flaky: LoopbackServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(_text(servers, flaky))
    sets = tmp_path / "quiz.jsonl"
    sets.write_text(SET_TEXT + "\n")
    store = f"sqlite:///{tmp_path}/evals.sqlite"
    args = ["eval", "run", str(sets), "--policy", str(policy), "--store", store, "--progress", "none"]
    args += ["--max-retries", "0", "--models"]

    assert main([*args, "good/model,bad/broken"]) == 3
    out, err = capsys.readouterr()
    assert "switchyard eval: bad/broken: all 4 cases failed (sum: InternalServerError: " in err
    assert "bad/broken" not in out  # no 0.000 row with a 0-0 interval
    backend = open_backend(store)
    models = {s.model for s in EvalStore(backend).summaries("quiz")}
    backend.close()
    assert models == {"good/model"}

    assert main([*args, "flaky/model"]) == 3
    assert "flaky/model: 1 of 4 model calls failed (planet: " in capsys.readouterr().err
    assert main([*args, "flaky/model", "--allow-errors"]) == 0
    out = capsys.readouterr().out
    assert "1 model calls, 3 cached results" in out and "stored in" in out
