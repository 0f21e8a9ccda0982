"""The whole eval loop offline, in about ten seconds: eval run -> report -> the router's choice changes.

python examples/evals/run_offline.py

Two "closed" models are served by a loopback server (``fake_upstream.py``): ``small`` is cheap and
fast, ``big`` is dear, slower and right more often. The policy's priors claim ``small`` is the
better model, so the route picks it; the eval measures both on ``quiz.jsonl``, and the route then
picks ``big``, because quality weighs most on this route. The scores go to the policy's own state
backend (``state: sqlite``), the one every gateway process using the policy reads. Each step is
the command a person types:

    switchyard eval explain --policy P --route quiz               (before)
    switchyard eval run quiz.jsonl --policy P --route quiz --judge big
    switchyard eval report quiz.jsonl --policy P --out DIR
    switchyard eval explain --policy P --route quiz               (after)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fake_upstream import serve

from gateway.cli import main
from gateway.core.types import ChatRequest
from gateway.evals import EvalStore, route_evals, store_config
from gateway.policy import load_policy
from gateway.router import StatsSnapshot, plan

HERE = Path(__file__).resolve().parent
os.environ.setdefault("FAKE_UPSTREAM_KEY", "sk-example")


def first_choice(policy_path: Path) -> str:
    """What the router would try first for a request on the route, reading the policy's state."""
    policy = load_policy(policy_path)
    store = EvalStore.open(store_config(policy))
    evals = route_evals(store, policy, "quiz")
    store.close()
    request = ChatRequest(model="route:quiz", messages=[{"role": "user", "content": "Hello"}])
    return plan(request, "quiz", policy, StatsSnapshot(), prompt_tokens=5, evals=evals).candidates[0].model


with serve() as base_url, tempfile.TemporaryDirectory() as work:
    policy_path = Path(work) / "policy.yaml"
    policy_path.write_text(
        f"""version: 1
providers:
  fake: {{kind: openai, base_url: "{base_url}", api_key: "${{FAKE_UPSTREAM_KEY}}"}}
models:
  small: {{provider: fake, model: small, price: {{input: 0.15, output: 0.6}}, quality: 0.8, ttft_s: 0.3}}
  big: {{provider: fake, model: big, price: {{input: 5, output: 15}}, quality: 0.7, ttft_s: 0.8}}
routes:
  quiz:
    candidates: [small, big]
    weights: {{quality: 0.8, speed: 0.1, cost: 0.1}}
    eval_set: quiz
state: {{backend: sqlite, path: "{work}/state.sqlite"}}
"""
    )
    policy, route = ["--policy", str(policy_path)], ["--route", "quiz"]
    before = first_choice(policy_path)

    print("== before: the route ranks by its priors ==")
    main(["eval", "explain", *policy, *route])
    print("\n== switchyard eval run ==")
    main(["eval", "run", str(HERE / "quiz.jsonl"), *policy, *route, "--judge", "big", "--progress", "plain"])
    print("\n== switchyard eval report ==")
    main(["eval", "report", str(HERE / "quiz.jsonl"), *policy, "--out", str(Path(work) / "report")])
    print((Path(work) / "report" / "quiz.md").read_text())
    print("== after: the route ranks by the measured scores ==")
    main(["eval", "explain", *policy, *route])
    after = first_choice(policy_path)
    print(f"\nthe router's first choice for route:quiz: {before} -> {after}")
    if before == after:
        raise SystemExit("expected the eval to change the router's choice")
