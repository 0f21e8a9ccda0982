"""The engines `bench/engine.py` compares, each behind the same three calls.

`run_one(ids, tokens) -> (ttft_s, decode_tok_s, token_ids)` greedy at batch 1 with end-of-turn
ignored, `last_logits(ids) -> [V] float32` at the prompt's last token, and `close()`. Ours also has
`run_many(prompts, tokens) -> tok/s` (all in flight at once). llama.cpp is imported only here,
only when asked for (`llama-cpp-python`, from a separate benchmark venv).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import torch

from local_engine import SamplingParams, load_engine


class Ours:
    def __init__(self, path: str, variant: str, threads: int, max_batch: int) -> None:
        dtype, quantization = {
            "float32": ("float32", "none"), "bfloat16": ("bfloat16", "none"),
            "int8": ("bfloat16", "int8"), "int4": ("bfloat16", "int4"),
        }[variant]  # fmt: skip
        self.engine = load_engine(
            path, dtype=dtype, quantization=quantization, threads=threads, max_batch=max_batch,
            max_model_len=1024,
        )  # fmt: skip

    def run_one(self, ids: list[int], tokens: int) -> tuple[float, float, list[int]]:
        params = SamplingParams(temperature=0, max_tokens=tokens, ignore_eos=True)
        start, first, out = time.perf_counter(), 0.0, []
        for event in self.engine.generate_sync(ids, params):
            if not out:
                first = time.perf_counter() - start
            if event.token_id is not None:
                out.append(event.token_id)
        total = time.perf_counter() - start
        return first, (len(out) - 1) / max(total - first, 1e-9), out

    def run_many(self, prompts: list[list[int]], tokens: int) -> float:
        """Aggregate tokens/s with every prompt in flight at once (prefills included)."""
        params = SamplingParams(temperature=0, max_tokens=tokens, ignore_eos=True)

        async def run() -> None:
            await asyncio.gather(*(self.engine.complete(ids, params) for ids in prompts))

        start = time.perf_counter()
        asyncio.run(run())
        return len(prompts) * tokens / (time.perf_counter() - start)

    def last_logits(self, ids: list[int]) -> torch.Tensor:
        """After `close()`: the engine thread is gone, so the model and its cache are free."""
        model = self.engine.engine.runner.model
        with torch.inference_mode():
            logits = model(torch.tensor([ids]), torch.tensor([0]), torch.arange(len(ids))[None])
        return logits[0, -1].float()  # [V]

    def close(self) -> None:
        self.engine.close()


class Transformers:
    def __init__(self, path: str, threads: int) -> None:
        from transformers import AutoModelForCausalLM

        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.model = AutoModelForCausalLM.from_pretrained(
            os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32
        ).eval()  # fmt: skip

    def run_one(self, ids: list[int], tokens: int) -> tuple[float, float, list[int]]:
        inputs = torch.tensor([ids])  # [1, S]
        kwargs: dict[str, Any] = {"do_sample": False, "eos_token_id": None, "pad_token_id": 0}
        with torch.inference_mode():
            start = time.perf_counter()
            self.model.generate(inputs, max_new_tokens=1, **kwargs)
            first = time.perf_counter() - start
            start = time.perf_counter()
            out = self.model.generate(inputs, max_new_tokens=tokens, min_new_tokens=tokens, **kwargs)
            total = time.perf_counter() - start
        return first, (tokens - 1) / max(total - first, 1e-9), out[0, len(ids) :].tolist()

    def last_logits(self, ids: list[int]) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(torch.tensor([ids])).logits[0, -1].float()  # [V]

    def close(self) -> None:
        pass


class LlamaCpp:
    """llama.cpp through llama-cpp-python, on the GGUF as stored (its own Q4_1 / Q8_0 kernels)."""

    def __init__(self, path: str, threads: int) -> None:
        from llama_cpp import Llama

        self.llm = Llama(
            model_path=path, n_ctx=1024, n_threads=threads, n_threads_batch=threads, verbose=False
        )

    def run_one(self, ids: list[int], tokens: int) -> tuple[float, float, list[int]]:
        self.llm.reset()  # no reuse of the previous run's prefix
        start, first, out = time.perf_counter(), 0.0, []
        for token in self.llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
            if not out:
                first = time.perf_counter() - start
            out.append(int(token))
            if len(out) == tokens:
                break
        total = time.perf_counter() - start
        return first, (len(out) - 1) / max(total - first, 1e-9), out

    def last_logits(self, ids: list[int]) -> torch.Tensor:
        import numpy as np

        self.llm.reset()
        self.llm.eval(ids)
        # read from the context: without logits_all, llama-cpp-python 0.3 leaves `scores` at zero
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits_ith(-1), shape=(self.llm.n_vocab(),))
        return torch.tensor(logits.copy(), dtype=torch.float32)  # [V]

    def close(self) -> None:
        pass  # `last_logits` comes after close(); the process exit frees the model


def make(name: str, path: str, threads: int, max_batch: int) -> Ours | Transformers | LlamaCpp:
    if name == "transformers":
        return Transformers(path, threads)
    if name == "llama.cpp":
        return LlamaCpp(path, threads)
    return Ours(path, name.removeprefix("ours-"), threads, max_batch)
