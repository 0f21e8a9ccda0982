"""The resilience layer: its happy-path cost, and the long fault battery.

    python -m bench.resilience overhead [--requests 2000]
    python -m bench.resilience soak [--requests 2000] [--real-delays]
    python -m bench.resilience leak [--requests 20000]

``overhead``: the same executor over one loopback upstream (``bench.upstream``, its own process),
sequential non-streaming and streaming requests and 64-in-flight async throughput, with the
resilience layer disabled (one candidate, no breaker, no route timeouts) and enabled (a breaker
over the in-memory state backend, connect/read/first-token/idle/total timeouts, a fallback
candidate and a 4-token stream buffer), and for async also with a hedge that never fires (the
opt-in hedge costs a task and a timer per request). Runs are interleaved (A B A B)
so drift hits both alike; the figure is the ratio enabled / disabled (target <= 1.05). Then the
cost of stream buffering in time to first token: the median time until the caller receives the
first content chunk with ``buffer_tokens`` 0, 2, 4 and 8, from the loopback upstream and from one
that paces its chunks 20 ms apart (50 tokens a second, a large model's pace).

``soak``: ``tests/resilience/soak.py`` at 2,000 requests, 64 in flight, 30 % faults; with
``--real-delays`` the openai SDK's backoff (0.5 s, 1 s, …) and 2 s timeouts instead of
milliseconds. ``leak``: 20,000 requests, with RSS and tracemalloc before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from gateway.core.attempts import Candidate, Plan, StreamInfo
from gateway.core.execute import Executor
from gateway.core.execute_async import AsyncExecutor
from gateway.core.types import ChatRequest
from gateway.resilience.breaker import Breakers
from gateway.resilience.deadline import Timeouts
from gateway.resilience.hedge import HedgeSettings
from gateway.resilience.retry import RetrySettings
from gateway.state.memory import MemoryBackend
from providers.base import Target

ROOT = Path(__file__).resolve().parents[1]
LEAK_BOUND_BYTES = 32_000_000  # traced memory still held once the run's objects are released


class _Null:
    def attempt_finished(self, record: object) -> None:
        return None


def start_upstream() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.upstream", "0"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    line = proc.stdout.readline() if proc.stdout else ""
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def plans(url: str) -> dict[str, tuple[Plan, Breakers | None]]:
    def cand(name: str) -> Candidate:
        return Candidate(
            Target(provider=name, kind="openai", base_url=url, model="gpt-4o-mini", api_key="k"), name
        )

    off = Plan([cand("a")], buffer_tokens=0)  # resilience off: no stream buffer either
    settings: dict[str, Any] = {
        "timeouts": Timeouts(connect_s=5, read_s=30, first_token_s=10, stream_idle_s=10, total_s=60),
        "buffer_tokens": 4,
    }
    on = Plan([cand("a"), cand("b")], **settings)
    hedged = Plan([cand("a"), cand("b")], hedge=HedgeSettings(after_s=30.0), **settings)
    return {
        "off": (off, None),
        "on": (on, Breakers(MemoryBackend())),
        "on+hedge": (hedged, Breakers(MemoryBackend())),
    }


def _request(stream: bool) -> ChatRequest:
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "Say hello."}]}
    if stream:
        body["stream"] = True
    return ChatRequest.model_validate(body)


def sequential(url: str, n: int, rounds: int) -> dict[str, dict[str, float]]:
    """Median wall and client-CPU µs per request, non-streaming and streaming, interleaved off/on."""
    keys = ("json", "json_cpu", "stream", "stream_cpu")
    out: dict[str, dict[str, list[float]]] = {name: {k: [] for k in keys} for name in ("off", "on")}
    configs = {name: value for name, value in plans(url).items() if name in out}
    with httpx.Client() as http:
        executors = {
            name: (Executor(http, observer=_Null(), retry=RetrySettings(), breakers=b), plan)
            for name, (plan, b) in configs.items()
        }
        for i in range(rounds):
            for name, (ex, plan) in _alternate(executors, i):
                wall, cpu = _time_each(
                    n, lambda ex=ex, plan=plan: ex.complete(_request(False), plan, headers={}, timeout=30.0)
                )
                out[name]["json"].append(wall)
                out[name]["json_cpu"].append(cpu)
                wall, cpu = _time_each(
                    n,
                    lambda ex=ex, plan=plan: list(
                        ex.stream(_request(True), plan, headers={}, timeout=30.0, holder=StreamInfo())
                    ),
                )
                out[name]["stream"].append(wall)
                out[name]["stream_cpu"].append(cpu)
    return {name: {kind: statistics.median(v) for kind, v in kinds.items()} for name, kinds in out.items()}


def _alternate(items: dict[str, Any], i: int) -> list[tuple[str, Any]]:
    """A B in even rounds, B A in odd ones, so neither always runs on a warmer cache."""
    pairs = list(items.items())
    return pairs if i % 2 == 0 else pairs[::-1]


def _time_each(n: int, call: Callable[[], Any]) -> tuple[float, float]:
    """(wall, CPU) microseconds per call."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        call()
    return (time.perf_counter() - t0) / n * 1e6, (time.process_time() - c0) / n * 1e6


async def concurrent(url: str, total: int, in_flight: int, rounds: int) -> dict[str, float]:
    """Requests per second with ``in_flight`` concurrent async requests, interleaved off/on."""
    rates: dict[str, list[float]] = {"off": [], "on": [], "on+hedge": []}
    # httpx's own transport: the gateway's hand-written asyncio transport is gone (it now sends
    # through the SDK's client), and the executors take any httpx.AsyncClient.
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=in_flight)) as http:
        executors = {
            name: (AsyncExecutor(http, observer=_Null(), retry=RetrySettings(), breakers=b), plan)
            for name, (plan, b) in plans(url).items()
        }
        for i in range(rounds):
            for name, (ex, plan) in _alternate(executors, i):
                gate = asyncio.Semaphore(in_flight)

                async def one(
                    ex: AsyncExecutor = ex, plan: Plan = plan, gate: asyncio.Semaphore = gate
                ) -> None:
                    async with gate:
                        await ex.complete(_request(False), plan, headers={}, timeout=30.0)

                t0 = time.perf_counter()
                await asyncio.gather(*(one() for _ in range(total)))
                rates[name].append(total / (time.perf_counter() - t0))
    return {name: statistics.median(v) for name, v in rates.items()}


TTFT_BUFFERS = (0, 2, 4, 8)
PACED_MS = 20


def time_to_first_token(url: str, n: int) -> dict[str, dict[int, float]]:
    """Median ms until the caller gets the first content chunk, per ``buffer_tokens``, interleaved."""
    from tests.servers.faults import FastServer, FaultHandler

    def first_chunk_ms(ex: Executor, plan: Plan) -> float:
        t0 = time.perf_counter()
        stream = ex.stream(_request(True), plan, headers={}, timeout=30.0, holder=StreamInfo())
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                elapsed = (time.perf_counter() - t0) * 1000
                for _ in stream:  # read to the end, as a caller does
                    pass
                return elapsed
        raise RuntimeError("the stream had no content")

    def plan_for(base_url: str, model: str, buffer: int) -> Plan:
        target = Target(provider="a", kind="openai", base_url=base_url, model=model, api_key="k")
        return Plan([Candidate(target, "a")], buffer_tokens=buffer)

    out: dict[str, dict[int, list[float]]] = {"loopback": {}, f"paced {PACED_MS} ms": {}}
    with FastServer(FaultHandler()) as paced, httpx.Client() as http:
        ex = Executor(http, observer=_Null(), retry=RetrySettings())
        upstreams = {
            "loopback": (url, "m"),
            f"paced {PACED_MS} ms": (paced.base_url + "/v1", f"fault:trickle-{PACED_MS}"),
        }
        for i in range(n):
            for kind, (base_url, model) in upstreams.items():
                buffers = TTFT_BUFFERS if i % 2 == 0 else TTFT_BUFFERS[::-1]
                for buffer in buffers:
                    ms = first_chunk_ms(ex, plan_for(base_url, model, buffer))
                    out[kind].setdefault(buffer, []).append(ms)
    return {kind: {b: statistics.median(v) for b, v in sorted(by.items())} for kind, by in out.items()}


def overhead(requests: int) -> None:
    proc, url = start_upstream()
    try:
        seq = sequential(url, 50, rounds=max(10, requests // 50))
        rps = asyncio.run(concurrent(url, requests, 64, rounds=6))
        ttft = time_to_first_token(url, 40)
    finally:
        proc.terminate()
        proc.wait()
    print("resilience overhead (enabled / disabled; target <= 1.05)")
    for kind in ("json", "json_cpu", "stream", "stream_cpu"):
        off, on = seq["off"][kind], seq["on"][kind]
        what = "client CPU" if kind.endswith("cpu") else "latency"
        print(
            f"  sequential {kind.split('_')[0]:6s} {what:10s}: off {off:8.1f} us  on {on:8.1f} us  ratio {on / off:.3f}"
        )
    for name in ("on", "on+hedge"):
        print(
            f"  async 64 in flight {name:8s}: off {rps['off']:8.0f} rps  {name} {rps[name]:8.0f} rps"
            f"  ratio {rps['off'] / rps[name]:.3f}"
        )
    print("time to first token by buffer_tokens (median ms)")
    for kind, by_buffer in ttft.items():
        figures = "  ".join(f"{buffer}: {ms:6.2f}" for buffer, ms in by_buffer.items())
        print(f"  {kind:12s} {figures}")


def soak(requests: int, real_delays: bool, trace: bool) -> None:
    from tests.resilience.soak import run_soak

    # Timeouts well above the latency 64 requests in flight reach on a loaded 2-core machine, so
    # that only injected faults time out (a healthy answer abandoned by the client would be served
    # but not metered); the primary retries once, so hangs do not dominate the run.
    kwargs: dict[str, Any] = {"timeout_s": 6.0, "primary_retries": 1}
    if real_delays:
        kwargs.update(retry=RetrySettings(), retry_after_ms=500)
    rss_before = _rss_mib()
    report = run_soak(requests, trace_memory=trace, **kwargs)
    rss_after = _rss_mib()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"soak: {requests} requests in {report.elapsed_s:.1f}s ({requests / report.elapsed_s:.0f} rps)")
    print(f"  failures: {len(report.failures)}  duplicates: {report.duplicates}")
    print(f"  attempts {report.attempts} / logged by the servers {report.logged}")
    print(f"  ok attempts {report.metered_ok} / served {report.served_ok}")
    print(f"  tokens metered {report.metered_tokens} / served {report.served_tokens}")
    print(f"  fds {report.fds}  sockets {report.sockets}  tasks {report.tasks}")
    print(f"  RSS {rss_before:.0f} -> {rss_after:.0f} MiB (peak {peak:.0f} MiB)")
    if trace:
        print(f"  tracemalloc current {report.memory[0] / 1e6:.1f} -> {report.memory[1] / 1e6:.1f} MB")
    for line in report.failures[:10]:
        print("  FAILED", line)
    ok = (
        not report.failures
        and report.duplicates == 0
        and report.attempts == report.logged
        and report.metered_tokens == report.served_tokens
        and report.fds[0] == report.fds[1]
        and report.tasks[0] == report.tasks[1]
        and (not trace or report.memory[1] - report.memory[0] < LEAK_BOUND_BYTES)
    )
    print("  PASS" if ok else "  FAIL")
    if not ok:
        raise SystemExit(1)


def _rss_mib() -> float:
    """The process's resident memory now (not its peak)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["overhead", "soak", "leak"])
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--real-delays", action="store_true")
    args = parser.parse_args()
    if args.what == "overhead":
        overhead(args.requests or 2000)
    elif args.what == "soak":
        soak(args.requests or 2000, args.real_delays, trace=False)
    else:
        soak(args.requests or 20_000, args.real_delays, trace=True)


if __name__ == "__main__":
    main()
