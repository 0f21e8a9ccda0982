"""A/B splits: each arm of a route's ``split`` measured on live traffic, and the differences with
their 95 % confidence intervals (what ``switchyard eval report SET --split ROUTE`` prints).

The arm of a request is the model of its first logged attempt on the route (the usage records are
the experiment's log; an attempt that consumed no tokens left no record). Per arm:

- **cost per request** and **latency** (first attempt's start to last attempt's end): the mean and
  a Student-t interval; differences against the first arm by Welch's t (unequal variances);
- **errors**: the share of requests none of whose logged attempts answered;
- **quality**: the arm's scores on the route's eval set. Given the set's cases, the difference is
  paired over the cases both arms scored (a paired t interval); without them, each arm's stored
  mean and interval are shown and no difference is claimed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.evals.results import _T95
from gateway.state.base import UsageRecord

__all__ = ["Arm", "Estimate", "format_split", "mean_interval", "paired_difference", "split_arms", "welch"]

_SERVED = ("ok", "partial")


@dataclass(frozen=True, slots=True)
class Estimate:
    """A mean with its 95 % confidence interval over ``n`` observations (``low == high`` for n < 2
    only when every value is equal; a single value has an infinite interval)."""

    mean: float
    low: float
    high: float
    n: int


def _t(df: float) -> float:
    if df <= 0 or math.isinf(df):
        return 1.96
    whole = max(1, math.floor(df))
    return _T95.get(whole) or next((v for k, v in sorted(_T95.items()) if k >= whole), 1.96)


def mean_interval(values: Sequence[float]) -> Estimate:
    """The mean and its Student-t interval.

    Example:
        >>> e = mean_interval([1.0, 2.0, 3.0])
        >>> e.mean, round(e.low, 3), round(e.high, 3), e.n
        (2.0, -0.484, 4.484, 3)
    """
    n = len(values)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = sum(values) / n
    if n == 1:
        return Estimate(mean, -math.inf, math.inf, 1)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = _t(n - 1) * math.sqrt(variance / n)
    return Estimate(mean, round(mean - half, 12), round(mean + half, 12), n)


def welch(a: Sequence[float], b: Sequence[float]) -> Estimate:
    """``mean(b) - mean(a)`` with Welch's 95 % interval (``n`` is the smaller sample).

    Example:
        >>> welch([1.0, 1.0], [3.0, 3.0])
        Estimate(mean=2.0, low=2.0, high=2.0, n=2)
    """
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        mean = (sum(b) / nb - sum(a) / na) if na and nb else math.nan
        return Estimate(mean, -math.inf, math.inf, min(na, nb))
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((x - ma) ** 2 for x in a) / (na - 1) / na
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1) / nb
    se = math.sqrt(va + vb)
    if se == 0:
        return Estimate(mb - ma, mb - ma, mb - ma, min(na, nb))
    df = (va + vb) ** 2 / (va**2 / (na - 1) + vb**2 / (nb - 1))
    half = _t(df) * se
    return Estimate(mb - ma, mb - ma - half, mb - ma + half, min(na, nb))


def paired_difference(pairs: Sequence[tuple[float, float]]) -> Estimate:
    """``b - a`` over paired observations ``(a, b)``, with the paired t interval."""
    return mean_interval([b - a for a, b in pairs])


@dataclass(frozen=True, slots=True)
class Arm:
    """One arm of a split on live traffic (and its eval quality, when known)."""

    model: str
    weight: float
    requests: int
    cost_usd: Estimate
    latency_s: Estimate
    errors: Estimate
    quality: Estimate | None = None


@dataclass(frozen=True, slots=True)
class _Sample:
    cost: list[float]
    latency: list[float]
    errors: list[float]


def split_arms(
    records: Sequence[UsageRecord], route: str, split: Mapping[str, float]
) -> tuple[list[Arm], dict[str, _Sample]]:
    """The arms of ``split`` (keys: canonical model names) on ``route``'s logged requests."""
    by_request: dict[str, list[UsageRecord]] = {}
    for record in records:
        if record.route == route:
            by_request.setdefault(record.record_id.rpartition(":")[0], []).append(record)
    samples = {model: _Sample([], [], []) for model in split}
    for attempts in by_request.values():
        attempts.sort(key=lambda r: r.attempt)
        sample = samples.get(attempts[0].model)
        if sample is None:
            continue  # a request whose head was no arm (every arm was filtered out)
        sample.cost.append(float(sum(r.cost_usd for r in attempts)))
        sample.latency.append(max(r.ts for r in attempts) - min(r.ts - r.latency_s for r in attempts))
        sample.errors.append(0.0 if any(r.outcome in _SERVED for r in attempts) else 1.0)
    arms = [
        Arm(model, split[model], len(s.cost), mean_interval(s.cost), mean_interval(s.latency), mean_interval(s.errors))
        for model, s in samples.items()
    ]  # fmt: skip
    return arms, samples


def _interval(e: Estimate, scale: float = 1.0, digits: int = 4, sign: str = "+") -> str:
    """``mean [low, high]``; ``sign="+"`` for differences, ``""`` for levels."""
    if e.n == 0 or math.isnan(e.mean):
        return "-"
    mean = f"{e.mean * scale:{sign}.{digits}f}"
    if math.isinf(e.low) or math.isinf(e.high):
        return f"{mean} (n={e.n}: too few for an interval)"
    return f"{mean} [{e.low * scale:{sign}.{digits}f}, {e.high * scale:{sign}.{digits}f}]"


def format_split(
    route: str,
    arms: Sequence[Arm],
    samples: Mapping[str, _Sample],
    quality_differences: Mapping[str, Estimate] | None = None,
) -> str:
    """The split as Markdown: each arm, then each other arm minus the first, with 95 % intervals."""
    lines = [
        f"## A/B split of route `{route}`",
        "",
        "| arm | weight | requests | cost per 1k requests, USD | latency, s | error share | quality |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for arm in arms:
        quality = "-" if arm.quality is None else _interval(arm.quality, 1, 3, "")
        lines.append(
            f"| `{arm.model}` | {arm.weight:g} | {arm.requests} | {_interval(arm.cost_usd, 1000, 4, '')} "
            f"| {_interval(arm.latency_s, 1, 3, '')} | {_interval(arm.errors, 1, 3, '')} | {quality} |"
        )
    if len(arms) < 2:
        return "\n".join(lines) + "\n"
    base = arms[0]
    lines += [
        "",
        f"Differences against `{base.model}` (95 % intervals; an interval that holds 0 is no difference):",
        "",
    ]
    lines += ["| arm | cost per 1k requests, USD | latency, s | error share | quality (paired by case) |"]
    lines += ["| --- | ---: | ---: | ---: | ---: |"]
    a = samples[base.model]
    for arm in arms[1:]:
        b = samples[arm.model]
        paired = (quality_differences or {}).get(arm.model)
        lines.append(
            f"| `{arm.model}` | {_interval(welch(a.cost, b.cost), 1000, 4)} | {_interval(welch(a.latency, b.latency), 1, 3)} "
            f"| {_interval(welch(a.errors, b.errors), 1, 3)} | {'-' if paired is None else _interval(paired, 1, 3)} |"
        )
    return "\n".join(lines) + "\n"
