"""Eval results: one record per (case, model), a summary per model, and the statistics behind it.

A case ends in one of four states:

- ``ok``: the model answered and the scorer scored it;
- ``judge_error``: the judge's verdict was garbage; scored 0 (a *scored failure*);
- ``call_error``: the model call failed after its retries (an outage, a timeout, a 4xx): an error,
  not a score: the case is left out of the mean and counted as a failure with the exception, so
  an outage cannot pass for a model that answers wrong (the runner stores no summary for a model
  with call errors unless asked to, see ``run_eval(allow_errors=)``);
- ``scorer_error``: the scorer raised; the case is left out of the mean (the model is not to
  blame) and counted as a failure with the exception.

The mean's 95% confidence interval is Student's t over the scored cases, clipped to 0..1.
Latency percentiles are linear interpolations (numpy's default) over the answered cases.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Literal

__all__ = ["CaseResult", "ModelSummary", "confidence_interval", "percentile", "summarise"]

CaseStatus = Literal["ok", "judge_error", "call_error", "scorer_error"]
SCORED: frozenset[str] = frozenset({"ok", "judge_error"})

# Two-sided 95% critical values of Student's t by degrees of freedom; 1.96 beyond the table.
_T95 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
    10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110,
    18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class CaseResult:
    """What one model did on one case.

    Attributes:
        case_id: The case.
        model: The model, by its canonical name.
        status: ``ok``, ``judge_error``, ``call_error`` or ``scorer_error`` (see the module doc).
        score: 0..1; ``None`` for ``call_error`` and ``scorer_error``.
        reason: The scorer's reason, or the error.
        output: The model's text (tool calls as ``name(arguments)``), cut to 2,000 characters.
        cost_usd: The model call's cost, ``None`` when unpriced or failed.
        judge_cost_usd: The judge call's cost, if a judge was called.
        latency_s: The model call's duration; ``None`` when it failed.
        prompt_tokens: Reported prompt tokens.
        completion_tokens: Reported completion tokens.
        error: The exception, as ``Type: message``, for failures.
    """

    case_id: str
    model: str
    status: CaseStatus
    score: float | None
    reason: str = ""
    output: str = ""
    cost_usd: Decimal | None = None
    judge_cost_usd: Decimal | None = None
    latency_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (decimals as strings)."""
        data = asdict(self)
        for key in ("cost_usd", "judge_cost_usd"):
            data[key] = None if data[key] is None else str(data[key])
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CaseResult:
        """The inverse of :meth:`to_json`."""
        values = dict(data)
        for key in ("cost_usd", "judge_cost_usd"):
            values[key] = None if values.get(key) is None else Decimal(str(values[key]))
        return cls(**values)


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """One model's result on one set: what the store keeps and the router reads.

    Attributes:
        eval_set: The set's name.
        set_version: The set's version.
        model: The model's canonical name.
        cases: Cases run.
        scored: Cases in the mean (``ok`` and ``judge_error``; errors are left out).
        mean: Mean score over the scored cases (0 when none).
        ci_low: Lower end of the 95% confidence interval of the mean.
        ci_high: Upper end.
        cost_per_case_usd: Mean cost of the answered, priced cases; ``None`` if none was priced.
        judge_cost_usd: Total cost of the judge calls.
        latency_p50_s: Median latency of the answered cases.
        latency_p95_s: 95th percentile latency.
        failures: Cases that were not ``ok``.
        failure_examples: Up to five ``case_id: error`` lines.
        finished_at: When the run finished, Unix seconds.
    """

    eval_set: str
    set_version: str
    model: str
    cases: int
    scored: int
    mean: float
    ci_low: float
    ci_high: float
    cost_per_case_usd: Decimal | None
    judge_cost_usd: Decimal
    latency_p50_s: float | None
    latency_p95_s: float | None
    failures: int
    finished_at: float
    failure_examples: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (decimals as strings)."""
        data = asdict(self)
        data["cost_per_case_usd"] = None if self.cost_per_case_usd is None else str(self.cost_per_case_usd)
        data["judge_cost_usd"] = str(self.judge_cost_usd)
        data["failure_examples"] = list(self.failure_examples)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelSummary:
        """The inverse of :meth:`to_json`."""
        values = dict(data)
        cost = values.get("cost_per_case_usd")
        values["cost_per_case_usd"] = None if cost is None else Decimal(str(cost))
        values["judge_cost_usd"] = Decimal(str(values.get("judge_cost_usd") or "0"))
        values["failure_examples"] = tuple(values.get("failure_examples") or ())
        return cls(**values)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation; ``None`` for no values.

    Example:
        >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
        2.5
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def confidence_interval(scores: Sequence[float]) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean and its 95% Student-t interval, clipped to 0..1.

    Example:
        >>> [round(x, 3) for x in confidence_interval([1.0, 0.0, 1.0, 1.0])]
        [0.75, 0.0, 1.0]
    """
    n = len(scores)
    if n == 0:
        return 0.0, 0.0, 0.0
    mean = sum(scores) / n
    if n == 1:
        return mean, 0.0, 1.0  # one sample says nothing about spread
    variance = sum((s - mean) ** 2 for s in scores) / (n - 1)
    df = n - 1
    t = _T95.get(df) or next((v for k, v in sorted(_T95.items()) if k >= df), 1.96)
    half = t * math.sqrt(variance / n)
    return mean, max(0.0, mean - half), min(1.0, mean + half)


def summarise(
    eval_set: str, set_version: str, model: str, results: Iterable[CaseResult], *, finished_at: float
) -> ModelSummary:
    """Fold one model's case results into its summary."""
    rows = list(results)
    scores = [r.score for r in rows if r.status in SCORED and r.score is not None]
    mean, low, high = confidence_interval(scores)
    costs = [r.cost_usd for r in rows if r.cost_usd is not None and r.latency_s is not None]
    latencies = [r.latency_s for r in rows if r.latency_s is not None]
    failed = [r for r in rows if r.status != "ok"]
    return ModelSummary(
        eval_set=eval_set,
        set_version=set_version,
        model=model,
        cases=len(rows),
        scored=len(scores),
        mean=mean,
        ci_low=low,
        ci_high=high,
        cost_per_case_usd=(sum(costs, Decimal(0)) / len(costs)) if costs else None,
        judge_cost_usd=sum((r.judge_cost_usd for r in rows if r.judge_cost_usd is not None), Decimal(0)),
        latency_p50_s=percentile(latencies, 50),
        latency_p95_s=percentile(latencies, 95),
        failures=len(failed),
        finished_at=finished_at,
        failure_examples=tuple(f"{r.case_id}: {r.error or r.reason}" for r in failed[:5]),
    )
