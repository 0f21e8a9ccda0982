"""One sequence being generated: its tokens, its KV cache blocks, and its streaming text state."""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch

from local_engine.sampling import SamplingParams
from local_engine.tokenizer import Detokenizer, Tokenizer

__all__ = ["Sequence", "SequenceStatus", "TokenEvent", "TopLogprob", "first_stop"]


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class TopLogprob:
    """One alternative token: `token` is its text (lossy for part of a UTF-8 character), `token_bytes` exact."""

    token_id: int
    token: str
    logprob: float
    token_bytes: bytes = b""


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One step of one sequence's stream.

    `text_delta` may be empty (a UTF-8 character or a possible stop string is held back) and the
    last event has `finish_reason` "stop" or "length"; `index` tells the `n` choices apart. The
    last event also carries the sequence's usage: `prompt_tokens` and `completion_tokens` (the
    tokens generated, an end-of-turn token included, as vLLM counts them).
    """

    text_delta: str
    token_id: int | None
    logprob: float | None = None
    top_logprobs: tuple[TopLogprob, ...] | None = None
    finish_reason: str | None = None
    index: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    """Where the text is cut: before the first stop string to be completed, reading left to right
    (of stops completed at the same character, the longest); None when no stop occurs."""
    hits = [(start + len(stop), start) for stop in stops if (start := text.find(stop)) >= 0]
    if not hits:
        return None
    end = min(hit_end for hit_end, _ in hits)
    return min(start for hit_end, start in hits if hit_end == end)


class Sequence:
    """A prompt and its growing output; owned by the scheduler, touched only by the engine thread."""

    def __init__(self, request_id: str, index: int, prompt_ids: list[int], params: SamplingParams,
                 tokenizer: Tokenizer, generator: torch.Generator | None) -> None:  # fmt: skip
        self.request_id, self.index, self.params = request_id, index, params
        self.prompt_ids, self.output_ids = prompt_ids, []  # type: list[int], list[int]
        self.status = SequenceStatus.WAITING
        self.block_table: list[int] = []  # KV cache blocks, in position order
        self.block_hashes: list[int] = []  # chain hashes of the full prompt blocks computed so far
        self.num_computed = 0  # tokens whose K/V are in the cache
        self.generator = generator
        self.finish_reason: str | None = None
        self.stop_ids = frozenset(params.stop_token_ids) | (
            frozenset() if params.ignore_eos else tokenizer.stop_ids
        )
        self._detokenizer = Detokenizer(tokenizer, skip_special=params.skip_special_tokens)
        self._pending = ""  # text held back: it may be the start of a stop string

    @property
    def num_tokens(self) -> int:
        return len(self.prompt_ids) + len(self.output_ids)

    def token_ids(self, start: int, end: int) -> list[int]:
        """Tokens `start:end` of prompt + output."""
        prompt = len(self.prompt_ids)
        if end <= prompt:
            return self.prompt_ids[start:end]
        return self.prompt_ids[start:] + self.output_ids[max(start - prompt, 0) : end - prompt]

    @property
    def last_token(self) -> int:
        return self.output_ids[-1] if self.output_ids else self.prompt_ids[-1]

    def append(self, token_id: int, max_len: int) -> tuple[str, bool]:
        """Add a sampled token; return (text to emit, whether this token is part of the output)."""
        if token_id in self.stop_ids:
            self.finish_reason = "stop"
            return self._pending + self._detokenizer.flush(), False
        self.output_ids.append(token_id)
        text = self._take_text(self._pending + self._detokenizer.push(token_id))
        if self.finish_reason is None and (
            (self.params.max_tokens is not None and len(self.output_ids) >= self.params.max_tokens)
            or self.num_tokens >= max_len
        ):
            self.finish_reason = "length"
            text += self._pending + self._detokenizer.flush()
            self._pending = ""
        return text, True

    def _take_text(self, text: str) -> str:
        """Emit `text` up to a stop string (finishing) or up to a suffix that could begin one."""
        if not self.params.stop:
            self._pending = ""
            return text
        start = first_stop(text, self.params.stop)
        if start is not None:
            self.finish_reason, self._pending = "stop", ""
            return text[:start]
        hold = 0
        for stop in self.params.stop:
            for size in range(min(len(stop) - 1, len(text)), hold, -1):
                if text.endswith(stop[:size]):
                    hold = size
                    break
        self._pending = text[len(text) - hold :]
        return text[: len(text) - hold]
