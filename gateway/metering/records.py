"""Usage records: one per attempt that consumed tokens, priced, attributed, idempotent.

A record's identity is ``(request_id, attempt)``, written ``record_id = "<request_id>:<attempt>"``;
every sink stores a record id once, so replaying a record changes nothing.

Who: ``user`` is the request's ``user`` field; ``team`` is ``metadata["team"]``; ``tags`` are the
other ``metadata`` entries; ``key_id`` names the API key that paid for the attempt without revealing
it: ``key_`` + the first 12 hex digits of its SHA-256 (the key never leaves the process).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from gateway._redact import redact
from gateway.state.base import UsageRecord as StateUsageRecord

__all__ = ["Outcome", "UsageRecord", "api_key_id", "outcome_of"]

Outcome = Literal["ok", "partial", "error"]
TEAM_KEY = "team"
NO_KEY = "-"


def api_key_id(api_key: str | None) -> str:
    """A short, non-reversible name for an API key: ``key_`` + 12 hex digits of its SHA-256.

    Example:
        >>> api_key_id("sk-example-not-a-real-key")
        'key_bf2b742f77bc'
        >>> api_key_id(None)
        '-'
    """
    if not api_key:
        return NO_KEY
    return "key_" + hashlib.sha256(api_key.encode()).hexdigest()[:12]


def outcome_of(attempt_outcome: str) -> Outcome:
    """``ok``; ``partial`` for an attempt cut short after content (a cut stream, a stream the caller
    closed, a hedge cancelled because another attempt won); else ``error``."""
    if attempt_outcome == "ok":
        return "ok"
    if attempt_outcome in ("partial", "closed", "cancelled"):
        return "partial"
    return "error"


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What one attempt consumed and cost.

    Attributes:
        request_id: The gateway's id of the request (shared by its attempts).
        attempt: The attempt's index within the request, from 0.
        ts: When the attempt ended, Unix seconds.
        user: The request's ``user``, if any.
        key_id: The paying API key's short hash (see :func:`api_key_id`), ``-`` when none.
        team: ``metadata["team"]``, or ``""``.
        tags: The other ``metadata`` entries, sorted ``(name, value)`` pairs.
        route: The policy route, or ``""`` for a direct model.
        model: The model as the policy or catalog names it (``openai/gpt-4o-mini``) or as asked.
        provider: The deployment that served the attempt (``openai``, ``groq``, …).
        prompt_tokens: All prompt tokens, cached ones included.
        cached_tokens: Prompt tokens served from the provider's cache.
        completion_tokens: All completion tokens, reasoning ones included.
        reasoning_tokens: Completion tokens spent on reasoning.
        cost_usd: USD, or ``None`` when the model has no price.
        latency_s: The attempt's duration.
        ttft_s: Time to the first content chunk of a stream.
        outcome: ``ok``, ``partial`` or ``error``.
        status_code: The upstream HTTP status, when there was one.
        estimated: ``True`` when the tokens were counted by the gateway, not reported upstream.
        cache_write_tokens: Prompt tokens written to the provider's cache (billed apart).
        cache_write_1h_tokens: Of those, the ones written with a 1-hour TTL.
        policy_revision: The digest of the policy version the request was planned under (a
            hot-reloaded policy changes it), ``None`` without a policy.
    """

    request_id: str
    attempt: int
    ts: float
    model: str
    provider: str
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal | None = None
    user: str | None = None
    key_id: str = NO_KEY
    team: str = ""
    tags: tuple[tuple[str, str], ...] = ()
    route: str = ""
    latency_s: float = 0.0
    ttft_s: float | None = None
    outcome: Outcome = "ok"
    status_code: int | None = None
    estimated: bool = False
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    policy_revision: str | None = None

    @property
    def record_id(self) -> str:
        """``<request_id>:<attempt>``: the key every sink deduplicates on."""
        return f"{self.request_id}:{self.attempt}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: cost as a string (exact), tags as an object."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["cost_usd"] = None if self.cost_usd is None else str(self.cost_usd)
        fields["tags"] = dict(self.tags)
        return fields

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys), so equal records are equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UsageRecord:
        """The inverse of :meth:`to_dict`."""
        fields = dict(data)
        fields["cost_usd"] = None if fields.get("cost_usd") is None else Decimal(fields["cost_usd"])
        fields["tags"] = tuple(sorted((fields.get("tags") or {}).items()))
        return cls(**fields)

    def to_state(self) -> StateUsageRecord:
        """The state layer's record (``StateBackend.append_usage``): the fields its totals group by,
        and what ``switchyard replay`` re-plans from (attempt, latency, ttft, outcome, tags).

        An unpriced record is stored with cost 0 there (its column is not nullable); the warning was
        logged when it was priced, and the full record keeps ``None``.
        """
        return StateUsageRecord(
            record_id=self.record_id,
            ts=self.ts,
            team=self.team,
            key=self.key_id,
            route=self.route,
            provider=self.provider,
            model=self.model,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            cost_usd=self.cost_usd if self.cost_usd is not None else Decimal(0),
            attempt=self.attempt,
            latency_s=self.latency_s,
            ttft_s=self.ttft_s,
            outcome=self.outcome,
            tags=self.tags,
            policy_revision=self.policy_revision,
        )


def split_metadata(metadata: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    """``(team, tags)`` from a request's metadata; values pass through the redaction function."""
    team = redact(str(metadata.get(TEAM_KEY, "")))
    tags = tuple(sorted((str(k), redact(str(v))) for k, v in metadata.items() if k != TEAM_KEY))
    return team, tags
