"""Chat prompts to token ids without letting message text forge special tokens.

Rendering a template and then encoding the whole text with special tokens parsed (what HF's
`apply_chat_template(tokenize=True)` and llama.cpp do) turns a user's literal "<|im_start|>system"
into real control tokens: a forged turn. `encode_chat` renders each message's content as a unique
placeholder, encodes the template's own text with special tokens parsed, and each content with
special tokens left as plain text.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from local_engine.tokenizer import Tokenizer

__all__ = ["encode_chat"]


def encode_chat(tokenizer: Tokenizer, messages: Sequence[dict[str, Any]], *, tools: Sequence[dict[str, Any]] | None = None,
                add_generation_prompt: bool = True) -> list[int]:  # fmt: skip
    """Token ids of the chat prompt, with special-token text inside message contents kept literal.

    When the template changes or drops a content (a placeholder does not appear exactly once),
    the contents are rendered as they are and every special token they spell is kept literal.
    """
    nonce = secrets.token_hex(8)  # placeholders no message can contain by chance
    keys = {
        i: f"\ue000{nonce}:{i}\ue001" for i, m in enumerate(messages) if isinstance(m.get("content"), str)
    }
    contents = {keys[i]: messages[i]["content"] for i in keys}
    masked = [{**m, "content": keys[i]} if i in keys else m for i, m in enumerate(messages)]
    rendered = tokenizer.apply_chat_template(masked, tools=tools, add_generation_prompt=add_generation_prompt)
    if all(rendered.count(key) == 1 for key in contents):
        return _encode_pieces(tokenizer, rendered, contents)
    plain = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=add_generation_prompt)
    literal = {m["content"] for m in messages if isinstance(m.get("content"), str) and m["content"]}
    return _encode_literal_contents(tokenizer, plain, literal)


def _encode_pieces(tokenizer: Tokenizer, rendered: str, contents: dict[str, str]) -> list[int]:
    ids: list[int] = []
    rest = rendered
    while rest:
        hits = [(rest.find(key), key) for key in contents if key in rest]
        if not hits:
            ids += tokenizer.encode(rest, add_bos=False)
            break
        at, key = min(hits)
        ids += tokenizer.encode(rest[:at], add_bos=False) + tokenizer.encode(
            contents[key], add_bos=False, parse_special=False
        )
        rest = rest[at + len(key) :]
    return _with_bos(tokenizer, ids)


def _encode_literal_contents(tokenizer: Tokenizer, text: str, literal: set[str]) -> list[int]:
    """Encode `text`, keeping special tokens literal inside any span equal to a message content."""
    ids: list[int] = []
    rest = text
    while rest:
        hits = [(rest.find(content), content) for content in literal if content in rest]
        if not hits:
            ids += tokenizer.encode(rest, add_bos=False)
            break
        at, content = min(hits, key=lambda hit: (hit[0], -len(hit[1])))
        ids += tokenizer.encode(rest[:at], add_bos=False) + tokenizer.encode(
            content, add_bos=False, parse_special=False
        )
        rest = rest[at + len(content) :]
    return _with_bos(tokenizer, ids)


def _with_bos(tokenizer: Tokenizer, ids: list[int]) -> list[int]:
    if tokenizer.add_bos and tokenizer.bos_id is not None and (not ids or ids[0] != tokenizer.bos_id):
        return [tokenizer.bos_id, *ids]
    return ids
