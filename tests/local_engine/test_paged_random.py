"""Random mixes of requests on a tiny random Llama: shared prefixes, small KV budgets, small
chunks, several block sizes and aborts. Greedy tokens must equal solo runs, and every block must
come back."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from local_engine import SamplingParams
from local_engine.engine.llm_engine import LLMEngine
from local_engine.engine.runner import ModelRunner
from tests.local_engine.test_gguf_models import tiny_llama

MAX_LEN = 64


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LLMEngine:
    path: Path = tmp_path_factory.mktemp("tiny") / "tiny.gguf"
    return LLMEngine.from_path(tiny_llama(path), max_model_len=MAX_LEN, max_batch=1)


def _engine(
    base: LLMEngine, max_batch: int, blocks: int | None, chunk: int, cache: bool, size: int
) -> LLMEngine:
    runner = ModelRunner(base.runner.model, max_batch, MAX_LEN, size, blocks)
    return LLMEngine(base.tokenizer, runner, prefill_chunk=chunk, prefix_caching=cache)


def _run(engine: LLMEngine, prompts: list[list[int]], params: list[SamplingParams],
         abort_at: tuple[int, int] | None = None) -> list[list[int]]:  # fmt: skip
    ids = [engine.add_request(prompt, p) for prompt, p in zip(prompts, params, strict=True)]
    out: dict[str, list[int]] = {request_id: [] for request_id in ids}
    for step in range(1, 5000):
        if not engine.has_unfinished():
            return [out[request_id] for request_id in ids]
        for result in engine.step():
            if result.event.token_id is not None:
                out[result.request_id].append(result.event.token_id)
        if abort_at is not None and abort_at[0] == step:
            engine.abort(ids[abort_at[1]])
    raise AssertionError("the engine never drained")


@pytest.mark.parametrize("seed", range(4))
def test_random_mixes_equal_solo_runs_and_free_every_block(tiny: LLMEngine, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(6):
        system = [rng.randrange(256) for _ in range(rng.randrange(0, 40))]
        prompts = [
            system + [rng.randrange(256) for _ in range(rng.randrange(1, 15))]
            for _ in range(rng.randrange(1, 8))
        ]
        params = [
            SamplingParams(temperature=0, max_tokens=rng.randrange(1, 20), ignore_eos=True) for _ in prompts
        ]
        size = rng.choice([4, 8, 16])
        solo = _engine(tiny, 1, None, 1024, False, size)
        expected = [_run(solo, [prompt], [p])[0] for prompt, p in zip(prompts, params, strict=True)]
        engine = _engine(
            tiny,
            rng.randrange(1, 6),
            rng.choice([None, 1, 8, 12]),
            rng.choice([1, 3, 8, 64]),
            rng.random() < 0.8,
            size,
        )
        start = engine.stats().free_blocks
        for _ in range(2):  # the second round meets a warm prefix cache
            assert _run(engine, prompts, params) == expected
            assert engine.stats().free_blocks == start
        _run(engine, prompts, params, abort_at=(rng.randrange(1, 10), rng.randrange(len(prompts))))
        assert engine.stats().free_blocks == start and not engine.has_unfinished()
        assert all(block.ref_count == 0 for block in engine.blocks.blocks)
