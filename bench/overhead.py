"""Gateway overhead beside the peers, against one loopback upstream, in one run.

    python -m bench.overhead [--requests 400] [--concurrent 64] [--quick]

Clients are interleaved (A B A B …) so machine drift hits all alike. Reports per client: sequential
latency p50/p99 and client CPU per request (non-streaming and streaming: time to first content
chunk and total), requests per second with 64 in flight (async), import time in a fresh process,
and each figure's ratio to the raw openai SDK. The upstream runs in its own process; its own round
trip (a raw keep-alive socket client) is measured as the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MESSAGES = [{"role": "user", "content": "Say hello."}]
ROOT = Path(__file__).resolve().parents[1]


def start_upstream() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.upstream", "0"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    line = proc.stdout.readline() if proc.stdout else ""
    port = int(line.split()[1])
    return proc, f"http://127.0.0.1:{port}/v1"


def floor_us(url: str, n: int = 2000) -> float:
    """The upstream's own round trip: a raw keep-alive socket, no HTTP library."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    body = b'{"model":"gpt-4o-mini","messages":[]}'
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    sock = socket.create_connection((host, int(port)))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += sock.recv(65536)
        times.append(time.perf_counter() - t0)
    sock.close()
    return statistics.median(times) * 1e6


def route_policy(url: str) -> str:
    text = f"""
version: 1
providers:
  primary: {{kind: openai, base_url: "{url}", api_key: "${{BENCH_KEY}}"}}
  secondary: {{kind: openai, base_url: "{url}", api_key: "${{BENCH_KEY}}"}}
models:
  bench-a: {{provider: primary, model: gpt-4o-mini, price: {{input: 0.15, output: 0.6}}, context_window: 128000}}
  bench-b: {{provider: secondary, model: gpt-4o-mini, price: {{input: 0.3, output: 1.2}}, context_window: 128000}}
routes:
  chat: {{candidates: [bench-a, bench-b], weights: {{quality: 1, speed: 1, cost: 1}}}}
"""
    path = Path(tempfile.mkdtemp()) / "bench-policy.yaml"
    path.write_text(text)
    os.environ["BENCH_KEY"] = "sk-bench"
    return str(path)


def sync_clients(url: str) -> dict[str, tuple[Callable[..., Any], str]]:
    import openai

    import gateway

    clients: dict[str, tuple[Callable[..., Any], str]] = {
        "openai-sdk": (
            openai.OpenAI(base_url=url, api_key="k", max_retries=0).chat.completions.create,
            "gpt-4o-mini",
        ),
        "switchyard": (
            gateway.OpenAI(base_url=url, api_key="k", max_retries=0).chat.completions.create,
            "openai/gpt-4o-mini",
        ),
    }
    try:
        routed = gateway.OpenAI(policy=route_policy(url), observer=_meter())
        routed.chat.completions.create(model="route:chat", messages=MESSAGES)
        clients["switchyard-route"] = (routed.chat.completions.create, "route:chat")
    except Exception as exc:  # noqa: BLE001 - the route variant is optional while policies land
        print(f"# switchyard-route skipped: {exc}", file=sys.stderr)
    if importlib.util.find_spec("litellm"):
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network fetch at import
        import litellm

        def lite(**kw: Any) -> Any:
            return litellm.completion(api_base=url, api_key="k", **kw)

        deployment = {"model": "openai/gpt-4o-mini", "api_base": url, "api_key": "k"}
        router = litellm.Router(
            model_list=[{"model_name": "chat", "litellm_params": dict(deployment)} for _ in range(2)]
        )
        clients["litellm"] = (lite, "openai/gpt-4o-mini")
        clients["litellm-router"] = (router.completion, "chat")
    return clients


def _meter() -> Any:
    try:
        from gateway.metering import MemorySink, Meter

        return Meter(sink=MemorySink())
    except Exception:  # noqa: BLE001 - metering is optional in this benchmark until it lands
        return None


def sequential(
    clients: dict[str, tuple[Callable[..., Any], str]], n: int, stream: bool
) -> dict[str, dict[str, float]]:
    lat: dict[str, list[float]] = {k: [] for k in clients}
    ttfc: dict[str, list[float]] = {k: [] for k in clients}
    cpu: dict[str, float] = dict.fromkeys(clients, 0.0)
    for i in range(n + 20):
        for name, (create, model) in clients.items():
            c0, t0 = time.process_time(), time.perf_counter()
            if stream:
                first = None
                for chunk in create(model=model, messages=MESSAGES, stream=True):
                    if first is None and chunk.choices and chunk.choices[0].delta.content:
                        first = time.perf_counter() - t0
            else:
                create(model=model, messages=MESSAGES)
                first = None
            elapsed = time.perf_counter() - t0
            if i >= 20:  # warm-up rounds are not counted
                lat[name].append(elapsed)
                cpu[name] += time.process_time() - c0
                if first is not None:
                    ttfc[name].append(first)
    out = {}
    for name in clients:
        xs = sorted(lat[name])
        row = {
            "p50_us": xs[len(xs) // 2] * 1e6,
            "p99_us": xs[int(len(xs) * 0.99) - 1] * 1e6,
            "cpu_us": cpu[name] / n * 1e6,
        }
        if ttfc[name]:
            row["ttfc_p50_us"] = statistics.median(ttfc[name]) * 1e6
        out[name] = row
    return out


async def concurrent(url: str, total: int, in_flight: int, rounds: int) -> dict[str, float]:
    import openai

    import gateway

    makers: dict[str, tuple[Any, str]] = {
        "openai-sdk": (openai.AsyncOpenAI(base_url=url, api_key="k", max_retries=0), "gpt-4o-mini"),
        "switchyard": (gateway.AsyncOpenAI(base_url=url, api_key="k", max_retries=0), "openai/gpt-4o-mini"),
    }
    if importlib.util.find_spec("litellm"):
        import litellm

        class _Lite:  # litellm.acompletion behind the clients' shape
            class chat:  # noqa: N801 - mirrors client.chat.completions
                class completions:  # noqa: N801
                    @staticmethod
                    async def create(**kw: Any) -> Any:
                        return await litellm.acompletion(api_base=url, api_key="k", **kw)

        makers["litellm"] = (_Lite(), "openai/gpt-4o-mini")
    rps: dict[str, list[float]] = {k: [] for k in makers}
    for _ in range(rounds):
        for name, (client, model) in makers.items():
            sem = asyncio.Semaphore(in_flight)

            async def one(client: Any = client, model: str = model, sem: asyncio.Semaphore = sem) -> None:
                async with sem:
                    await client.chat.completions.create(model=model, messages=MESSAGES)

            t0 = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(total)))
            rps[name].append(total / (time.perf_counter() - t0))
    return {k: statistics.median(v) for k, v in rps.items()}


def import_time(module: str, repeat: int = 5) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    runs = [
        float(subprocess.check_output([sys.executable, "-c", code], cwd=ROOT, text=True))
        for _ in range(repeat)
    ]
    return statistics.median(runs) * 1e3


def table(title: str, rows: dict[str, dict[str, float]], base: str = "openai-sdk") -> None:
    print(f"\n{title}")
    keys = list(next(iter(rows.values())).keys())
    print("client".ljust(18) + "".join(k.rjust(14) for k in keys) + "   ratio(p50/cpu)")
    for name, row in rows.items():
        ratios = ""
        if base in rows:
            ratios = "   " + " / ".join(
                f"{row[k] / rows[base][k]:.2f}x"
                for k in ("p50_us", "cpu_us")
                if k in row and rows[base].get(k)
            )
        print(name.ljust(18) + "".join(f"{row[k]:14.1f}" for k in keys) + ratios)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrent", type=int, default=64)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 100 if args.quick else args.requests
    proc, url = start_upstream()
    try:
        print(
            f"# machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; upstream floor {floor_us(url):.1f} us"
        )
        clients = sync_clients(url)
        table("sequential, non-streaming (us)", sequential(clients, n, stream=False))
        table("sequential, streaming 20 chunks (us)", sequential(clients, n // 2, stream=True))
        rps = asyncio.run(
            concurrent(url, total=n * 4, in_flight=args.concurrent, rounds=2 if args.quick else 3)
        )
        print(f"\nasync, {args.concurrent} in flight (requests/s)")
        for name, value in rps.items():
            print(f"{name.ljust(18)}{value:10.0f}   {value / rps['openai-sdk']:.2f}x")
        print("\nimport time in a fresh process (ms)")
        for module in ("openai", "gateway", "litellm"):
            if importlib.util.find_spec(module):
                print(f"{module.ljust(18)}{import_time(module, 3 if args.quick else 5):10.1f}")
    finally:
        proc.terminate()


if __name__ == "__main__":
    main()
