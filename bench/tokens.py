"""Cost of counting a chat's prompt tokens (``count_chat``) as a ratio to tiktoken encoding the same text.

``count_chat`` runs on every request whose upstream may not report usage (the reservation and the
estimate of a cut stream), so its cost beside the encoder it wraps is what matters: the peer is
``tiktoken``'s own ``encode`` of the messages' contents, measured in the same run, interleaved.

Usage:
    python bench/tokens.py [--calls 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from gateway.metering import count_chat, encoding_for  # noqa: E402
from gateway.metering.tokens import _load  # noqa: E402

SHORT = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the capital of France?"},
]
LONG = [
    {"role": "system", "content": "You are a careful assistant. " * 20},
    *(
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"Turn {i}: " + "some words here " * 30}
        for i in range(10)
    ),
]


def per_call_us(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    loaded = _load(encoding_for("gpt-4o-mini"))  # the encoder count_chat itself uses
    encoding = loaded.encoder
    assert encoding is not None, "no tiktoken encoding could be loaded"
    print(f"encoding: {loaded.name}")
    print("| chat | tiktoken encode, µs | count_chat, µs | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, messages in (("2 short messages", SHORT), ("11 messages, ~2,000 tokens", LONG)):
        texts = [m["content"] for m in messages]
        count_chat(messages, "gpt-4o-mini")  # load the encoder
        peer, ours = [], []
        for _ in range(args.rounds):
            peer.append(per_call_us(lambda texts=texts: [encoding.encode(t) for t in texts], args.calls))
            ours.append(
                per_call_us(lambda messages=messages: count_chat(messages, "gpt-4o-mini"), args.calls)
            )
        p, o = statistics.median(peer), statistics.median(ours)
        print(f"| {name} | {p:.1f} | {o:.1f} | {o / p:.2f}x |")


if __name__ == "__main__":
    main()
