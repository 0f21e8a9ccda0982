"""Pre-tokenization of byte-level BPE: the GPT-2 split, and the single-digit split some models add.

The GPT-2 pattern is written as a small scanner over Unicode categories, so that no `regex`
dependency is needed for `\\p{L}` and `\\p{N}`:

    's|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

__all__ = ["DIGIT_SPLIT_PRE_TYPES", "GPT2_PRE_TYPES", "split_digits", "split_gpt2"]

# llama.cpp `tokenizer.ggml.pre` values that use "\\p{N}" then the GPT-2 pattern (llama-vocab.cpp)
DIGIT_SPLIT_PRE_TYPES = frozenset(
    {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"}
)
GPT2_PRE_TYPES = frozenset(
    {"gpt2", "default", "gpt-2", "phi-2", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de"}
)
_CONTRACTIONS = ("s", "t", "re", "ve", "m", "ll", "d")
_LETTER, _NUMBER, _SPACE, _OTHER = 0, 1, 2, 3


@lru_cache(maxsize=65536)
def _kind(char: str) -> int:
    category = unicodedata.category(char)
    if category[0] == "L":
        return _LETTER
    if category[0] == "N":
        return _NUMBER
    # `\s` is Unicode White_Space; str.isspace() also counts U+001C..U+001F, which are not
    if char.isspace() and not "\x1c" <= char <= "\x1f":
        return _SPACE
    return _OTHER


def split_digits(text: str) -> list[str]:
    """Split out every `\\p{N}` character as a piece of its own, keeping the text between."""
    pieces: list[str] = []
    start = 0
    for index, char in enumerate(text):
        if _kind(char) == _NUMBER:
            if start < index:
                pieces.append(text[start:index])
            pieces.append(char)
            start = index + 1
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def _run(text: str, start: int, kind: int) -> int:
    end = start
    while end < len(text) and _kind(text[end]) == kind:
        end += 1
    return end


def _contraction(text: str, index: int) -> int:
    for suffix in _CONTRACTIONS:
        if text.startswith(suffix, index + 1):
            return index + 1 + len(suffix)
    return index


def split_gpt2(text: str) -> list[str]:
    """Split `text` as the GPT-2 pattern above does."""
    pieces: list[str] = []
    index, length = 0, len(text)
    while index < length:
        char = text[index]
        end = _contraction(text, index) if char == "'" else index
        if end == index:
            head = (
                index + 1
                if char == " " and index + 1 < length and _kind(text[index + 1]) != _SPACE
                else index
            )
            kind = _kind(text[head])
            if kind != _SPACE:
                end = _run(text, head, kind)
            else:
                stop = _run(text, index, _SPACE)
                # \s+(?!\S): leave the last space to prefix the next word, unless the text ends here
                end = stop if stop == length or stop - index == 1 else stop - 1
        pieces.append(text[index:end])
        index = end
    return pieces
