"""``model="local/…"`` through the drop-in client: the embedded SmolLM2, in process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

import gateway

MODEL = "local/smollm2-135m-instruct"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def client() -> gateway.OpenAI:
    return gateway.OpenAI()


def test_greedy_answer_and_exact_usage(client: gateway.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0, max_tokens=24)
    choice = reply.choices[0]
    assert (choice.message.content, choice.finish_reason) == ("The capital of France is Paris.", "stop")
    assert (
        reply.usage is not None
        and reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    )
    assert gateway.info(reply) is not None and gateway.info(reply).provider == "local"


def test_stream_equals_the_whole_reply(client: gateway.OpenAI) -> None:
    whole = client.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0, max_tokens=24)
    chunks = list(
        client.chat.completions.create(
            model=MODEL,
            messages=FRANCE,
            temperature=0,
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[-1].usage == whole.usage
    # The finish reason is the whole reply's, once, on the last choice chunk (whether the bundled model
    # stops inside 24 tokens depends on the CPU's arithmetic, so it is compared, not fixed).
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        whole.choices[0].finish_reason
    ]


def test_max_tokens_gives_length(client: gateway.OpenAI) -> None:
    reply = client.chat.completions.create(model=MODEL, messages=FRANCE, temperature=0, max_tokens=3)
    assert (
        reply.choices[0].finish_reason == "length"
        and reply.usage is not None
        and reply.usage.completion_tokens == 3
    )


def test_unsupported_parameters_are_refused_before_generation(client: gateway.OpenAI) -> None:
    with pytest.raises(gateway.UnsupportedParameterError, match="response_format"):
        client.chat.completions.create(model=MODEL, messages=FRANCE, response_format={"type": "json_object"})
    image = [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}],
        }
    ]
    with pytest.raises(gateway.UnsupportedParameterError, match="text only"):
        client.chat.completions.create(model=MODEL, messages=image)


def test_a_prompt_longer_than_the_context_is_a_context_length_error(client: gateway.OpenAI) -> None:
    long = [{"role": "user", "content": "word " * 9000}]
    with pytest.raises(gateway.ContextLengthExceededError):
        client.chat.completions.create(model=MODEL, messages=long, max_tokens=4)


def test_64_concurrent_async_requests_equal_their_sequential_answers(tmp_path: Path) -> None:
    # float32 on one thread: the arithmetic that does not depend on the batch a row lands in. The
    # quantized default's matmuls pick their kernel by row count on some CPUs (oneDNN), so its greedy
    # tokens can change with the company a request keeps, as in other batching engines.
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        """
version: 1
providers:
  exact: {kind: local, options: {dtype: float32, threads: 1}}
models:
  small: {provider: exact, model: smollm2-135m-instruct}
"""
    )
    prompts = [f"Say the number {i}." for i in range(8)]

    def ask(prompt: str) -> dict[str, object]:
        return {
            "model": "small",
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "max_tokens": 6,
        }

    expected = {}
    with gateway.OpenAI(policy=policy) as client:
        for prompt in prompts:
            reply = client.chat.completions.create(**ask(prompt))
            expected[prompt] = (reply.choices[0].message.content, reply.usage)

    async def main() -> list[tuple[str, gateway.core.types.ChatCompletion]]:
        async with gateway.AsyncOpenAI(policy=policy) as async_client:
            batch = [prompts[i % len(prompts)] for i in range(64)]
            replies = await asyncio.gather(*(async_client.chat.completions.create(**ask(p)) for p in batch))
            return list(zip(batch, replies, strict=True))

    results = asyncio.run(main())
    assert len(results) == 64
    for prompt, reply in results:  # batched and paged, yet the same tokens and the same exact usage
        assert (reply.choices[0].message.content, reply.usage) == expected[prompt]


def test_import_gateway_does_not_load_torch_until_a_local_call() -> None:
    code = "import sys, gateway; gateway.OpenAI(); print('torch' in sys.modules)"
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "False"
    )


def test_engine_settings_come_from_the_policy(tmp_path: object) -> None:
    from pathlib import Path

    policy = Path(str(tmp_path)) / "local.yaml"
    policy.write_text(
        """
version: 1
providers:
  edge: {kind: local, options: {dtype: float32, max_batch: 3, max_model_len: 512}}
  broken: {kind: local, options: {dtype: float7}}
models:
  small: {provider: edge, model: smollm2-135m-instruct}
  bad: {provider: broken, model: smollm2-135m-instruct}
"""
    )
    from providers import local

    with gateway.OpenAI(policy=policy) as client:
        reply = client.chat.completions.create(model="small", messages=FRANCE, temperature=0, max_tokens=24)
        assert reply.choices[0].message.content == "The capital of France is Paris."
        engine = local.engine_for(
            "smollm2-135m-instruct", {"dtype": "float32", "max_batch": 3, "max_model_len": 512}
        )
        assert (engine.settings.max_batch, engine.settings.max_model_len) == (3, 512)
        with pytest.raises(gateway.BadRequestError) as info:
            client.chat.completions.create(model="bad", messages=FRANCE, max_tokens=4)
        assert info.value.param == "options.dtype" and "dtype" in info.value.message
