"""The sampler against reference distributions computed independently with numpy, with a fixed seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from local_engine.sampling import SamplingParams, apply_penalties, sample

LOGITS = np.array([2.0, 1.5, 1.0, 0.2, -0.5, -3.0])
ROWS = 40_000


def _reference(
    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, min_p: float = 0.0
) -> np.ndarray:
    scaled = LOGITS / temperature
    probs = np.exp(scaled - scaled.max())
    probs /= probs.sum()
    keep = np.ones_like(probs, dtype=bool)
    order = np.argsort(-probs)
    if top_k:
        keep[order[top_k:]] = False
    if top_p < 1:
        mass = 0.0
        for rank, index in enumerate(order):
            if rank > 0 and mass > top_p:
                keep[index] = False
            mass += probs[index]
    if min_p:
        keep &= probs >= min_p * probs.max()
    kept = np.where(keep, probs, 0.0)
    return kept / kept.sum()


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"temperature": 0.7},
        {"temperature": 1.5},
        {"top_k": 3},
        {"top_p": 0.8},
        {"min_p": 0.2},
        {"temperature": 0.9, "top_k": 4, "top_p": 0.9},
    ],
)
def test_sampling_follows_the_reference_distribution(options: dict[str, float]) -> None:
    params = SamplingParams(seed=0, **options)  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(1234)
    logits = torch.tensor(LOGITS, dtype=torch.float32).expand(ROWS, -1)  # [N, V]
    tokens = sample(logits, [params] * ROWS, [generator] * ROWS)
    observed = np.bincount(tokens.numpy(), minlength=len(LOGITS)) / ROWS
    expected = _reference(**options)
    # a frequency's standard deviation is at most sqrt(0.25 / 40000) = 0.0025: 5 sigma
    np.testing.assert_allclose(observed, expected, atol=0.0125)
    assert observed[expected == 0].sum() == 0  # filtered tokens are never drawn


def test_a_seed_reproduces_and_greedy_is_argmax() -> None:
    logits = torch.tensor(LOGITS, dtype=torch.float32).expand(64, -1)
    draws = [
        sample(logits, [SamplingParams()] * 64, [torch.Generator().manual_seed(7)] * 64) for _ in range(2)
    ]
    assert torch.equal(draws[0], draws[1])
    greedy = sample(logits, [SamplingParams(temperature=0)] * 64, [None] * 64)
    assert greedy.tolist() == [0] * 64


def test_penalties() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0]])
    repeated = apply_penalties(logits, [SamplingParams(repetition_penalty=2.0)], [[0]], [[1]])
    assert repeated.tolist() == [[1.0, -2.0, 0.5, 0.0]]  # HF: divide positive logits, multiply negative ones
    penalized = apply_penalties(
        logits, [SamplingParams(presence_penalty=0.5, frequency_penalty=0.25)], [[0, 1, 2]], [[2, 2, 3]]
    )
    assert penalized.tolist() == [
        [2.0, -1.0, 0.5 - 0.5 - 0.5, 0.0 - 0.25 - 0.5]
    ]  # OpenAI: output tokens only
    assert apply_penalties(logits, [SamplingParams()], [[0]], [[0]]) is logits


@pytest.mark.parametrize(
    "options",
    [{"temperature": -1}, {"top_p": 0}, {"top_k": -1}, {"min_p": 2}, {"max_tokens": 0}, {"n": 0}, {"stop": ("",)},
     {"top_logprobs": 21}, {"presence_penalty": 3}],
)  # fmt: skip
def test_bad_params_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="SamplingParams"):
        SamplingParams(**options)  # type: ignore[arg-type]


def test_a_lone_stop_string_is_one_stop_string() -> None:
    assert SamplingParams(stop="END").stop == ("END",)  # type: ignore[arg-type]
