"""Metering a stream whatever the caller asked: the usage the core asks upstream for, and the estimate.

The core meters every stream of a client that has a policy. It asks the upstream for the stream's
usage (``stream_options.include_usage: true``; Anthropic and Gemini report it in-band, and their
translations emit the same usage chunk), and the stream's attempts keep that chunk from a caller who
did not ask for it (``gateway.core.attempts.StreamMetering``). A stream cut upstream or closed by the
caller before its usage arrived is counted here: the prompt with the candidate's tokenizer
(``tokens.count_chat``), the completion from the text that arrived, marked estimated.
"""

from __future__ import annotations

import threading

from gateway.core.attempts import Candidate, StreamMetering
from gateway.core.types import ChatRequest
from gateway.metering.tokens import count_chat

__all__ = ["ask_for_usage", "stream_metering"]


def stream_metering(req: ChatRequest) -> StreamMetering:
    """How to meter ``req``'s stream; call before :func:`ask_for_usage` changes its options."""
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def prompt_tokens(candidate: Candidate) -> int:
        with lock:
            found = counts.get(candidate.name)
        if found is None:
            found = count_chat(req.messages, candidate.name, req.tools).tokens
            with lock:
                counts[candidate.name] = found
        return found

    return StreamMetering(caller_wants_usage=req.wants_usage_in_stream, prompt_tokens=prompt_tokens)


def ask_for_usage(req: ChatRequest) -> None:
    """Ask every upstream of ``req`` for the stream's usage (``stream_options.include_usage``)."""
    if not req.wants_usage_in_stream:
        req.stream_options = {**(req.stream_options or {}), "include_usage": True}
