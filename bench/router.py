"""How long ``gateway.router.plan`` takes over 10 candidates: the budget is a 50 µs median.

Run ``python bench/router.py`` (``--candidates N``, ``--batches N``). Each figure is the median over
batches of the per-call time, a batch being 100 back-to-back calls, so timer overhead stays out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

from gateway.policy import Policy, parse_policy
from gateway.router import ModelStats, StatsSnapshot, plan
from gateway.types import ChatRequest

CANDIDATES = [
    "openai/gpt-4o", "openai/gpt-4o-mini", "openai/gpt-4.1", "openai/gpt-4.1-mini", "openai/gpt-4.1-nano",
    "openai/o3-mini", "openai/gpt-5-mini", "anthropic/claude-haiku-4-5", "anthropic/claude-sonnet-4-5",
    "gemini/gemini-2.5-flash", "gemini/gemini-2.5-pro", "groq/llama-3.3-70b-versatile",
]  # fmt: skip
BATCH = 100


def _policy(count: int, extra: str = "") -> Policy:
    names = ", ".join(CANDIDATES[:count])
    return parse_policy(
        f"version: 1\nroutes:\n  r:\n    candidates: [{names}]\n{extra}", filename="bench.yaml", env={}
    )


def _median_us(call: Callable[[], object], batches: int) -> tuple[float, float, float]:
    for _ in range(BATCH * 10):
        call()
    per_call: list[float] = []
    for _ in range(batches):
        start = time.perf_counter_ns()
        for _ in range(BATCH):
            call()
        per_call.append((time.perf_counter_ns() - start) / BATCH / 1000)
    per_call.sort()
    return statistics.median(per_call), per_call[len(per_call) // 10], per_call[len(per_call) * 9 // 10]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--batches", type=int, default=300)
    args = parser.parse_args(argv)
    request = ChatRequest(model="route:r", messages=[{"role": "user", "content": "Where is my order?"}])
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    with_tools = ChatRequest(model="route:r", messages=request.messages, tools=tools, max_tokens=512)
    live = StatsSnapshot(
        models={
            name: ModelStats(ttft_s=0.4 + i / 10, tokens_per_s=80.0 + i, samples=50, in_flight=i % 3)
            for i, name in enumerate(CANDIDATES)
        }
    )
    cases = {
        "weights, priors only": (_policy(args.candidates), request, StatsSnapshot()),
        "weights, live stats, tools": (_policy(args.candidates), with_tools, live),
        "minimize cost, constraints": (
            _policy(args.candidates, "    minimize: cost\n    min_quality: 0.6\n    max_latency_ms: 20000\n"),
            request,
            live,
        ),
        "weights, least_busy": (_policy(args.candidates, "    balance: least_busy\n"), request, live),
    }
    print(f"plan() over {args.candidates} candidates, Python {sys.version.split()[0]}")
    print(f"{'case':<30} {'median':>9} {'p10':>9} {'p90':>9}")
    worst = 0.0
    for label, (policy, req, stats) in cases.items():

        def call(policy: Policy = policy, req: ChatRequest = req, stats: StatsSnapshot = stats) -> object:
            return plan(req, "r", policy, stats, prompt_tokens=1200)

        median, p10, p90 = _median_us(call, args.batches)
        worst = max(worst, median)
        print(f"{label:<30} {median:>7.1f}µs {p10:>7.1f}µs {p90:>7.1f}µs")
    verdict = "within" if worst < 50 else "OVER"
    print(f"worst median {worst:.1f} µs: {verdict} the 50 µs budget")
    return 0 if worst < 50 else 1


if __name__ == "__main__":
    sys.exit(main())
