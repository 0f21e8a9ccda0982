"""How long ``gateway.router.plan`` takes: budgets of a 50 µs median over 10 candidates, 300 µs over 100.

Run ``python bench/router.py`` (``--candidates N``, ``--batches N``); ``--candidates 100`` adds
synthetic policy models (``bench-<i>``, each with its own price, quality and speed priors and live
statistics) after the catalog's twelve. Each figure is the median over
batches of the per-call time, a batch being 100 back-to-back calls, so timer overhead stays out. Wall
time is reported beside the process's CPU time: on a shared machine the scheduler, not the router,
dominates wall time, and the verdict uses the lower of the two medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

from gateway.core.types import ChatRequest
from gateway.policy import Policy, parse_policy
from gateway.router import ModelStats, StatsSnapshot, plan

CANDIDATES = [
    "openai/gpt-4o", "openai/gpt-4o-mini", "openai/gpt-4.1", "openai/gpt-4.1-mini", "openai/gpt-4.1-nano",
    "openai/o3-mini", "openai/gpt-5-mini", "anthropic/claude-haiku-4-5", "anthropic/claude-sonnet-4-5",
    "gemini/gemini-2.5-flash", "gemini/gemini-2.5-pro", "groq/llama-3.3-70b-versatile",
]  # fmt: skip
BATCH = 100


BUDGETS_US = {10: 50.0, 100: 300.0}  # issue 15, item 9: a plan's median per candidate count


def _names(count: int) -> list[str]:
    return [*CANDIDATES[:count], *(f"bench-{i}" for i in range(max(0, count - len(CANDIDATES))))]


def _policy(count: int, extra: str = "") -> Policy:
    synthetic = _names(count)[len(CANDIDATES) :]
    models = "".join(
        f"  {name}: {{provider: openai, model: m{i}, price: {{input: {0.1 + i / 10:g}, output: {0.4 + i / 5:g}}}, "
        f"quality: {0.5 + (i % 40) / 100:g}, ttft_s: {0.2 + (i % 7) / 10:g}, tokens_per_s: {50 + i}}}\n"
        for i, name in enumerate(synthetic)
    )
    text = f"version: 1\nmodels:\n{models}" if models else "version: 1\n"
    text += f"routes:\n  r:\n    candidates: [{', '.join(_names(count))}]\n{extra}"
    return parse_policy(text, filename="bench.yaml", env={})


def _budget(count: int) -> float:
    """The budget for ``count`` candidates: the next listed count's (above 100: scaled linearly)."""
    for listed, budget in sorted(BUDGETS_US.items()):
        if count <= listed:
            return budget
    return BUDGETS_US[100] * count / 100


def _timings_us(call: Callable[[], object], batches: int) -> tuple[list[float], list[float]]:
    """Per-call wall-clock and CPU times (µs) of each batch, sorted."""
    for _ in range(BATCH * 10):
        call()
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(batches):
        start, start_cpu = time.perf_counter_ns(), time.process_time_ns()
        for _ in range(BATCH):
            call()
        wall.append((time.perf_counter_ns() - start) / BATCH / 1000)
        cpu.append((time.process_time_ns() - start_cpu) / BATCH / 1000)
    return sorted(wall), sorted(cpu)


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
            for i, name in enumerate(_names(max(args.candidates, len(CANDIDATES))))
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
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"plan() over {args.candidates} candidates, Python {sys.version.split()[0]}, load average {load:.1f}"
    )
    print("wall: median and p10 of wall-clock time; cpu: median of this process's CPU time (robust to load)")
    print(f"{'case':<30} {'wall med':>9} {'wall p10':>9} {'cpu med':>9} {'ranked':>7}")
    worst = 0.0
    for label, (policy, req, stats) in cases.items():

        def call(policy: Policy = policy, req: ChatRequest = req, stats: StatsSnapshot = stats) -> object:
            return plan(req, "r", policy, stats, prompt_tokens=1200)

        wall, cpu = _timings_us(call, args.batches)
        median, cpu_median = statistics.median(wall), statistics.median(cpu)
        worst = max(worst, min(median, cpu_median))
        ranked = len(plan(req, "r", policy, stats, prompt_tokens=1200).candidates)  # the rest were excluded
        print(
            f"{label:<30} {median:>7.1f}µs {wall[len(wall) // 10]:>7.1f}µs {cpu_median:>7.1f}µs {ranked:>7}"
        )
    budget = _budget(args.candidates)
    verdict = "within" if worst < budget else "OVER"
    print(f"worst median {worst:.1f} µs: {verdict} the {budget:g} µs budget for {args.candidates} candidates")
    return 0 if worst < budget else 1


if __name__ == "__main__":
    sys.exit(main())
