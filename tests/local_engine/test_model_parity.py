"""The decoder matches transformers' LlamaForCausalLM loaded from the same GGUF."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from local_engine import AsyncEngine, SamplingParams

pytestmark = [pytest.mark.engine, pytest.mark.slow]

PROMPTS = [
    "The quick brown fox jumps over the lazy dog.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Paris is the capital of",
    "In 1969, Neil Armstrong became the first person to",
]


@contextmanager
def _own_cache(engine: AsyncEngine, num_blocks: int = 16) -> Iterator[Any]:
    """The engine's model with a fresh KV cache of its own, so that the engine's cached prefix
    blocks are left alone (the engine is idle while these tests run)."""
    from local_engine.layers.kv_cache import KVCache

    model = engine.engine.runner.model
    saved = [layer.attention.kv_cache for layer in model.layers]
    for layer in model.layers:
        attention = layer.attention
        attention.kv_cache = KVCache(
            num_blocks, model.block_size, attention.n_kv, attention.head_dim, "cpu", torch.float32
        )
    try:
        yield model
    finally:
        for layer, cache in zip(model.layers, saved, strict=True):
            layer.attention.kv_cache = cache


def _our_logits(engine: AsyncEngine, ids: list[int]) -> torch.Tensor:
    with _own_cache(engine) as model, torch.inference_mode():
        tokens = torch.tensor([ids])  # [1, S]
        return model(tokens, torch.tensor([0]), torch.arange(len(ids))[None])[0]  # [S, V]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_logits_match_transformers(engine: AsyncEngine, hf_model: Any, prompt: str) -> None:
    ids = engine.tokenizer.encode(prompt)
    with torch.inference_mode():
        expected = hf_model(torch.tensor([ids])).logits[0]  # [S, V]
    torch.testing.assert_close(_our_logits(engine, ids), expected, atol=1e-4, rtol=1e-4)


def test_batched_decode_reads_the_right_blocks(engine: AsyncEngine, hf_model: Any) -> None:
    """Two sequences of different lengths, in scattered blocks, decode together (mask and gather)."""
    from local_engine.layers.kv_cache import BatchMeta

    size = engine.engine.runner.block_size
    first, second = (engine.tokenizer.encode(p) for p in PROMPTS[:2])
    tables = [[7, 3, 11, 5][: -(-len(first) // size)], [2, 9, 4, 8][: -(-len(second) // size)]]
    with _own_cache(engine) as model, torch.inference_mode():
        for table, ids in zip(tables, (first, second), strict=True):
            meta = BatchMeta.build([table], [0], [len(ids) - 1], size, "cpu")
            model(torch.tensor([ids[:-1]]), meta)
        meta = BatchMeta.build(tables, [len(first) - 1, len(second) - 1], [1, 1], size, "cpu")
        got = model(torch.tensor([[first[-1], second[-1]]]), meta)[0]  # [2, V]
        expected = [hf_model(torch.tensor([ids])).logits[0, -1] for ids in (first, second)]
    torch.testing.assert_close(got, torch.stack(expected), atol=1e-4, rtol=1e-4)


def _hf_greedy(hf_model: Any, ids: list[int], count: int) -> tuple[list[int], float]:
    """Greedy tokens from transformers, and the smallest top-1/top-2 logit margin along the way."""
    with torch.inference_mode():
        out = hf_model.generate(
            torch.tensor([ids]), max_new_tokens=count, do_sample=False, output_logits=True,
            return_dict_in_generate=True, eos_token_id=None, pad_token_id=0,
        )  # fmt: skip
    margins = [float(step[0].topk(2).values.diff().abs()) for step in out.logits]
    return out.sequences[0, len(ids) :].tolist(), min(margins)


@pytest.mark.parametrize("prompt", PROMPTS[:3])
def test_greedy_continuation_matches_transformers(engine: AsyncEngine, hf_model: Any, prompt: str) -> None:
    ids = engine.tokenizer.encode(prompt)
    expected, margin = _hf_greedy(hf_model, ids, 32)
    assert margin > 1e-3, "pick prompts whose greedy path has a comfortable top-2 margin"
    params = SamplingParams(temperature=0, max_tokens=32, ignore_eos=True)
    got = [event.token_id for event in engine.generate_sync(ids, params) if event.token_id is not None]
    assert got == expected


def test_chat_answer(engine: AsyncEngine) -> None:
    prompt = engine.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}]
    )
    events = list(engine.generate_sync(prompt, SamplingParams(temperature=0, max_tokens=64)))
    assert "".join(event.text_delta for event in events) == "The capital of France is Paris."
    assert events[-1].finish_reason == "stop"
