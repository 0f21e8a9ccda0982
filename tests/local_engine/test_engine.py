"""The engine's behaviour: stopping, lengths, cancellation, batching, logprobs, errors."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local_engine import AsyncEngine, EngineClosedError, RequestError, SamplingParams, TokenEvent

pytestmark = pytest.mark.engine

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _text(events: list[TokenEvent]) -> str:
    return "".join(event.text_delta for event in events)


def _chat(engine: AsyncEngine) -> str:
    return engine.tokenizer.apply_chat_template(QUESTION)


def _wait_idle(engine: AsyncEngine, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stats = engine.stats()
        if stats.running == 0 and stats.queue_depth == 0 and stats.free_slots == 4:
            return
        time.sleep(0.02)
    raise AssertionError(f"engine still busy: {engine.stats()}")


def test_max_tokens_finishes_with_length(engine: AsyncEngine) -> None:
    events = list(
        engine.generate_sync("Once upon a time", SamplingParams(temperature=0, max_tokens=5, ignore_eos=True))
    )
    assert [e.finish_reason for e in events] == [None] * 4 + ["length"]
    assert (events[-1].prompt_tokens, events[-1].completion_tokens) == (4, 5)
    assert all(e.prompt_tokens is None for e in events[:-1])
    assert all(e.token_id is not None for e in events)


@pytest.mark.parametrize(
    ("stop", "text"),
    [
        (("Paris",), "The capital of France is "),
        (("capital of Fr", "zzz"), "The "),
        ((" is P",), "The capital of France"),
    ],
)
def test_stop_strings_end_the_text_and_never_leak(
    engine: AsyncEngine, stop: tuple[str, ...], text: str
) -> None:
    events = list(engine.generate_sync(_chat(engine), SamplingParams(temperature=0, stop=stop)))
    assert _text(events) == text
    assert events[-1].finish_reason == "stop"
    _wait_idle(engine)


def test_stop_token_ids(engine: AsyncEngine) -> None:
    capital = engine.tokenizer.encode(" capital")[0]
    events = list(
        engine.generate_sync(_chat(engine), SamplingParams(temperature=0, stop_token_ids=(capital,)))
    )
    assert _text(events) == "The"
    prompt_tokens = len(engine.tokenizer.encode(_chat(engine)))
    assert events[-1] == TokenEvent(
        "", None, finish_reason="stop", prompt_tokens=prompt_tokens, completion_tokens=2
    )


async def test_closing_the_stream_aborts_and_frees_the_cache(engine: AsyncEngine) -> None:
    stream = engine.generate("Once upon a time", SamplingParams(max_tokens=500, ignore_eos=True, seed=1))
    seen = [await anext(stream) for _ in range(3)]
    assert all(event.finish_reason is None for event in seen)
    assert engine.stats().running == 1
    await stream.aclose()
    await asyncio.to_thread(_wait_idle, engine)


async def test_cancelling_the_task_aborts_and_frees_the_cache(engine: AsyncEngine) -> None:
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in engine.generate("Once upon a time", SamplingParams(max_tokens=500, ignore_eos=True)):
            started.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(_wait_idle, engine)


def test_closing_a_sync_stream_aborts(engine: AsyncEngine) -> None:
    stream = engine.generate_sync("Once upon a time", SamplingParams(max_tokens=500, ignore_eos=True))
    next(stream)
    stream.close()
    _wait_idle(engine)


async def test_concurrent_requests_batch_and_match_sequential_runs(engine: AsyncEngine) -> None:
    prompts = [_chat(engine), "The first three planets are", "def add(a, b):"]
    params = SamplingParams(temperature=0, max_tokens=12)
    alone = [await engine.complete(prompt, params) for prompt in prompts]
    together = await asyncio.gather(*(engine.complete(prompt, params) for prompt in prompts))
    assert list(together) == alone
    assert engine.stats().tokens_per_s > 0


async def test_n_choices_with_a_seed_are_reproducible(engine: AsyncEngine) -> None:
    params = SamplingParams(temperature=1.0, max_tokens=8, n=2, seed=42, ignore_eos=True)
    first = await engine.complete("My favourite colour is", params)
    again = await engine.complete("My favourite colour is", params)
    assert len(first) == 2 and first == again


def test_logprobs(engine: AsyncEngine) -> None:
    params = SamplingParams(temperature=0, max_tokens=4, logprobs=True, top_logprobs=3, ignore_eos=True)
    for event in engine.generate_sync(_chat(engine), params):
        assert event.top_logprobs is not None and len(event.top_logprobs) == 3
        assert event.top_logprobs[0].token_id == event.token_id
        assert event.top_logprobs[0].token_bytes == engine.tokenizer.token_bytes(event.token_id)
        assert event.logprob == event.top_logprobs[0].logprob <= 0


def test_a_prompt_longer_than_the_context_is_refused(engine: AsyncEngine) -> None:
    with pytest.raises(RequestError) as info:
        list(engine.generate_sync([1] * engine.max_model_len))
    assert info.value.code == "request.prompt-too-long"
    with pytest.raises(RequestError):
        list(engine.generate_sync([]))


def test_a_closed_engine_refuses_work(engine: AsyncEngine) -> None:
    other = AsyncEngine(engine.engine)  # a second front on the same engine, closed at once
    other.close()
    with pytest.raises(EngineClosedError):
        list(other.generate_sync("hi"))


def test_a_stream_whose_event_loop_closed_is_aborted(engine: AsyncEngine) -> None:
    async def start() -> None:
        stream = engine.generate("Once upon a time", SamplingParams(max_tokens=500, ignore_eos=True))
        await anext(stream)  # leave the stream open, then let asyncio.run close the loop under it

    asyncio.run(start())
    _wait_idle(engine)
    events = list(engine.generate_sync("Hi", SamplingParams(max_tokens=2, ignore_eos=True)))  # still serving
    assert events[-1].finish_reason == "length"


def test_half_precision_answers_too() -> None:
    import torch

    from local_engine.engine.llm_engine import LLMEngine

    half = LLMEngine.from_path(dtype=torch.bfloat16, max_model_len=256, max_batch=1)
    prompt = half.tokenizer.apply_chat_template(QUESTION)
    [[text]] = half.generate([prompt], SamplingParams(temperature=0, max_tokens=16))
    assert "Paris" in text


_PIECES = st.sampled_from(["a", "b", "ab", " ", "\n", "é", "中", "😀", "END", "E", "ND", "</s", ">", "."])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    text=st.lists(_PIECES, max_size=25).map("".join),
    stops=st.lists(st.lists(_PIECES, min_size=1, max_size=3).map("".join), min_size=1, max_size=3),
)
def test_stop_strings_cut_the_stream_exactly(engine: AsyncEngine, text: str, stops: list[str]) -> None:
    from local_engine.engine.sequence import Sequence

    params = SamplingParams(stop=tuple(stops), max_tokens=None)
    seq = Sequence("r", 0, [1], params, engine.tokenizer, None)
    streamed = []
    for token in engine.tokenizer.encode(text, parse_special=False):
        streamed.append(seq.append(token, max_len=10_000)[0])
        if seq.finish_reason is not None:
            break
    # the reference, read character by character: cut before the first stop string completed
    ends = [i + len(stop) for stop in stops if (i := text.find(stop)) >= 0]
    if ends:
        head = text[: min(ends)]
        start = min(head.find(stop) for stop in stops if stop in head)
        assert (seq.finish_reason, "".join(streamed)) == ("stop", text[:start])
    else:
        assert seq.finish_reason is None and text.startswith("".join(streamed))
