"""Scoring shadow copies: each copy's answer against the answer its request got, by an eval scorer.

A route with both ``shadow:`` and ``capture:`` keeps every shadowed request's answer and its copy's
(``gateway/core/shadow.py``: route ``shadow:<route>``, ``metadata.shadow_of`` the request's id). The
served answer is the reference: ``score_shadows`` pairs them and scores the copy with a scorer
(``exact``, ``contains``, ``json_schema``, ``judge`` with a judge, ``module:function``…), the case's
``expected`` being the served answer (a tool-call answer compares as a ``tool_call`` case). So the
number reads "how often the shadow model agrees with what the route serves", per shadow model,
with a 95 % interval; it is agreement, not correctness, unless the served model is the reference.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.capture.store import CapturedExample
from gateway.evals.scorers import Output, ScoringContext, ToolCallOutput, resolve_scorer
from gateway.evals.sets import EvalCase

__all__ = ["ShadowScore", "score_shadows"]


@dataclass(slots=True)
class ShadowScore:
    """One shadow model's agreement with the served answers of a route."""

    shadow_model: str
    served_models: set[str] = field(default_factory=set)
    scores: list[float] = field(default_factory=list)
    unpaired: int = 0  # copies whose request's answer was not captured

    @property
    def pairs(self) -> int:
        return len(self.scores)

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        """95 % (normal approximation on the mean; a Wilson interval for 0/1 scores)."""
        n = len(self.scores)
        if n == 0:
            return (0.0, 0.0)
        if all(s in (0.0, 1.0) for s in self.scores):
            p, z = self.mean, 1.96
            centre = (p + z * z / (2 * n)) / (1 + z * z / n)
            half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
            return (max(0.0, centre - half), min(1.0, centre + half))
        var = sum((s - self.mean) ** 2 for s in self.scores) / max(1, n - 1)
        half = 1.96 * math.sqrt(var / n)
        return (max(0.0, self.mean - half), min(1.0, self.mean + half))

    def to_json(self) -> dict[str, Any]:
        low, high = self.interval
        return {
            "shadow_model": self.shadow_model,
            "served_models": sorted(self.served_models),
            "pairs": self.pairs,
            "agreement": round(self.mean, 4),
            "interval_95": [round(low, 4), round(high, 4)],
            "unpaired": self.unpaired,
        }


def score_shadows(
    served: Iterable[CapturedExample],
    shadows: Iterable[CapturedExample],
    scorer: str | dict[str, Any] = "exact",
    ctx: ScoringContext | None = None,
) -> list[ShadowScore]:
    """Pair each shadow example with the served one it copies and score it; one result per shadow model."""
    by_id = {example.id: example for example in served}
    score = resolve_scorer(scorer)
    tool_score = resolve_scorer("tool_call")
    context = ctx or ScoringContext()
    results: dict[str, ShadowScore] = {}
    for shadow in shadows:
        result = results.setdefault(shadow.model or "?", ShadowScore(shadow.model or "?"))
        reference = by_id.get(str(shadow.metadata.get("shadow_of", "")))
        if reference is None:
            result.unpaired += 1
            continue
        result.served_models.add(reference.model or "?")
        case, by_tool = _case(reference)
        output = Output(shadow.completion or "", tuple(_calls(shadow.tool_calls)))
        verdict = (tool_score if by_tool else score)(output, case, context)
        result.scores.append(float(verdict.value))
    return [results[name] for name in sorted(results)]


def _case(reference: CapturedExample) -> tuple[EvalCase, bool]:
    if reference.tool_calls and not (reference.completion or "").strip():
        call = reference.tool_calls[0].get("function", {})
        try:
            arguments = json.loads(call.get("arguments") or "{}")
        except ValueError:
            arguments = {}
        expected = {"name": call.get("name"), "arguments": arguments}
        return EvalCase(reference.id, tuple(reference.messages), expected=expected), True
    return EvalCase(reference.id, tuple(reference.messages), expected=reference.completion or ""), False


def _calls(calls: list[dict[str, Any]] | None) -> Iterable[ToolCallOutput]:
    for call in calls or []:
        function = call.get("function", {})
        yield ToolCallOutput(str(function.get("name", "")), str(function.get("arguments") or ""))
