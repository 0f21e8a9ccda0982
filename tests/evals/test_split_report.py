"""``switchyard eval report SET --split ROUTE``: an A/B split recorded through a real client, compared.

Both arms answer the same prompt with the same usage (the loopback echo), so each arm's cost per
request is exact and its interval has no width: the cost difference is known to the digit. The
quality difference is paired over the set's cases.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

import gateway
from gateway.cli import main
from gateway.evals.ab import Estimate, mean_interval, paired_difference, welch
from gateway.evals.results import CaseResult
from gateway.evals.store import EvalStore
from gateway.state.sqlite import SQLiteBackend
from tests.servers.http import LoopbackServer
from tests.servers.openai_server import handle

MESSAGES = [{"role": "user", "content": "is my parcel on its way?"}]
SET = '{"set": {"name": "support", "version": "v1"}}\n' + "".join(
    f'{{"id": "c{i}", "prompt": "q{i}", "expected": "yes"}}\n' for i in range(4)
)


@pytest.fixture
def upstreams() -> Iterator[tuple[LoopbackServer, LoopbackServer]]:
    with LoopbackServer(handle) as a, LoopbackServer(handle) as b:
        yield a, b


def test_welch_and_paired_intervals() -> None:
    # var 1 each, se = sqrt(2/3), Welch df = 4, t = 2.776: half-width 2.2666
    assert welch([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]) == Estimate(1.0, pytest.approx(-1.2666, abs=1e-3), pytest.approx(3.2666, abs=1e-3), 3)  # fmt: skip
    assert paired_difference([(1, 1), (1, 1), (0, 1), (1, 1)]) == Estimate(0.25, -0.5455, 1.0455, 4)
    assert mean_interval([0.5]).high == math.inf


def test_split_report_shows_each_arm_and_the_difference(
    upstreams: tuple[LoopbackServer, LoopbackServer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = upstreams
    state = tmp_path / "state.sqlite"
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        f"""
version: 1
providers:
  host-a: {{kind: openai, base_url: "{a.base_url}", api_key: "sk-a"}}
  host-b: {{kind: openai, base_url: "{b.base_url}", api_key: "sk-b"}}
models:
  arm-a: {{provider: host-a, model: a-1, price: {{input: 1, output: 1}}}}
  arm-b: {{provider: host-b, model: b-1, price: {{input: 3, output: 3}}}}
routes:
  support: {{candidates: [arm-a, arm-b], split: {{arm-a: 0.5, arm-b: 0.5}}, eval_set: support}}
state: {{backend: sqlite, path: "{state}"}}
"""
    )
    with gateway.OpenAI(policy=str(policy)) as client:
        served = [
            client.chat.completions.create(model="route:support", messages=MESSAGES).model for _ in range(40)
        ]
    assert {"a-1", "b-1"} == set(served)  # both arms drew traffic (40 draws at 50/50)
    backend = SQLiteBackend(str(state))
    records = backend.usage_records(0)
    tokens = {r.prompt_tokens + r.completion_tokens for r in records}
    assert len(tokens) == 1  # every request the same size: each arm's cost is exact
    store = EvalStore(backend)
    for model, scores in (("arm-a", [1, 1, 0, 1]), ("arm-b", [1, 1, 1, 1])):
        for i, score in enumerate(scores):
            store.put_case("support", "v1", CaseResult(f"c{i}", model, "ok", float(score)))
    backend.close()
    set_file = tmp_path / "support.jsonl"
    set_file.write_text(SET)

    assert main(["eval", "report", str(set_file), "--policy", str(policy), "--split", "support"]) == 0
    out = capsys.readouterr().out
    per_1k_a = Decimal(tokens.pop()) * 1 / 1_000_000 * 1000
    n_a, n_b = served.count("a-1"), served.count("b-1")
    lines = out.splitlines()
    assert lines[0] == "## A/B split of route `support`"
    assert lines[4].startswith(f"| `arm-a` | 0.5 | {n_a} | {per_1k_a:.4f} [{per_1k_a:.4f}, {per_1k_a:.4f}] |")
    assert lines[5].startswith(f"| `arm-b` | 0.5 | {n_b} | {per_1k_a * 3:.4f} [")
    difference = lines[-1]
    assert difference.startswith(
        f"| `arm-b` | {per_1k_a * 2:+.4f} [{per_1k_a * 2:+.4f}, {per_1k_a * 2:+.4f}] |"
    )
    assert difference.endswith("| +0.000 [+0.000, +0.000] | +0.250 [-0.545, +1.046] |")
