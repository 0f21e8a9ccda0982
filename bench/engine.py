"""Local engine beside transformers on the bundled model: TTFT, decode tokens/s at batch 1,
whether greedy outputs are identical, and aggregate tokens/s with `--concurrency` requests at once
(ours: continuous batching; transformers: one left-padded batched `generate`).

    python bench/engine.py [--device cpu] [--tokens 64] [--threads 2] [--repeat 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

import torch

from local_engine import SamplingParams, default_model_path, load_engine

PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "user", "content": "Write a short poem about the sea."}],
    [{"role": "user", "content": "Explain what a hash map is in two sentences."}],
]


def _ours(engine: object, ids: list[int], tokens: int) -> tuple[float, float, list[int]]:
    params = SamplingParams(temperature=0, max_tokens=tokens, ignore_eos=True)
    start = time.perf_counter()
    first = 0.0
    out: list[int] = []
    for event in engine.generate_sync(ids, params):  # type: ignore[attr-defined]
        if not out:
            first = time.perf_counter() - start
        if event.token_id is not None:
            out.append(event.token_id)
    total = time.perf_counter() - start
    return first, (len(out) - 1) / (total - first), out


def _batched(engine: object, prompts: list[list[int]], tokens: int) -> float:
    """Aggregate decode tokens/s with every prompt in flight at once (continuous batching)."""
    params = SamplingParams(temperature=0, max_tokens=tokens, ignore_eos=True)

    async def run() -> int:
        outs = await asyncio.gather(*(engine.complete(ids, params) for ids in prompts))  # type: ignore[attr-defined]
        return len(outs)

    start = time.perf_counter()
    asyncio.run(run())
    return len(prompts) * tokens / (time.perf_counter() - start)


def _theirs_batched(model: object, prompts: list[list[int]], tokens: int, device: str) -> float:
    """Aggregate tokens/s of one batched transformers `generate` over the prompts (left-padded)."""
    width = max(len(ids) for ids in prompts)
    inputs = torch.tensor([[0] * (width - len(ids)) + ids for ids in prompts], device=device)  # [B, S]
    mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=device)
    with torch.inference_mode():
        start = time.perf_counter()
        model.generate(  # type: ignore[attr-defined]
            inputs, attention_mask=mask, max_new_tokens=tokens, min_new_tokens=tokens,
            do_sample=False, eos_token_id=None, pad_token_id=0,
        )  # fmt: skip
    return len(prompts) * tokens / (time.perf_counter() - start)


def _theirs(model: object, ids: list[int], tokens: int, device: str) -> tuple[float, float, list[int]]:
    inputs = torch.tensor([ids], device=device)
    with torch.inference_mode():
        start = time.perf_counter()
        model.generate(inputs, max_new_tokens=1, do_sample=False, pad_token_id=0)  # type: ignore[attr-defined]
        first = time.perf_counter() - start
        start = time.perf_counter()
        out = model.generate(  # type: ignore[attr-defined]
            inputs,
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
        total = time.perf_counter() - start
    return first, (tokens - 1) / (total - first), out[0, len(ids) :].tolist()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument(
        "--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="ours only"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # a benchmark process: both engines get the same threads

    from transformers import AutoModelForCausalLM

    path = default_model_path()
    start = time.perf_counter()
    engine = load_engine(
        path, device=args.device, dtype=getattr(torch, args.dtype), threads=args.threads,
        max_batch=args.concurrency, max_model_len=512,
    )  # fmt: skip
    our_load = time.perf_counter() - start
    start = time.perf_counter()
    reference = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
    ).to(args.device).eval()  # fmt: skip
    their_load = time.perf_counter() - start

    rows = {"local_engine": [], "transformers": []}  # type: dict[str, list[tuple[float, float]]]
    identical = 0
    for messages in PROMPTS:
        ids = engine.tokenizer.encode(engine.tokenizer.apply_chat_template(messages))
        for _ in range(args.repeat):
            ttft, rate, ours = _ours(engine, ids, args.tokens)
            rows["local_engine"].append((ttft, rate))
            ttft, rate, theirs = _theirs(reference, ids, args.tokens, args.device)
            rows["transformers"].append((ttft, rate))
        identical += ours == theirs
    all_ids = [engine.tokenizer.encode(engine.tokenizer.apply_chat_template(m)) for m in PROMPTS]
    many = (all_ids * args.concurrency)[: args.concurrency]
    batched = _batched(engine, many, args.tokens)
    stats = engine.stats()
    engine.close()
    their_batched = _theirs_batched(reference, many, args.tokens, args.device)

    print(
        f"device={args.device} threads={args.threads} new_tokens={args.tokens} runs={args.repeat * len(PROMPTS)}"
    )
    print(f"{'engine':<14}{'load s':>9}{'TTFT ms (median)':>19}{'decode tok/s (median)':>24}")
    for name, load in (("local_engine", our_load), ("transformers", their_load)):
        ttft = statistics.median(r[0] for r in rows[name]) * 1000
        rate = statistics.median(r[1] for r in rows[name])
        print(f"{name:<14}{load:>9.1f}{ttft:>19.1f}{rate:>24.1f}")
    print(f"identical greedy outputs: {identical}/{len(PROMPTS)} prompts")
    n = args.concurrency
    print(f"local_engine, {n} requests at once: {batched:.1f} tok/s in all (prefills included)")
    print(f"transformers, batch of {n} (left-padded generate): {their_batched:.1f} tok/s in all")
    print(f"prefix cache: {stats.cached_tokens} of {stats.prompt_tokens} prompt tokens reused")


if __name__ == "__main__":
    main()
