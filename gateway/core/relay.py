"""Relaying a body a provider speaks natively (the Responses API to OpenAI and Azure), metered.

The body goes upstream as written, with the deployment's model and key; the answer comes back as
received. What the core still owns: retries and fallback (in the executors' loops), metering
(usage read from the answer, or from the stream's ``response.completed`` event), and the
streaming contract: the stream's preamble events (``response.created``, ``response.in_progress``,
an item or part being opened) are held back until the first substantive event, so that a failure
before any content falls back transparently; after it, a failure is an interruption.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from gateway.core.attempts import Outcome
from gateway.core.errors import APIResponseValidationError
from gateway.core.types import CompletionUsage
from providers.base import ServerSentEvent, Target

PREAMBLE = frozenset(
    {
        "response.created",
        "response.in_progress",
        "response.queued",
        "response.output_item.added",
        "response.content_part.added",
    }
)


def encode_event(event: ServerSentEvent) -> bytes:
    head = f"event: {event.event}\n" if event.event else ""
    data = "".join(f"data: {line}\n" for line in event.data.split("\n"))
    return (head + data + "\n").encode()


@dataclass(slots=True)
class Relayed:
    """One relayed stream's progress: what was delivered, held back, and metered."""

    t0: float
    delivered: int = 0
    ttft_s: float | None = None
    usage: CompletionUsage | None = None
    final: bool = False
    held: list[bytes] = field(default_factory=list)

    def take(self, event: ServerSentEvent, module: Any, target: Target) -> list[bytes]:
        """The bytes to pass on for ``event`` (none while the preamble is held)."""
        final, usage = module.relay_event_usage(event, target)
        if final:
            self.final = True
            self.usage = usage
        encoded = encode_event(event)
        if not self.delivered and not final and _event_type(event) in PREAMBLE:
            self.held.append(encoded)
            return []
        out, self.held = [*self.held, encoded], []
        if self.ttft_s is None:
            self.ttft_s = time.perf_counter() - self.t0
        self.delivered += 1
        return out

    def end(self, target: Target) -> list[bytes]:
        if not self.final:
            raise APIResponseValidationError(
                f"{target.provider}: the stream ended before its final event (response.completed)", body=None
            )
        out, self.held = self.held, []
        return out

    def outcome(self, error: BaseException | None, *, closed: bool = False) -> Outcome:
        if closed:
            return Outcome(usage=self.usage, ttft_s=self.ttft_s, outcome="closed")
        if error is not None and self.delivered:
            return Outcome(
                usage=self.usage, ttft_s=self.ttft_s, outcome="partial", estimated=self.usage is None
            )
        return Outcome(usage=self.usage, ttft_s=self.ttft_s)


def _event_type(event: ServerSentEvent) -> str | None:
    if event.event:
        return event.event
    head = event.data[:80]
    marker = '"type":'
    at = head.find(marker)
    if at < 0:
        return None
    rest = head[at + len(marker) :].lstrip().lstrip('"')
    return rest.split('"', 1)[0]
