"""Sampling parameters and the sampler: penalties, temperature, top-k, top-p, min-p, then a draw.

The draw is the exponential race (gpt-fast's `multinomial_sample_one_no_sync`): with
q ~ Exp(1), argmax(p / q) is distributed as p, and no value leaves the device to make it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SamplingParams", "apply_penalties", "sample"]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to pick tokens and when to stop. `temperature=0` is greedy; `top_k=0` means no top-k."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    max_tokens: int | None = 256
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    ignore_eos: bool = False
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    skip_special_tokens: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):  # a lone string is one stop string, not its characters
            object.__setattr__(self, "stop", (self.stop,))
        checks = [
            (self.temperature >= 0, "temperature must be >= 0"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.top_k >= 0, "top_k must be >= 0 (0 turns it off)"),
            (0 <= self.min_p <= 1, "min_p must be in [0, 1]"),
            (-2 <= self.presence_penalty <= 2, "presence_penalty must be in [-2, 2]"),
            (-2 <= self.frequency_penalty <= 2, "frequency_penalty must be in [-2, 2]"),
            (self.repetition_penalty > 0, "repetition_penalty must be > 0"),
            (self.max_tokens is None or self.max_tokens >= 1, "max_tokens must be >= 1"),
            (1 <= self.n <= 64, "n must be in [1, 64]"),
            (0 <= self.top_logprobs <= 20, "top_logprobs must be in [0, 20]"),
            (all(isinstance(s, str) and s for s in self.stop), "stop strings must be non-empty strings"),
            (len(self.stop) <= 16, "at most 16 stop strings"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"SamplingParams: {message}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def apply_penalties(logits: Tensor, params: Sequence[SamplingParams], prompts: Sequence[Sequence[int]],
                    outputs: Sequence[Sequence[int]]) -> Tensor:  # fmt: skip
    """Repetition (HF: prompt and output), presence and frequency (OpenAI: output) penalties.

    logits: [B, V]; returns a new tensor only when some row has a penalty.
    """
    rows = [
        i
        for i, p in enumerate(params)
        if p.repetition_penalty != 1 or p.presence_penalty or p.frequency_penalty
    ]
    if not rows:
        return logits
    logits = logits.clone()
    vocab = logits.shape[-1]
    for i in rows:
        p = params[i]
        if p.repetition_penalty != 1:
            seen = torch.tensor(
                sorted({*prompts[i], *outputs[i]}), dtype=torch.long, device=logits.device
            )  # [n_seen]
            values = logits[i, seen]
            logits[i, seen] = torch.where(
                values > 0, values / p.repetition_penalty, values * p.repetition_penalty
            )
        if (p.presence_penalty or p.frequency_penalty) and outputs[i]:
            ids = torch.tensor(list(outputs[i]), dtype=torch.long, device=logits.device)
            counts = torch.bincount(ids, minlength=vocab)[:vocab].to(logits.dtype)  # [V]
            logits[i] -= counts * p.frequency_penalty + (counts > 0).to(logits.dtype) * p.presence_penalty
    return logits


def _filter(logits: Tensor, params: Sequence[SamplingParams]) -> Tensor:
    """Mask logits ([B, V], already divided by temperature) outside top-k, top-p and min-p with -inf.

    Which filters run is decided from `params` on the host, so no value is read back from the device.
    """
    vocab, device = logits.shape[-1], logits.device
    if any(p.top_k > 0 or p.top_p < 1 for p in params):
        top_p = torch.tensor([p.top_p for p in params], device=device)  # [B]
        k = torch.tensor([p.top_k if p.top_k > 0 else vocab for p in params], device=device)  # [B]
        ordered, order = logits.sort(dim=-1, descending=True)  # [B, V]
        rank = torch.arange(vocab, device=device)[None, :]  # [1, V]
        probs = ordered.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass strictly before each token: [B, V]
        drop = (rank >= k[:, None]) | ((before > top_p[:, None]) & (rank > 0))  # the top token always stays
        ordered = ordered.masked_fill(drop, float("-inf"))
        logits = torch.empty_like(logits).scatter_(-1, order, ordered)
    if any(p.min_p > 0 for p in params):
        min_p = torch.tensor([p.min_p for p in params], device=device)  # [B]
        probs = logits.softmax(dim=-1)  # [B, V]
        logits = logits.masked_fill(
            probs < min_p[:, None] * probs.max(dim=-1, keepdim=True).values, float("-inf")
        )
    return logits


def _exponential(
    shape: tuple[int, ...], generators: Sequence[torch.Generator | None], device: torch.device
) -> Tensor:
    if len({id(g) for g in generators}) == 1:  # one generator for the whole batch: one draw
        return torch.empty(shape, device=device).exponential_(generator=generators[0])
    rows = [torch.empty(shape[1:], device=device).exponential_(generator=g) for g in generators]
    return torch.stack(rows)  # q: [B, V]


def sample(
    logits: Tensor, params: Sequence[SamplingParams], generators: Sequence[torch.Generator | None]
) -> Tensor:
    """Pick one token per row of logits ([B, V], penalties applied): token ids [B], left on the device."""
    logits = logits.float()
    greedy_ids = logits.argmax(dim=-1)  # [B]
    if all(p.greedy for p in params):
        return greedy_ids
    device = logits.device
    temperature = torch.tensor([p.temperature or 1.0 for p in params], device=device)  # [B]
    probs = _filter(logits / temperature[:, None], params).softmax(dim=-1)  # [B, V]
    q = _exponential(tuple(probs.shape), generators, device)  # [B, V]
    sampled = (probs / q).argmax(dim=-1)  # [B]
    if not any(p.greedy for p in params):
        return sampled
    greedy = torch.tensor([p.greedy for p in params], device=device)  # [B]
    return torch.where(greedy, greedy_ids, sampled)
