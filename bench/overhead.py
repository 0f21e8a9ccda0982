"""Gateway overhead above the loopback floor, beside the raw openai SDK and LiteLLM, in one run.

    python -m bench.overhead [--requests 300] [--bursts 3] [--in-flight 64] [--quick]
                             [--litellm-python /work/benchvenv-litellm/bin/python]

Every client runs in its own worker process (``--worker NAME``), driven one request at a time over
a pipe, so that clients interleave A B A B … and machine drift hits all alike, while no client
shares a heap, an import or a garbage collector with another. A worker times its own request
(``perf_counter`` and ``process_time`` around the call); the pipe is outside the timed region.

Clients: ``floor`` (a raw keep-alive socket, no HTTP library: the upstream's own round trip),
``openai-sdk`` (``openai.OpenAI``), ``switchyard`` (``gateway.OpenAI`` with a bare model: the
client's own endpoint), ``switchyard-route`` (``model="route:chat"`` from a two-candidate policy,
so routing and metering run), and, when ``--litellm-python`` names an interpreter with LiteLLM
installed (LiteLLM is not a dependency), ``litellm`` (``completion``/``acompletion``/``responses``)
and ``litellm-router`` (a ``Router`` with two deployments).

Scenarios: chat completions (sync sequential, async sequential, streaming: time to first content
chunk and total, and requests/s with N in flight async) and the Responses API (sync, non-stream
and stream). Overhead is a client's median minus the floor's median for the same scenario; the
ratio is that overhead over the openai SDK's. Then import time in a fresh process and the check
that ``import gateway`` loads none of torch, transformers, matplotlib, rich.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = [{"role": "user", "content": "Say hello."}]
INPUT = "Say hello."
MODEL = "gpt-4o-mini"
HEAVY = ("torch", "transformers", "matplotlib", "rich")
LITELLM_CLIENTS = ("litellm", "litellm-router")
SCENARIOS = {  # name -> title
    "chat": "chat.completions, sync sequential",
    "achat": "chat.completions, async sequential",
    "chat_stream": "chat.completions, sync stream (20 content chunks)",
    "resp": "responses, sync",
    "resp_stream": "responses, sync stream (20 text deltas)",
}


# --- the workers ---------------------------------------------------------------------------------


class Floor:
    """The upstream's own round trip: raw keep-alive sockets, canned requests, no HTTP library."""

    def __init__(self, url: str) -> None:
        host, port = url.split("//")[1].split("/")[0].split(":")
        self.address = (host, int(port))
        self.sock = socket.create_connection(self.address)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _request(self, path: str, stream: bool) -> bytes:
        body = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": stream}).encode()
        head = f"POST /v1/{path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        return (head + f"content-length: {len(body)}\r\n\r\n").encode() + body

    def _exchange(self, path: str, stream: bool, marker: bytes) -> tuple[float, float]:
        t0 = time.perf_counter()
        self.sock.sendall(self._request(path, stream))
        data, first = b"", 0.0
        while b"\r\n\r\n" not in data:
            data += self.sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        if b"content-length: " in head.lower():
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(rest) < length:
                rest += self.sock.recv(65536)
            return 0.0, time.perf_counter() - t0
        while not rest.endswith(b"0\r\n\r\n"):
            if not first and marker in rest:
                first = time.perf_counter() - t0
            rest += self.sock.recv(65536)
        total = time.perf_counter() - t0
        return first or total, total

    def chat(self) -> tuple[float, float]:
        return self._exchange("chat/completions", False, b"")

    achat = chat

    def chat_stream(self) -> tuple[float, float]:
        return self._exchange("chat/completions", True, b'"content": " w0"')

    def resp(self) -> tuple[float, float]:
        return self._exchange("responses", False, b"")

    def resp_stream(self) -> tuple[float, float]:
        return self._exchange("responses", True, b"output_text.delta")

    def burst(self, total: int, in_flight: int) -> float:
        return float("nan")


def _first_chat_content(chunks: Any, t0: float) -> float:
    first = 0.0
    for chunk in chunks:
        if not first and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - t0
    return first


def _first_text_delta(events: Any, t0: float) -> float:
    first = 0.0
    for event in events:
        if not first and getattr(event, "type", None) == "response.output_text.delta":
            first = time.perf_counter() - t0
    return first


class SDKClient:
    """``openai.OpenAI`` or ``gateway.OpenAI`` (and their async twins): the same calls on both."""

    def __init__(self, sync: Any, asynchronous: Any, model: str) -> None:
        self.sync, self.asynchronous, self.model = sync, asynchronous, model
        self.loop = asyncio.new_event_loop()

    def chat(self) -> tuple[float, float]:
        t0 = time.perf_counter()
        self.sync.chat.completions.create(model=self.model, messages=MESSAGES)
        return 0.0, time.perf_counter() - t0

    def achat(self) -> tuple[float, float]:
        async def one() -> float:
            t0 = time.perf_counter()
            await self.asynchronous.chat.completions.create(model=self.model, messages=MESSAGES)
            return time.perf_counter() - t0

        return 0.0, self.loop.run_until_complete(one())

    def chat_stream(self) -> tuple[float, float]:
        t0 = time.perf_counter()
        stream = self.sync.chat.completions.create(model=self.model, messages=MESSAGES, stream=True)
        first = _first_chat_content(stream, t0)
        return first, time.perf_counter() - t0

    def resp(self) -> tuple[float, float]:
        t0 = time.perf_counter()
        self.sync.responses.create(model=self.model, input=INPUT)
        return 0.0, time.perf_counter() - t0

    def resp_stream(self) -> tuple[float, float]:
        t0 = time.perf_counter()
        stream = self.sync.responses.create(model=self.model, input=INPUT, stream=True)
        first = _first_text_delta(stream, t0)
        return first, time.perf_counter() - t0

    def burst(self, total: int, in_flight: int) -> float:
        create = self.asynchronous.chat.completions.create
        return self.loop.run_until_complete(_burst(create, self.model, total, in_flight))


async def _burst(create: Callable[..., Any], model: str, total: int, in_flight: int) -> float:
    sem = asyncio.Semaphore(in_flight)

    async def one() -> None:
        async with sem:
            await create(model=model, messages=MESSAGES)

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(total)))
    return total / (time.perf_counter() - t0)


class LiteLLMClient:
    """``litellm.completion``/``acompletion``/``responses``, or a ``Router``'s (chat only)."""

    def __init__(self, url: str, router: bool) -> None:
        import warnings

        import litellm

        # LiteLLM's own Responses usage type warns on every call; the noise is not a result
        warnings.filterwarnings("ignore", message="Pydantic serializer warnings")
        litellm.telemetry = False
        self.litellm = litellm
        self.loop = asyncio.new_event_loop()
        self.kw: dict[str, Any] = {"api_base": url, "api_key": "k"}
        self.model = f"openai/{MODEL}"
        self.router = router
        if router:
            params = {"model": self.model, "api_base": url, "api_key": "k"}
            deployments = [{"model_name": "chat", "litellm_params": dict(params)} for _ in range(2)]
            self.target: Any = litellm.Router(model_list=deployments)
            self.kw, self.model = {}, "chat"
        else:
            self.target = litellm

    def chat(self) -> tuple[float, float]:
        t0 = time.perf_counter()
        self.target.completion(model=self.model, messages=MESSAGES, **self.kw)
        return 0.0, time.perf_counter() - t0

    def achat(self) -> tuple[float, float]:
        async def one() -> float:
            t0 = time.perf_counter()
            await self.target.acompletion(model=self.model, messages=MESSAGES, **self.kw)
            return time.perf_counter() - t0

        return 0.0, self.loop.run_until_complete(one())

    def chat_stream(self) -> tuple[float, float]:
        t0 = time.perf_counter()
        stream = self.target.completion(model=self.model, messages=MESSAGES, stream=True, **self.kw)
        first = _first_chat_content(stream, t0)
        return first, time.perf_counter() - t0

    def resp(self) -> tuple[float, float] | None:
        if self.router:
            return None
        t0 = time.perf_counter()
        self.litellm.responses(model=self.model, input=INPUT, **self.kw)
        return 0.0, time.perf_counter() - t0

    def resp_stream(self) -> tuple[float, float] | None:
        if self.router:
            return None
        t0 = time.perf_counter()
        stream = self.litellm.responses(model=self.model, input=INPUT, stream=True, **self.kw)
        first = _first_text_delta(stream, t0)
        return first, time.perf_counter() - t0

    def burst(self, total: int, in_flight: int) -> float | None:
        if self.router:
            return None
        create = self.target.acompletion
        return self.loop.run_until_complete(
            _burst(lambda **kw: create(**kw, **self.kw), self.model, total, in_flight)
        )


def make_client(name: str, url: str, policy: str) -> Any:
    if name == "floor":
        return Floor(url)
    if name in LITELLM_CLIENTS:
        return LiteLLMClient(url, router=name == "litellm-router")
    if name == "openai-sdk":
        import openai

        kw: dict[str, Any] = {"base_url": url, "api_key": "k", "max_retries": 0}
        return SDKClient(openai.OpenAI(**kw), openai.AsyncOpenAI(**kw), MODEL)
    import gateway

    kw = {"base_url": url, "api_key": "k", "max_retries": 0}
    if name == "switchyard":
        return SDKClient(gateway.OpenAI(**kw), gateway.AsyncOpenAI(**kw), MODEL)
    if name == "switchyard-route":
        kw["policy"] = policy
        return SDKClient(gateway.OpenAI(**kw), gateway.AsyncOpenAI(**kw), "route:chat")
    raise SystemExit(f"unknown client {name!r}")


def worker(name: str, url: str, policy: str) -> None:
    """Answer one JSON line per command line on stdin: ``op`` or ``burst TOTAL IN_FLIGHT``."""
    client = make_client(name, url, policy)
    out = sys.stdout
    print(json.dumps({"ready": name, "python": sys.version.split()[0], "versions": _versions()}), flush=True)
    for line in sys.stdin:
        op, *args = line.split()
        if op == "burst":
            rps = client.burst(int(args[0]), int(args[1]))
            out.write(json.dumps({"rps": rps}) + "\n")
        else:
            c0 = time.process_time()
            timed = getattr(client, op)()
            cpu = time.process_time() - c0
            answer = None if timed is None else {"first": timed[0], "total": timed[1], "cpu": cpu}
            out.write(json.dumps(answer) + "\n")
        out.flush()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in ("openai", "httpx", "httpx2", "litellm", "pydantic"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found


# --- the driver ----------------------------------------------------------------------------------


class Worker:
    def __init__(self, name: str, python: str, url: str, policy: str) -> None:
        env = {**os.environ, "BENCH_KEY": "sk-bench", "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [python, "-m", "bench.overhead", "--worker", name, "--url", url, "--policy", policy]
        self.name = name
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env
        )
        self.ready = self._read()

    def _read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} exited (status {self.proc.wait()})")
        return json.loads(line)

    def ask(self, command: str) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=10)


def route_policy(url: str) -> str:
    text = f"""
version: 1
providers:
  primary: {{kind: openai, base_url: "{url}", api_key: "${{BENCH_KEY}}"}}
  secondary: {{kind: openai, base_url: "{url}", api_key: "${{BENCH_KEY}}"}}
models:
  bench-a: {{provider: primary, model: {MODEL}, price: {{input: 0.15, output: 0.6}}, context_window: 128000}}
  bench-b: {{provider: secondary, model: {MODEL}, price: {{input: 0.3, output: 1.2}}, context_window: 128000}}
routes:
  chat: {{candidates: [bench-a, bench-b], weights: {{quality: 1, speed: 1, cost: 1}}}}
"""
    path = Path(tempfile.mkdtemp(prefix="bench-overhead-")) / "policy.yaml"
    path.write_text(text)
    return str(path)


def start_upstream() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.upstream", "0"], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    line = proc.stdout.readline() if proc.stdout else ""
    return proc, f"http://127.0.0.1:{int(line.split()[1])}/v1"


def _pct(xs: list[float], q: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def run_scenario(workers: list[Worker], op: str, n: int, warm: int) -> dict[str, dict[str, float]]:
    """``n`` counted rounds after ``warm`` uncounted ones; each round asks every worker once, in turn."""
    samples: dict[str, list[dict[str, float]]] = {w.name: [] for w in workers}
    skipped: set[str] = set()
    for i in range(warm + n):
        for w in workers:
            if w.name in skipped:
                continue
            answer = w.ask(op)
            if answer is None:
                skipped.add(w.name)
            elif i >= warm:
                samples[w.name].append(answer)
    rows = {}
    for name, got in samples.items():
        if not got:
            continue
        total = [s["total"] * 1e6 for s in got]
        row = {"p50": statistics.median(total), "p99": _pct(total, 0.99)}
        row["cpu"] = statistics.mean(s["cpu"] for s in got) * 1e6
        if op.endswith("stream"):
            row["first_p50"] = statistics.median(s["first"] * 1e6 for s in got)
        rows[name] = row
    return rows


def print_scenario(title: str, rows: dict[str, dict[str, float]]) -> None:
    floor, sdk = rows.get("floor"), rows.get("openai-sdk")
    stream = "first_p50" in next(iter(rows.values()))
    print(f"\n{title} (us; overhead = p50 - floor p50; ratio = overhead / openai-sdk overhead)")
    cols = ["p50", "p99", "cpu", "overhead", "ratio"]
    if stream:
        cols += ["first_p50", "first_over", "first_ratio"]
    print("client".ljust(18) + "".join(c.rjust(12) for c in cols))
    for name, row in rows.items():
        cells = [f"{row['p50']:.0f}", f"{row['p99']:.0f}", f"{row['cpu']:.0f}"]
        cells += _over(row, floor, sdk, "p50")
        if stream:
            cells += [f"{row['first_p50']:.0f}", *_over(row, floor, sdk, "first_p50")]
        print(name.ljust(18) + "".join(c.rjust(12) for c in cells))


def _over(row: dict[str, float], floor: Any, sdk: Any, key: str) -> list[str]:
    if floor is None or row is floor:
        return ["-", "-"]
    over = row[key] - floor[key]
    base = sdk[key] - floor[key] if sdk is not None else float("nan")
    return [f"{over:.0f}", f"{over / base:.2f}x" if base > 0 else "-"]


def run_bursts(workers: list[Worker], total: int, in_flight: int, rounds: int) -> dict[str, float]:
    rps: dict[str, list[float]] = {}
    for _ in range(rounds + 1):  # the first round warms the pools and is dropped
        for w in workers:
            if w.name == "floor":
                continue
            value = w.ask(f"burst {total} {in_flight}")["rps"]
            if value is not None:
                rps.setdefault(w.name, []).append(value)
    return {name: statistics.median(values[1:]) for name, values in rps.items()}


def import_times(python: str, statements: dict[str, str], repeat: int) -> dict[str, float]:
    """Median wall time of each statement in a fresh process, the statements interleaved."""
    times: dict[str, list[float]] = {k: [] for k in statements}
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}
    for _ in range(repeat):
        for label, statement in statements.items():
            code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
            out = subprocess.check_output([python, "-c", code], cwd=ROOT, text=True, env=env)
            times[label].append(float(out.split()[-1]) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def heavy_modules() -> list[str]:
    code = f"import sys, gateway; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    return subprocess.check_output([sys.executable, "-c", code], cwd=ROOT, text=True).split()


def litellm_python(given: str | None) -> str | None:
    if given is None:
        print("# LiteLLM skipped: pass --litellm-python PATH (an interpreter with litellm installed)")
        return None
    code = "import importlib.util, sys; sys.exit(importlib.util.find_spec('litellm') is None)"
    if not Path(given).exists() or subprocess.call([given, "-c", code]) != 0:
        print(f"# LiteLLM skipped: {given} is absent or has no litellm installed")
        return None
    return given


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="counted requests per client and scenario")
    parser.add_argument("--bursts", type=int, default=3, help="counted bursts per client")
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="short counts for `make bench`")
    parser.add_argument("--litellm-python", help="an interpreter with litellm installed (a separate venv)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--policy", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.url, args.policy)
        return
    n = 60 if args.quick else args.requests
    warm = 10 if args.quick else 30
    bursts = 1 if args.quick else args.bursts
    print("# " + " ".join([Path(sys.executable).name, "-m", "bench.overhead", *sys.argv[1:]]))
    lite = litellm_python(args.litellm_python)
    upstream, url = start_upstream()
    policy = route_policy(url)
    names = ["floor", "openai-sdk", "switchyard", "switchyard-route"]
    workers = [Worker(name, sys.executable, url, policy) for name in names]
    if lite is not None:
        workers += [Worker(name, lite, url, policy) for name in LITELLM_CLIENTS]
    try:
        load = os.getloadavg()
        print(
            f"# {os.cpu_count()} cores, load {load[0]:.1f}; {n} requests/client/scenario after {warm} warm-up"
        )
        for w in workers:
            print(f"# {w.name}: python {w.ready['python']}, {w.ready['versions']}")
        for op, title in SCENARIOS.items():
            print_scenario(title, run_scenario(workers, op, n if "stream" not in op else n // 2, warm))
        total = 128 if args.quick else 512
        rps = run_bursts(workers, total, args.in_flight, bursts)
        print(
            f"\nchat.completions, async, {args.in_flight} in flight ({total} per burst, median of {bursts})"
        )
        for name, value in rps.items():
            print(f"{name.ljust(18)}{value:10.0f} req/s   {value / rps['openai-sdk']:.2f}x openai-sdk")
    finally:
        for w in workers:
            w.close()
        upstream.terminate()
    report_imports(lite, 3 if args.quick else 9)


def report_imports(lite: str | None, repeat: int) -> None:
    times = import_times(
        sys.executable,
        {
            "from openai import OpenAI": "from openai import OpenAI",
            "from gateway import OpenAI": "from gateway import OpenAI",
        },
        repeat,
    )
    if lite is not None:
        times.update(
            import_times(lite, {"from litellm import completion": "from litellm import completion"}, repeat)
        )
    print(f"\nimport time in a fresh process (ms, median of {repeat}, interleaved)")
    for label, ms in times.items():
        print(f"{label.ljust(32)}{ms:8.0f}")
    extra = times["from gateway import OpenAI"] - times["from openai import OpenAI"]
    print(f"gateway - openai: {extra:+.0f} ms (target <= +60 ms)")
    heavy = heavy_modules()
    loaded = " ".join(heavy) if heavy else "none of " + ", ".join(HEAVY)
    print(f"import gateway loads {loaded}")


if __name__ == "__main__":
    main()
