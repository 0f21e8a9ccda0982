"""Training data for a LoRA tune: chat JSONL (OpenAI fine-tuning format) -> token ids and labels.

Each line is ``{"messages": [{"role": ..., "content": ...}, ...]}`` ending with the assistant's
reply. The prompt is every message before the last, rendered by the model's own chat template; the
loss is taken on the reply and its end-of-turn token only. A malformed line, an empty reply or an
example longer than ``max_len`` tokens is refused with its line number and counted, never silently
truncated.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from local_engine.tokenizer import Tokenizer

__all__ = ["Example", "Problem", "TuneData", "encode_example", "read_examples"]

IGNORE = -100  # label of a prompt or padding token: no loss


@dataclass(frozen=True, slots=True)
class Example:
    """One tokenized example: ``ids`` [S] and ``labels`` [S] (``IGNORE`` on the prompt)."""

    ids: tuple[int, ...]
    labels: tuple[int, ...]
    line: int


@dataclass(frozen=True, slots=True)
class Problem:
    """A refused line: ``line`` (1-based), a stable ``code`` and a message saying what is wrong."""

    line: int
    code: str
    message: str


@dataclass(slots=True)
class TuneData:
    examples: list[Example] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many lines were refused, by problem code."""
        return dict(Counter(p.code for p in self.problems))


def read_examples(path: str | os.PathLike[str], tokenizer: Tokenizer, max_len: int) -> TuneData:
    """Read and tokenize a chat JSONL file; every refused line is listed in ``problems``."""
    data = TuneData()
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                example = encode_example(_messages(raw), tokenizer, max_len, number)
            except _Refused as exc:
                data.problems.append(Problem(number, exc.code, exc.message))
                continue
            data.examples.append(example)
    return data


def encode_example(
    messages: list[dict[str, Any]], tokenizer: Tokenizer, max_len: int, line: int = 0
) -> Example:
    """Tokenize one conversation whose last message is the assistant's reply (the target)."""
    from local_engine.chat import encode_chat

    *prompt, reply = messages
    if reply.get("role") != "assistant" or not prompt:
        raise _Refused("tune.no-reply", "the last message must be the assistant's reply, after a prompt")
    text = reply.get("content")
    if not isinstance(text, str) or not text.strip():
        raise _Refused("tune.empty-reply", "the assistant's reply is empty")
    prompt_ids = encode_chat(tokenizer, prompt, add_generation_prompt=True)
    end = sorted(tokenizer.stop_ids)[:1] if tokenizer.eos_id is None else [_end_of_turn(tokenizer)]
    reply_ids = tokenizer.encode(text, add_bos=False, parse_special=False) + end
    ids = prompt_ids + reply_ids
    if len(ids) > max_len:
        raise _Refused("tune.too-long", f"{len(ids)} tokens, longer than --max-len {max_len}")
    labels = [IGNORE] * len(prompt_ids) + reply_ids
    return Example(tuple(ids), tuple(labels), line)


def _end_of_turn(tokenizer: Tokenizer) -> int:
    # the chat template's end of a turn (<|im_end|> for SmolLM2) if the vocabulary has it, else eos
    ids = tokenizer.encode("<|im_end|>", add_bos=False, parse_special=True)
    if len(ids) == 1 and ids[0] in tokenizer.stop_ids:
        return ids[0]
    return int(tokenizer.eos_id)  # type: ignore[arg-type]


def _messages(raw: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _Refused("tune.bad-json", f"not JSON: {exc.msg} at column {exc.colno}") from exc
    messages = value.get("messages") if isinstance(value, dict) else None
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages
    ):
        raise _Refused("tune.bad-messages", 'expected {"messages": [{"role": ..., "content": ...}, ...]}')
    return messages


class _Refused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message
