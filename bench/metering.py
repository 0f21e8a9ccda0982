"""Added cost of metering on the request path, per sink backend, as a ratio to metering off.

Each configuration sends the same chat completions through ``gateway.OpenAI`` to the loopback OpenAI
upstream of the benchmarks (``bench/upstream.py``, its own process, so its CPU does not count; the
test servers' threaded loopback adds ~40 ms of delayed-ACK latency per request, which would hide
any overhead) in one thread; rounds of every configuration are interleaved so drift
hits them alike, and the median round is reported. "Metering on" means a ``Meter`` (pricing, token
attribution, the bounded queue) with a ``StateSink`` on the backend named, written by the
background thread as in production. A redis-server is started on a free port for the Redis row.

Usage:
    python bench/metering.py [--requests 400] [--rounds 7] [--stream]
"""

from __future__ import annotations

import argparse
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import gateway  # noqa: E402
from bench.overhead import start_upstream  # noqa: E402
from gateway.metering import Meter, StateSink  # noqa: E402
from gateway.state.memory import MemoryBackend  # noqa: E402
from gateway.state.redis import RedisBackend  # noqa: E402
from gateway.state.sqlite import SQLiteBackend  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            RedisBackend(url, key_prefix="bench:").close()
            return process, url
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)


class Timed:
    """Wraps an observer and sums the time spent inside it: the exact cost added on the request path."""

    def __init__(self, inner: Meter) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0

    def attempt_finished(self, record: Any) -> None:
        start = time.perf_counter()
        self.inner.attempt_finished(record)
        self.seconds += time.perf_counter() - start
        self.calls += 1


def run_round(
    client: gateway.OpenAI, requests: int, stream: bool, meter: Meter | None = None
) -> tuple[float, float]:
    """Wall time of the requests, and the process's CPU time including the meter's flush after them."""
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    cpu, start = time.process_time(), time.perf_counter()
    for _ in range(requests):
        if stream:
            list(client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True))
        else:
            client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    wall = time.perf_counter() - start
    if meter is not None:
        meter.flush(30)  # the writer thread's work for this round counts in this round's CPU
    return wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--stream", action="store_true", help="stream without usage (counted by tiktoken)")
    args = parser.parse_args()

    redis_process, redis_url = start_redis()
    tmp = tempfile.mkdtemp(prefix="switchyard-bench-")
    makers: dict[str, Callable[[], Any]] = {
        "memory": MemoryBackend,
        "sqlite": lambda: SQLiteBackend(str(Path(tmp) / "state.sqlite")),
        "redis": lambda: RedisBackend(redis_url, key_prefix="bench:"),
    }
    upstream, url = start_upstream()
    try:
        meters = {
            "off": None,
            **{name: Meter(StateSink(make(), owns_backend=True)) for name, make in makers.items()},
        }
        timed = {name: Timed(m) for name, m in meters.items() if m is not None}
        clients = {
            name: gateway.OpenAI(api_key="sk-bench", base_url=url, observer=timed.get(name))
            for name in meters
        }
        for name, client in clients.items():  # warm up connections, tiktoken and the catalog
            run_round(client, 20, args.stream, meters[name])
        for t in timed.values():
            t.seconds, t.calls = 0.0, 0
        times: dict[str, list[float]] = {name: [] for name in clients}
        ratios: dict[str, list[float]] = {name: [] for name in clients}
        cpu: dict[str, list[float]] = {name: [] for name in clients}
        order = list(clients)
        for _ in range(args.rounds):
            random.shuffle(order)  # no configuration always runs right after another
            took = {
                name: run_round(clients[name], args.requests, args.stream, meters[name]) for name in order
            }
            for name in clients:
                times[name].append(took[name][0])
                ratios[name].append(took[name][0] / took["off"][0])
                cpu[name].append(took[name][1])
        for meter in meters.values():
            if meter is not None:
                meter.flush(30)
        stats = {name: m.stats() for name, m in meters.items() if m is not None}
        for meter in meters.values():
            if meter is not None:
                meter.close()
        for client in clients.values():
            client.close()
    finally:
        upstream.kill()
        upstream.wait()
    redis_process.kill()
    redis_process.wait()

    base = statistics.median(times["off"]) / args.requests
    cpu_base = statistics.median(cpu["off"]) / args.requests
    kind = "stream, no usage (tiktoken count)" if args.stream else "non-streaming, reported usage"
    print(f"metering overhead: {args.requests} requests x {args.rounds} rounds, {kind}, median round")
    print("ratio: end to end, median over rounds of (round time / same round's time with metering off)")
    print("in-path: time inside the observer per request, and (base + in-path) / base")
    print("cpu: the client process's CPU per request (request thread + writer thread), ratio to off")
    header = f"{'backend':<8} {'us/request':>11} {'ratio':>7} {'in-path us':>11} {'in-path ratio':>14}"
    print(header + f" {'cpu us':>8} {'cpu ratio':>10} {'written':>8} {'dropped':>8}")
    for name in clients:
        per = statistics.median(times[name]) / args.requests
        ratio = statistics.median(ratios[name])
        written = dropped = in_path = in_ratio = "-"
        if name in stats:
            sink = stats[name].queue
            written, dropped = str(sink.written), str(sink.dropped)
            cost = timed[name].seconds / max(timed[name].calls, 1)
            in_path, in_ratio = f"{cost * 1e6:.1f}", f"{(base + cost) / base:.4f}x"
        cpu_per = statistics.median(cpu[name]) / args.requests
        row = f"{name:<8} {per * 1e6:>11.1f} {ratio:>6.3f}x {in_path:>11} {in_ratio:>14}"
        print(row + f" {cpu_per * 1e6:>8.1f} {cpu_per / cpu_base:>9.3f}x {written:>8} {dropped:>8}")


if __name__ == "__main__":
    main()
