"""Whole GGUF models written by hand: a tiny random Llama that loads and runs, and ones whose header
lies about the tensors or the tokenizer, refused before any large allocation."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from local_engine import ModelFileError, SamplingParams
from local_engine.engine.llm_engine import LLMEngine
from local_engine.tokenizer import bytes_to_unicode
from tests.local_engine.gguf_builder import ARRAY, F32, I32, STRING, U32, GGUFBuilder, kv, tensor_info

HIDDEN, HEADS, KV_HEADS, FFN = 16, 4, 2, 32
TOKENS = [bytes_to_unicode()[b] for b in range(256)] + ["<|im_end|>"]


def tiny_llama(path: Path, *, layers: int = 2, claimed_layers: int | None = None, bos: int = 256,
               seed: int = 0) -> Path:  # fmt: skip
    rng = np.random.default_rng(seed)
    head_dim = HIDDEN // HEADS
    shapes = {"token_embd.weight": (len(TOKENS), HIDDEN), "output_norm.weight": (HIDDEN,)}
    for i in range(layers):
        shapes |= {
            f"blk.{i}.attn_norm.weight": (HIDDEN,), f"blk.{i}.ffn_norm.weight": (HIDDEN,),
            f"blk.{i}.attn_q.weight": (HIDDEN, HIDDEN), f"blk.{i}.attn_k.weight": (KV_HEADS * head_dim, HIDDEN),
            f"blk.{i}.attn_v.weight": (KV_HEADS * head_dim, HIDDEN), f"blk.{i}.attn_output.weight": (HIDDEN, HIDDEN),
            f"blk.{i}.ffn_gate.weight": (FFN, HIDDEN), f"blk.{i}.ffn_up.weight": (FFN, HIDDEN),
            f"blk.{i}.ffn_down.weight": (HIDDEN, FFN),
        }  # fmt: skip
    infos, data = [], b""
    for name, shape in shapes.items():
        values = rng.normal(0, 0.5, shape).astype("<f4").tobytes()
        infos.append(tensor_info(name, list(reversed(shape)), 0, len(data)))
        data += values + b"\0" * (-len(values) % 32)
    kvs = [
        kv("general.architecture", STRING, "llama"), kv("llama.block_count", U32, claimed_layers or layers),
        kv("llama.embedding_length", U32, HIDDEN), kv("llama.feed_forward_length", U32, FFN),
        kv("llama.attention.head_count", U32, HEADS), kv("llama.attention.head_count_kv", U32, KV_HEADS),
        kv("llama.context_length", U32, 64), kv("llama.rope.freq_base", F32, 10000.0),
        kv("tokenizer.ggml.model", STRING, "gpt2"), kv("tokenizer.ggml.pre", STRING, "smollm"),
        kv("tokenizer.ggml.tokens", ARRAY, (STRING, TOKENS)),
        kv("tokenizer.ggml.token_type", ARRAY, (I32, [1] * 256 + [3])),
        kv("tokenizer.ggml.merges", ARRAY, (STRING, [])), kv("tokenizer.ggml.eos_token_id", U32, 256),
        kv("tokenizer.ggml.bos_token_id", U32, bos),
    ]  # fmt: skip
    path.write_bytes(GGUFBuilder(kvs=kvs, infos=infos, data=data).build())
    return path


def test_a_tiny_gguf_llama_loads_and_generates(tmp_path: Path) -> None:
    engine = LLMEngine.from_path(tiny_llama(tmp_path / "tiny.gguf"), max_model_len=64, max_batch=2)
    assert engine.tokenizer.encode("héllo 42") == list("héllo 42".encode())  # no merges: one token a byte
    [[text]] = engine.generate(["hello"], SamplingParams(temperature=0, max_tokens=10, ignore_eos=True))
    [[again]] = engine.generate(["hello"], SamplingParams(temperature=0, max_tokens=10, ignore_eos=True))
    assert text == again and engine.stats().free_slots == 2


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({"claimed_layers": 1 << 20}, "model.bad-weights"),  # a million layers claimed, two present
        ({"claimed_layers": 1}, "model.bad-weights"),  # tensors for a layer the config does not have
        ({"bos": 10_000}, "tokenizer.bad-metadata"),
    ],
)
def test_a_header_that_lies_is_refused_quickly(tmp_path: Path, options: dict[str, int], code: str) -> None:
    path = tiny_llama(tmp_path / "liar.gguf", **options)
    start = time.perf_counter()
    with pytest.raises(ModelFileError) as info:
        LLMEngine.from_path(path, max_model_len=64)
    assert info.value.code == code
    assert time.perf_counter() - start < 2


def test_more_requests_than_slots_queue_and_match_solo_runs(tmp_path: Path) -> None:
    engine = LLMEngine.from_path(tiny_llama(tmp_path / "tiny.gguf"), max_model_len=64, max_batch=2)
    prompts = ["a", "hello there", "xyz", "0123456789", "tiny"]
    params = SamplingParams(temperature=0, max_tokens=8, ignore_eos=True)
    solo = [engine.generate([prompt], params)[0] for prompt in prompts]
    ids = [engine.add_request(prompt, params) for prompt in prompts]
    assert (engine.stats().queue_depth, engine.stats().running) == (5, 0)
    texts: dict[str, list[str]] = {request_id: [] for request_id in ids}
    first = engine.step()  # two prefills: the batch is full
    assert (engine.stats().queue_depth, engine.stats().running, engine.stats().free_slots) == (3, 2, 0)
    for out in first:
        texts[out.request_id].append(out.event.text_delta)
    while engine.has_unfinished():
        for out in engine.step():
            texts[out.request_id].append(out.event.text_delta)
            assert engine.stats().running <= 2
    assert [["".join(texts[request_id])] for request_id in ids] == solo
    assert engine.stats().free_slots == 2


def test_aborting_waiting_and_running_requests(tmp_path: Path) -> None:
    engine = LLMEngine.from_path(tiny_llama(tmp_path / "tiny.gguf"), max_model_len=64, max_batch=1)
    params = SamplingParams(temperature=0, max_tokens=50, ignore_eos=True)
    running, waiting = engine.add_request("a", params), engine.add_request("b", params)
    engine.step()
    engine.abort(waiting)
    engine.abort(running)
    assert not engine.has_unfinished() and engine.stats().free_slots == 1
