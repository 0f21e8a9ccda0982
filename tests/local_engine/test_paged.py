"""The paged KV cache, continuous batching, chunked prefill, prefix caching and preemption.

Each test checks greedy tokens against a reference run of the same bundled model: one request
at a time, unchunked, without prefix caching and with plenty of KV blocks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from local_engine import AsyncEngine, SamplingParams
from local_engine.engine.llm_engine import EngineStats, LLMEngine
from local_engine.engine.runner import ModelRunner

pytestmark = pytest.mark.engine

SYSTEM = (
    "You are a careful assistant for a railway company. Answer briefly and politely, quote "
    "timetables exactly, never invent a platform number, and say when you do not know."
)
QUESTIONS = ["When does the first train leave?", "Is there a dining car?", "Can I bring a bike?"]
GREEDY = SamplingParams(temperature=0, max_tokens=10, ignore_eos=True)


@pytest.fixture(scope="module")
def base() -> LLMEngine:
    """The model, loaded once for the module; tests build engines on it with `_engine`."""
    return LLMEngine.from_path(max_batch=1, max_model_len=256)


def _engine(base: LLMEngine, *, max_batch: int = 4, kv_blocks: int | None = None,
            prefill_chunk: int = 32, prefix_caching: bool = True) -> LLMEngine:  # fmt: skip
    """A fresh engine on the shared model (a new KV cache: engines built before it are spent)."""
    runner = ModelRunner(base.runner.model, max_batch, 128 if kv_blocks else 256, 16, kv_blocks)
    return LLMEngine(base.tokenizer, runner, prefill_chunk=prefill_chunk, prefix_caching=prefix_caching)


def _prompts(engine: LLMEngine) -> list[list[int]]:
    chat = [
        engine.tokenizer.encode_chat([{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}])
        for q in QUESTIONS
    ]
    return [
        *chat,
        engine.tokenizer.encode("The first three planets are"),
        engine.tokenizer.encode("def f(x):"),
    ]


def _tokens(engine: LLMEngine, prompts: list[list[int]], params: SamplingParams = GREEDY) -> list[list[int]]:
    """Run the prompts together; return each one's generated token ids."""
    ids = [engine.add_request(prompt, params) for prompt in prompts]
    out: dict[str, list[int]] = {request_id: [] for request_id in ids}
    while engine.has_unfinished():
        for result in engine.step():
            if result.event.token_id is not None:
                out[result.request_id].append(result.event.token_id)
    return [out[request_id] for request_id in ids]


@pytest.fixture(scope="module")
def reference(base: LLMEngine) -> list[list[int]]:
    """Each prompt alone, unchunked, without prefix caching."""
    solo = _engine(base, max_batch=1, prefill_chunk=1024, prefix_caching=False)
    return [_tokens(solo, [prompt])[0] for prompt in _prompts(base)]


def test_batched_chunked_and_prefix_cached_equal_solo_runs(
    base: LLMEngine, reference: list[list[int]]
) -> None:
    small = _engine(base)
    start = small.stats().free_blocks
    assert _tokens(small, _prompts(small)) == reference
    assert small.stats().cached_tokens > 0  # the system prompt's blocks were shared
    assert small.stats().free_blocks == start == small.stats().total_blocks


def test_a_cached_prefix_gives_the_same_tokens(base: LLMEngine, reference: list[list[int]]) -> None:
    small = _engine(base)
    prompts = _prompts(small)
    _tokens(small, prompts[:1])  # publishes the system prompt's blocks
    before = small.stats().cached_tokens
    assert _tokens(small, prompts[1:2]) == reference[1:2]
    assert small.stats().cached_tokens - before >= 32  # at least two 16-token blocks were reused


def test_chunked_prefill_of_a_long_prompt_equals_unchunked(base: LLMEngine) -> None:
    long = base.tokenizer.encode(" ".join(f"item {i} is {i * 7 % 13};" for i in range(30)))
    assert len(long) > 3 * 32
    expected = _tokens(_engine(base, prefill_chunk=1024, prefix_caching=False), [long])
    assert _tokens(_engine(base, prefill_chunk=32, prefix_caching=False), [long]) == expected


def test_a_long_prefill_does_not_stall_running_decodes(base: LLMEngine) -> None:
    engine = _engine(base)
    engine.add_request("Once upon a time", GREEDY)
    engine.step()  # the short prompt is prefilled and decoding
    engine.add_request(base.tokenizer.encode(" ".join(["word"] * 150)), GREEDY)
    for _ in range(3):  # the 150-token prompt takes five chunks; the decode advances every step
        assert [out.request_id for out in engine.step()] == ["req-0"]
    while engine.has_unfinished():
        engine.step()


def test_preemption_under_a_tiny_kv_budget_completes_every_request(
    base: LLMEngine, reference: list[list[int]]
) -> None:
    # 5 prompts of up to ~60 tokens (4 blocks each) in 10 blocks: sequences are preempted
    tiny = _engine(base, kv_blocks=10, prefix_caching=False)
    assert tiny.stats().total_blocks == 10
    assert _tokens(tiny, _prompts(base)) == reference
    assert tiny.stats().preemptions > 0
    assert tiny.stats().free_blocks == 10


def test_aborting_frees_every_block(base: LLMEngine) -> None:
    small = _engine(base)
    start = small.stats().free_blocks
    params = SamplingParams(max_tokens=100, ignore_eos=True)
    ids = [small.add_request(prompt, params) for prompt in _prompts(small)]
    for _ in range(4):
        small.step()
    assert small.stats().free_blocks < start and small.stats().running == 4
    for request_id in ids:
        small.abort(request_id)
    assert not small.has_unfinished() and small.stats().free_blocks == start


async def test_cancelling_streams_frees_every_block_and_stats_show_load(engine: AsyncEngine) -> None:
    start = engine.stats()
    assert (start.running, start.queue_depth, start.free_blocks) == (0, 0, start.total_blocks)
    params = SamplingParams(max_tokens=400, ignore_eos=True)

    async def consume(i: int) -> None:
        async for _ in engine.generate(f"Story number {i}:", params):
            pass

    tasks = [asyncio.create_task(consume(i)) for i in range(6)]
    busy = await _until(engine, lambda s: s.running == 4 and s.queue_depth == 2 and s.tokens_per_s > 0)
    assert busy.free_blocks < start.free_blocks  # max_batch 4: two requests wait
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await _until(engine, lambda s: (s.running, s.queue_depth, s.free_blocks) == (0, 0, start.free_blocks))


async def _until(engine: AsyncEngine, ready: Callable[[EngineStats], bool]) -> EngineStats:
    for _ in range(1000):
        stats = engine.stats()
        if ready(stats):
            return stats
        await asyncio.sleep(0.02)
    raise AssertionError(f"never reached: {engine.stats()}")


def test_the_static_decode_step_for_cuda_graphs_matches_the_packed_one(base: LLMEngine) -> None:
    """The CUDA-graph decode path (fixed buffers, padded rows, a scratch block), run eagerly here."""
    import torch

    from local_engine.engine.cuda_graphs import DecodeGraphs, graph_sizes

    assert graph_sizes(4) == [1, 2, 4] and graph_sizes(40) == [1, 2, 4, 8, 16, 32, 40]
    engine = _engine(base, prefix_caching=False)
    for prompt in _prompts(base)[:3]:
        engine.add_request(prompt, GREEDY)
    while any(seq.num_computed < len(seq.prompt_ids) for seq in engine.scheduler.running) or (
        engine.scheduler.waiting
    ):
        engine.step()
    chunks = engine.scheduler.schedule()
    assert [chunk.count for chunk in chunks] == [1, 1, 1]
    scratch = next(iter(engine.blocks.free))  # a block no sequence holds
    graphs = DecodeGraphs(engine.runner.model, 4, 256, scratch_block=scratch, capture=False)
    with torch.inference_mode():
        expected = engine.runner.logits(chunks)  # [3, V]
        got = graphs.run(
            [chunk.seq.last_token for chunk in chunks],
            [chunk.start for chunk in chunks],
            [chunk.seq.block_table for chunk in chunks],
        )  # padded to 4 rows
    assert got is not None
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert graphs.run([0] * 5, [0] * 5, [[scratch]] * 5) is None  # more rows than the largest graph


def test_only_decodes_take_the_decode_rows_a_one_token_prompt_chunk_is_a_prompt_row(
    engine: AsyncEngine,
) -> None:
    # A prompt the prefix cache holds but for its last token is a one-token chunk, like a decode;
    # it must still be a prompt row (a quantized model's dense weight), else its arithmetic would
    # depend on which other requests share its step.
    from local_engine.engine.block_manager import BlockManager
    from local_engine.engine.scheduler import Scheduler
    from local_engine.engine.sequence import Sequence
    from local_engine.layers.kv_cache import BatchMeta

    blocks = BlockManager(16, 4)
    scheduler = Scheduler(blocks, max_seqs=4, max_step_tokens=64)
    first = Sequence("a", 0, list(range(10, 18)), GREEDY, engine.tokenizer, None)
    scheduler.add(first)
    scheduler.computed(scheduler.schedule())  # the 8-token prompt, its two blocks published
    first.append(99, 64)
    repeat = Sequence("b", 0, [*range(10, 18), 7], GREEDY, engine.tokenizer, None)  # 8 cached + 1
    scheduler.add(repeat)
    chunks = scheduler.schedule()
    assert [(c.seq.request_id, c.count, c.decodes) for c in chunks] == [("a", 1, True), ("b", 1, False)]
    meta = BatchMeta.build(
        [c.seq.block_table for c in chunks], [c.start for c in chunks], [c.count for c in chunks], 4, "cpu",
        sum(c.decodes for c in chunks),
    )  # fmt: skip
    assert meta.decode_rows == 1 and [g.rows for g in meta.groups] == [2]  # one attention batch
    assert BatchMeta.build([[0]], [0], [1], 4, "cpu").decode_rows == 1  # the default: leading one-token rows
