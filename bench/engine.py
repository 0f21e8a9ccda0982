"""The local engine in each dtype / quantization beside transformers and llama.cpp, same GGUF,
same chat prompts (token ids), greedy, end-of-turn ignored, each engine in its own process.

Per engine: load time, decode tokens/s at batch 1 and TTFT (medians over the prompts), TTFT of a
100-token prompt, prefill tokens/s of a ~500-token prompt, peak RSS, and agreement with
transformers float32 (greedy tokens identical for N of M prompts, the largest logit difference at
the prompts' last token). Ours also: aggregate tokens/s with `--concurrency` requests at once.
With `--rounds R` every engine runs R times, interleaved (all engines, then all again), and each
figure is the median over the rounds; the load average at the end of each run is printed beside
(the machine may be shared).
llama.cpp runs when `llama_cpp` imports (a separate benchmark venv; see BENCHMARKS.md).

    python bench/engine.py [--tokens 128] [--threads 2] [--concurrency 16] [--rounds 3]
                           [--engines ours-float32,ours-bfloat16,ours-int8,ours-int4,llama.cpp]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

QUESTIONS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain what a hash map is in two sentences.",
    "Name three primary colors.",
    "How do I reverse a list in Python?",
    "What is 12 times 7?",
    "Tell me a fun fact about cats.",
    "Translate 'good morning' to Spanish.",
]
FILLER = "The history of the river town goes back many centuries, to a ford where traders met. "


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _prompts() -> dict[str, list[list[int]]]:
    if ROOT not in sys.path:  # run as `python bench/engine.py` from a venv without the project
        sys.path.insert(0, ROOT)
    from local_engine.loader.checkpoint import load_checkpoint
    from local_engine.loader.paths import default_model_path
    from local_engine.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_gguf_metadata(load_checkpoint(default_model_path()).tokenizer_metadata)

    def chat(text: str) -> list[int]:
        return tokenizer.encode_chat([{"role": "user", "content": text}])

    def sized(n: int, i: int) -> list[int]:  # distinct heads: no prefix cache between runs
        ids = chat(f"Variant {i}. " + FILLER * (n // 16) + "Summarize.")
        return ids[: n - 6] + ids[-6:] if len(ids) > n else ids

    return {
        "chat": [chat(q) for q in QUESTIONS],
        "ttft100": [sized(100, i) for i in range(3)],
        "prefill": [sized(500, 10 + i) for i in range(2)],
    }


def _child(name: str, args: argparse.Namespace, workdir: str) -> None:
    import torch

    from bench.engine_peers import make
    from local_engine import default_model_path

    torch.set_num_threads(args.threads)  # both our engine thread and the peers get the same
    with open(os.path.join(workdir, "prompts.json"), encoding="utf-8") as f:
        prompts = json.load(f)
    start = time.perf_counter()
    engine = make(name, default_model_path(), args.threads, args.concurrency)
    result: dict[str, object] = {"load_s": time.perf_counter() - start}
    runs = [engine.run_one(ids, args.tokens) for ids in prompts["chat"]]
    result["ttft_ms"] = statistics.median(r[0] for r in runs) * 1000
    result["decode"] = statistics.median(r[1] for r in runs)
    result["tokens"] = [r[2] for r in runs]
    result["ttft100_ms"] = statistics.median(engine.run_one(ids, 2)[0] for ids in prompts["ttft100"]) * 1000
    result["prefill"] = statistics.median(len(ids) / engine.run_one(ids, 2)[0] for ids in prompts["prefill"])
    if hasattr(engine, "run_many"):
        many = (prompts["chat"] * args.concurrency)[: args.concurrency]
        result["many"] = engine.run_many(many, args.tokens)
        result["settings"] = repr(engine.engine.settings)
    engine.close()
    logits = torch.stack([engine.last_logits(ids) for ids in prompts["chat"]])  # [M, V]
    torch.save(logits, os.path.join(workdir, f"{name}.pt"))
    result["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["load"] = os.getloadavg()[0]  # the machine's 1-minute load average as this engine ends
    with open(os.path.join(workdir, f"{name}.json"), "w", encoding="utf-8") as f:
        json.dump(result, f)


def _run(name: str, args: argparse.Namespace, workdir: str) -> dict[str, object] | None:
    command = [sys.executable, "-m", "bench.engine", "--child", name, "--workdir", workdir,
               "--tokens", str(args.tokens), "--threads", str(args.threads),
               "--concurrency", str(args.concurrency)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run(command, cwd=ROOT, env=env, check=False)
    if done.returncode:
        print(f"{name}: failed (exit {done.returncode})", file=sys.stderr)
        return None
    with open(os.path.join(workdir, f"{name}.json"), encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]


def _median(runs: list[dict]) -> dict:
    """One engine's rounds as one result: medians of the timings, the highest peak RSS, the load
    averages seen, the tokens of the first round (greedy: every round's are the same)."""
    merged = dict(runs[0])
    for key in ("load_s", "ttft_ms", "decode", "ttft100_ms", "prefill", "many"):
        if key in merged:
            merged[key] = statistics.median(r[key] for r in runs)
    merged["rss_mb"] = max(r["rss_mb"] for r in runs)
    merged["load"] = "-".join(f"{r['load']:.1f}" for r in runs)
    return merged


def _agreement(name: str, result: dict, reference: dict, workdir: str) -> str:
    import torch

    pairs = list(zip(result["tokens"], reference["tokens"], strict=True))
    same = sum(a == b for a, b in pairs)
    diff = (torch.load(os.path.join(workdir, f"{name}.pt")) - torch.load(
        os.path.join(workdir, "transformers.pt"))).abs().max().item()  # fmt: skip
    return f"{same}/{len(pairs)}, {diff:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1, help="runs of every engine, interleaved")
    parser.add_argument("--reference-once", action="store_true", help="transformers in the first round only")
    parser.add_argument("--engines", default="ours-float32,ours-bfloat16,ours-int8,ours-int4,llama.cpp")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args, args.workdir)
        return
    names = ["transformers"] + [n for n in args.engines.split(",") if n]
    if "llama.cpp" in names and importlib.util.find_spec("llama_cpp") is None:
        print("llama.cpp: llama_cpp does not import here; skipped (see BENCHMARKS.md)", file=sys.stderr)
        names.remove("llama.cpp")
    with tempfile.TemporaryDirectory() as workdir:
        with open(os.path.join(workdir, "prompts.json"), "w", encoding="utf-8") as f:
            json.dump(_prompts(), f)
        rounds: dict[str, list[dict]] = {name: [] for name in names}
        for round_ in range(args.rounds):  # engines interleaved, one after another, every round
            for name in names:
                if name == "transformers" and round_ and args.reference_once:
                    continue
                if (r := _run(name, args, workdir)) is not None:
                    rounds[name].append(r)
        results = {name: _median(runs) for name, runs in rounds.items() if runs}
        reference = results.get("transformers")
        peer = results.get("llama.cpp", {}).get("decode")
        print(f"\nthreads={args.threads} new_tokens={args.tokens} prompts={len(QUESTIONS)} "
              f"rounds={args.rounds} (medians over prompts, then over rounds)")  # fmt: skip
        head = ["engine", "load s", "decode tok/s", "x llama.cpp", "TTFT ms", "TTFT 100-tok ms",
                "prefill tok/s", f"{args.concurrency} at once tok/s", "peak RSS MB",
                "same greedy / max logit diff vs transformers", "load avg"]  # fmt: skip
        print("| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
        for name, r in results.items():
            ratio = f"{r['decode'] / peer:.2f}" if peer else "-"
            many = f"{r['many']:.0f}" if "many" in r else "-"
            agree = _agreement(name, r, reference, workdir) if reference and name != "transformers" else "-"
            print(f"| {name} | {r['load_s']:.1f} | {r['decode']:.1f} | {ratio} | {r['ttft_ms']:.0f} | "
                  f"{r['ttft100_ms']:.0f} | {r['prefill']:.0f} | {many} | {r['rss_mb']:.0f} | {agree} | "
                  f"{r['load']} |")  # fmt: skip
        for name, r in results.items():
            if "settings" in r:
                print(f"{name}: {r['settings']}")


if __name__ == "__main__":
    main()
