"""Byte-level BPE tokenizer built from GGUF `tokenizer.ggml.*` metadata, and streaming detokenization.

Pre-tokenization follows llama.cpp for the `tokenizer.ggml.pre` of the file (for `smollm`: each
digit on its own, then the GPT-2 split). Special tokens (control and user-defined) are matched in
the text first when `parse_special` is true.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from local_engine.chat_template import ChatTemplate
from local_engine.errors import ChatTemplateError, UnsupportedModelError
from local_engine.pretokenize import DIGIT_SPLIT_PRE_TYPES, GPT2_PRE_TYPES, split_digits, split_gpt2

__all__ = ["Detokenizer", "Tokenizer"]

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
# llama.cpp's end-of-generation texts: generating one ends the turn, whatever `eos_token_id` says
_END_OF_TURN_TEXTS = frozenset(
    {
        "<|im_end|>",
        "<|eot_id|>",
        "<|end|>",
        "<end_of_turn>",
        "<|endoftext|>",
        "</s>",
        "<|end_of_text|>",
        "<|eom_id|>",
    }
)


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map of the 256 byte values to printable characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars, strict=True)}


class Tokenizer:
    """Encode and decode text; render chat prompts. Build one with `Tokenizer.from_gguf_metadata`."""

    def __init__(self, tokens: Sequence[str], merges: Sequence[str], token_types: Sequence[int] | None,
                 *, pre: str = "default", bos_id: int | None = None, eos_id: int | None = None,
                 add_bos: bool = False, chat_template: str | None = None) -> None:  # fmt: skip
        if pre not in DIGIT_SPLIT_PRE_TYPES | GPT2_PRE_TYPES:
            raise UnsupportedModelError(
                f"pre-tokenizer {pre!r} is not supported", code="tokenizer.unsupported-pre"
            )
        self.tokens = list(tokens)
        self.types = list(token_types) if token_types is not None else [NORMAL] * len(self.tokens)
        self.token_to_id = {token: index for index, token in enumerate(self.tokens)}
        self.ranks = {tuple(merge.split(" ", 1)): rank for rank, merge in enumerate(merges)}
        self.pre, self.bos_id, self.eos_id, self.add_bos = pre, bos_id, eos_id, add_bos
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {char: byte for byte, char in self.byte_encoder.items()}
        self.special_ids = {
            i for i, kind in enumerate(self.types) if kind in (CONTROL, USER_DEFINED) and self.tokens[i]
        }
        specials = sorted((self.tokens[i] for i in self.special_ids), key=len, reverse=True)
        self._special_pattern = (
            re.compile("(" + "|".join(map(re.escape, specials)) + ")") if specials else None
        )
        ends = {i for i in self.special_ids if self.tokens[i] in _END_OF_TURN_TEXTS}
        self.stop_ids = frozenset(ends | ({eos_id} if eos_id is not None else set()))
        # a template that does not compile fails chat requests, not the whole model's loading
        self.chat_template: ChatTemplate | None = None
        self._template_error: ChatTemplateError | None = None
        try:
            self.chat_template = (
                ChatTemplate(chat_template, self._template_specials()) if chat_template else None
            )
        except ChatTemplateError as exc:
            self._template_error = exc
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_gguf_metadata(cls, metadata: dict[str, Any]) -> Tokenizer:
        model = metadata.get("tokenizer.ggml.model")
        if model != "gpt2":
            raise UnsupportedModelError(
                f"tokenizer model {model!r} is not supported (byte-level BPE, 'gpt2', is)",
                code="tokenizer.unsupported",
            )
        _check_metadata(metadata)
        return cls(
            metadata["tokenizer.ggml.tokens"],
            metadata.get("tokenizer.ggml.merges", []),
            metadata.get("tokenizer.ggml.token_type"),
            pre=metadata.get("tokenizer.ggml.pre", "default"),
            bos_id=metadata.get("tokenizer.ggml.bos_token_id"),
            eos_id=metadata.get("tokenizer.ggml.eos_token_id"),
            add_bos=bool(metadata.get("tokenizer.ggml.add_bos_token", False)),
            chat_template=metadata.get("tokenizer.chat_template"),
        )

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def _template_specials(self) -> dict[str, str]:
        names = {"bos_token": self.bos_id, "eos_token": self.eos_id}
        return {
            name: self.tokens[i] for name, i in names.items() if i is not None and 0 <= i < len(self.tokens)
        }

    def encode(self, text: str, *, add_bos: bool | None = None, parse_special: bool = True) -> list[int]:
        """Token ids of `text`; `add_bos=None` follows the file's `add_bos_token`."""
        ids: list[int] = []
        chunks = self._special_pattern.split(text) if parse_special and self._special_pattern else [text]
        for index, chunk in enumerate(chunks):
            if index % 2 == 1 and parse_special:
                ids.append(self.token_to_id[chunk])
            elif chunk:
                ids.extend(self._encode_ordinary(chunk))
        want_bos = self.add_bos if add_bos is None else add_bos
        if want_bos and self.bos_id is not None and (not ids or ids[0] != self.bos_id):
            ids.insert(0, self.bos_id)
        return ids

    def _encode_ordinary(self, text: str) -> list[int]:
        pieces = split_digits(text) if self.pre in DIGIT_SPLIT_PRE_TYPES else [text]
        ids: list[int] = []
        for piece in pieces:
            for word in split_gpt2(piece):
                cached = self._cache.get(word)
                if cached is None:
                    cached = self._bpe("".join(self.byte_encoder[b] for b in word.encode("utf-8")))
                    if len(self._cache) < 100_000:
                        self._cache[word] = cached
                ids.extend(cached)
        return ids

    def _bpe(self, word: str) -> list[int]:
        parts = list(word)
        while len(parts) > 1:
            ranked = [
                (self.ranks.get(pair, -1), i) for i, pair in enumerate(zip(parts, parts[1:], strict=False))
            ]
            candidates = [(rank, i) for rank, i in ranked if rank >= 0]
            if not candidates:
                break
            best = min(candidates)[0]
            merged: list[str] = []
            i = 0
            while i < len(parts):
                if i + 1 < len(parts) and self.ranks.get((parts[i], parts[i + 1]), -1) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        ids: list[int] = []
        for part in parts:
            if part in self.token_to_id:
                ids.append(self.token_to_id[part])
            else:  # bytes the vocabulary lacks are dropped, as llama.cpp and HF tokenizers do
                ids.extend(self.token_to_id[char] for char in part if char in self.token_to_id)
        return ids

    def token_bytes(self, token_id: int, *, skip_special: bool = True) -> bytes:
        """The bytes one token stands for (a special token's own text unless skipped)."""
        if not 0 <= token_id < len(self.tokens):
            return b""
        text = self.tokens[token_id]
        if token_id in self.special_ids:
            return b"" if skip_special and self.types[token_id] == CONTROL else text.encode("utf-8")
        decoder = self.byte_decoder
        return bytes(decoder[char] for char in text if char in decoder)

    def decode(self, ids: Sequence[int], *, skip_special: bool = True) -> str:
        data = b"".join(self.token_bytes(token_id, skip_special=skip_special) for token_id in ids)
        return data.decode("utf-8", errors="replace")

    def count_tokens(self, text_or_messages: str | Sequence[dict[str, Any]], **template_kwargs: Any) -> int:
        """Tokens of a prompt text, or of chat messages rendered by the chat template."""
        if isinstance(text_or_messages, str):
            return len(self.encode(text_or_messages))
        return len(self.encode_chat(text_or_messages, **template_kwargs))

    def encode_chat(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None,
                    add_generation_prompt: bool = True) -> list[int]:  # fmt: skip
        """Token ids of a chat prompt; special-token text in message contents stays literal text.

        Prefer this to `encode(apply_chat_template(...))`, which lets a message forge turns.
        """
        from local_engine.chat import encode_chat

        return encode_chat(self, messages, tools=tools, add_generation_prompt=add_generation_prompt)

    def apply_chat_template(self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]] | None = None,
                            add_generation_prompt: bool = True, **extra: Any) -> str:  # fmt: skip
        """Render `messages` (OpenAI chat shape) with the model's chat template, as text.

        Raises:
            ChatTemplateError: the template failed, does not take tools that were given, or ran too long.
        """
        if self._template_error is not None:
            raise self._template_error
        if self.chat_template is None:
            raise UnsupportedModelError("this model has no chat template", code="tokenizer.no-chat-template")
        return self.chat_template.render(
            messages, tools=tools, add_generation_prompt=add_generation_prompt, **extra
        )


def _check_metadata(metadata: dict[str, Any]) -> None:
    """Raise ValueError when the tokenizer metadata is inconsistent (the loader adds the path)."""
    tokens, types = metadata.get("tokenizer.ggml.tokens"), metadata.get("tokenizer.ggml.token_type")
    merges = metadata.get("tokenizer.ggml.merges", [])
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) for t in tokens):
        raise ValueError("tokenizer.ggml.tokens must be a non-empty list of strings")
    if types is not None and (len(types) != len(tokens) or not all(isinstance(t, int) for t in types)):
        raise ValueError("tokenizer.ggml.token_type must hold one integer per token")
    if not isinstance(merges, list) or not all(isinstance(m, str) and m.count(" ") >= 1 for m in merges):
        raise ValueError("tokenizer.ggml.merges must be strings of two space-separated parts")
    for key in ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"):
        value = metadata.get(key)
        if value is not None and (not isinstance(value, int) or not 0 <= value < len(tokens)):
            raise ValueError(f"{key} = {value!r} is not a token id")
    template = metadata.get("tokenizer.chat_template")
    if template is not None and not isinstance(template, str):
        raise ValueError("tokenizer.chat_template must be a string")


class Detokenizer:
    """Turns token ids into text deltas for streaming; a split UTF-8 character waits for its rest."""

    def __init__(self, tokenizer: Tokenizer, *, skip_special: bool = True) -> None:
        self.tokenizer, self.skip_special = tokenizer, skip_special
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._decoder.decode(self.tokenizer.token_bytes(token_id, skip_special=self.skip_special))

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)
