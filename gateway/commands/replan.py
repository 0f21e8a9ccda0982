"""Re-plan logged requests with a policy's router: what ``switchyard replay`` reports.

The usage store keeps one record per attempt that consumed tokens (``StateBackend.usage_records``).
:func:`logged_requests` groups them back into requests: the route, the prompt and completion
tokens of the attempt that served, the metadata tags, whether it streamed (a served attempt with a
time to first token), the models tried in order, what every attempt cost and how long the request
took. :func:`replay` then walks those requests in the order they started and, for each, asks
``gateway.router.plan`` what the policy would do, and estimates that choice:

- **model**: the plan's head. The router sees what the client's router would have seen: the
  request's prompt tokens, stream flag and route settings; a ``LiveStats`` fed with the logged
  attempts that had ended by then (the same decayed, censored estimator the client uses, on the
  logs' clock); in-flight counts of the replayed choices themselves (each occupies its model for
  its estimated latency, for ``balance: least_busy``); the route's eval scores; and a seeded
  ``Random`` for exploration and ``balance: weighted``.
- **cost**: the head's price (the policy's, else the catalog's) for the logged prompt and
  completion tokens: the answer is assumed as long as the one that was served.
- **quality**: the head's eval score on the route's ``eval_set``, else its prior.
- **latency**: for a model with at least ``MIN_FIT`` answered attempts in the logs, a least-squares
  line through their (completion tokens, duration) pairs, at the request's completion tokens;
  else the router's estimate: its ttft plus those tokens at its estimated speed.

The observed side uses the same quality function (eval score of the model that served, else its
prior), the sum of the logged attempts' costs, and the time from the first attempt's start to the
last one's end.

What the logs cannot tell, replay does not know: attempts that consumed no tokens (a refused or
failed call) left no record, so fallbacks on errors, breakers and budgets are not replayed; a
request's tools, images and ``max_tokens`` were not logged, so a candidate excluded only by a
missing capability or its output limit may be chosen here. Eval scores are today's, not those in
force when the request was made. Records of shadow copies are not requests of the route and are
left out.
"""

from __future__ import annotations

import heapq
import random
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from gateway.catalog import load_catalog
from gateway.core.attempts import AttemptRecord, Candidate
from gateway.core.errors import NoRouteError
from gateway.core.shadow import SHADOW_ROUTE_PREFIX
from gateway.core.types import ChatRequest, CompletionUsage
from gateway.metering.pricing import PriceTable
from gateway.policy.references import policy_index
from gateway.policy.schema import Policy
from gateway.router import DEFAULT_QUALITY, EvalScore, StatsSnapshot, plan
from gateway.state.base import UsageRecord
from gateway.stats import LiveStats
from providers.base import Target

__all__ = [
    "MIN_FIT",
    "LatencyFit",
    "LoggedRequest",
    "Side",
    "logged_requests",
    "observed",
    "replay",
]

_SERVED = ("ok", "partial")
_OUTCOME = {"ok": "ok", "partial": "partial"}  # anything else was a failure of the deployment
_MESSAGES = [{"role": "user", "content": ""}]
MIN_FIT = 3  # answered attempts of a model before its logged latencies replace the router's estimate

EvalLookup = Callable[[str | None], Mapping[str, EvalScore] | None]


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One routed request, rebuilt from its attempts' usage records."""

    request_id: str
    route: str
    start: float  # Unix seconds: the first attempt's start
    end: float  # the last attempt's end
    prompt_tokens: int
    completion_tokens: int
    stream: bool
    team: str
    tags: tuple[tuple[str, str], ...]
    models: tuple[str, ...]  # the attempts' models, in order
    served: str | None  # the model whose attempt answered; None when every logged attempt failed
    cost_usd: Decimal


@dataclass(slots=True)
class Side:
    """What one side of the comparison did on a route: observed, or replayed with a policy."""

    requests: Counter[str] = field(default_factory=Counter)  # served requests by model
    cost_usd: Decimal = Decimal(0)
    unpriced: int = 0  # requests whose model has no price (their cost counts 0)
    quality_sum: float = 0.0
    latency_sum: float = 0.0
    not_served: Counter[str] = field(default_factory=Counter)  # requests without a model, by reason

    @property
    def served(self) -> int:
        return sum(self.requests.values())

    @property
    def quality(self) -> float | None:
        """Mean expected quality of the served requests, 0..1."""
        return self.quality_sum / self.served if self.served else None

    @property
    def latency_s(self) -> float | None:
        """Mean latency of the served requests, seconds."""
        return self.latency_sum / self.served if self.served else None

    def add(self, model: str, cost: Decimal | None, quality: float, latency_s: float) -> None:
        self.requests[model] += 1
        if cost is None:
            self.unpriced += 1
        else:
            self.cost_usd += cost
        self.quality_sum += quality
        self.latency_sum += latency_s


def _request_id(record: UsageRecord) -> str:
    return record.record_id.rpartition(":")[0] or record.record_id


def logged_requests(records: Iterable[UsageRecord]) -> tuple[list[LoggedRequest], Counter[str]]:
    """Routed requests rebuilt from usage records, by start time, and what was left out and why
    (``direct``: a model named directly, not a route; ``shadow``: a copy under ``shadow:<route>``)."""
    grouped: dict[str, list[UsageRecord]] = {}
    skipped: Counter[str] = Counter()
    for record in records:
        grouped.setdefault(_request_id(record), []).append(record)
    requests = []
    for request_id, attempts in grouped.items():
        attempts.sort(key=lambda r: r.attempt)
        if attempts[0].route.startswith(SHADOW_ROUTE_PREFIX):
            skipped["shadow"] += 1
            continue
        if not attempts[0].route:
            skipped["direct"] += 1
            continue
        served = next((r for r in reversed(attempts) if r.outcome in _SERVED), None)
        shown = served or attempts[-1]
        requests.append(
            LoggedRequest(
                request_id=request_id,
                route=attempts[0].route,
                start=min(r.ts - r.latency_s for r in attempts),
                end=max(r.ts for r in attempts),
                prompt_tokens=shown.prompt_tokens,
                completion_tokens=shown.completion_tokens,
                stream=shown.ttft_s is not None,
                team=attempts[0].team,
                tags=attempts[0].tags,
                models=tuple(r.model for r in attempts),
                served=served.model if served is not None else None,
                cost_usd=sum((r.cost_usd for r in attempts), Decimal(0)),
            )
        )
    requests.sort(key=lambda r: (r.start, r.request_id))
    return requests, skipped


def quality_of(policy: Policy, model: str, scores: Mapping[str, EvalScore] | None) -> float:
    """A model's expected quality on a route: its eval score, else its prior, else the default."""
    score = scores.get(model) if scores else None
    if score is not None:
        return score.score
    spec = policy_index(policy).models.get(model) or load_catalog().models.get(model)
    prior = spec.quality if spec is not None else None
    return prior if prior is not None else DEFAULT_QUALITY


def observed(requests: Sequence[LoggedRequest], policy: Policy, evals: EvalLookup) -> dict[str, Side]:
    """What happened, per route; quality is judged by ``policy``'s eval sets and priors."""
    sides: dict[str, Side] = {}
    for request in requests:
        side = sides.setdefault(request.route, Side())
        if request.served is None:
            side.not_served["failed"] += 1
            continue
        route = policy.routes.get(request.route)
        scores = evals(route.eval_set) if route is not None else None
        quality = quality_of(policy, request.served, scores)
        side.add(request.served, request.cost_usd, quality, request.end - request.start)
    return sides


class _Picture:
    """The live estimates at a replayed instant: the logged attempts fed to a ``LiveStats`` on the
    logs' clock, and the replayed choices' own in-flight counts."""

    def __init__(self, records: Sequence[UsageRecord]) -> None:
        self.now = 0.0
        self._records = sorted(records, key=lambda r: r.ts)
        self._next = 0
        self._busy: dict[str, list[float]] = {}
        self.stats = LiveStats(clock=lambda: self.now, in_flight=self._in_flight)

    def at(self, now: float) -> StatsSnapshot:
        self.now = now
        while self._next < len(self._records) and self._records[self._next].ts <= now:
            self.stats.attempt_finished(_attempt(self._records[self._next]))
            self._next += 1
        return self.stats.snapshot()

    def occupy(self, model: str, until: float) -> None:
        heapq.heappush(self._busy.setdefault(model, []), until)

    def _in_flight(self) -> dict[str, int]:
        for ends in self._busy.values():
            while ends and ends[0] <= self.now:
                heapq.heappop(ends)
        return {model: len(ends) for model, ends in self._busy.items() if ends}


class LatencyFit:
    """Per model, ``duration = a + b x completion tokens``, fitted to its answered attempts (``b >= 0``).

    Example:
        >>> from decimal import Decimal
        >>> rows = [UsageRecord(f"r{n}:0", 0.0, "", "-", "r", "p", "m", 5, n, Decimal(0), latency_s=0.1 + n / 100)
        ...         for n in (10, 20, 30)]
        >>> round(LatencyFit(rows).estimate("m", 40) or 0, 3), LatencyFit(rows).estimate("other", 40)
        (0.5, None)
    """

    def __init__(self, records: Iterable[UsageRecord]) -> None:
        points: dict[str, list[tuple[float, float]]] = {}
        for r in records:
            if r.outcome in _SERVED and r.latency_s > 0:
                points.setdefault(r.model, []).append((float(r.completion_tokens), r.latency_s))
        self._lines = {model: _line(xy) for model, xy in points.items() if len(xy) >= MIN_FIT}

    def estimate(self, model: str, completion_tokens: int) -> float | None:
        line = self._lines.get(model)
        return None if line is None else max(line[0] + line[1] * completion_tokens, 0.0)


def _line(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0
    slope = max(slope, 0.0)  # a longer answer never takes less time
    return mean_y - slope * mean_x, slope


def _attempt(record: UsageRecord) -> AttemptRecord:
    usage = CompletionUsage(
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        total_tokens=record.prompt_tokens + record.completion_tokens,
    )
    return AttemptRecord(
        request_id=_request_id(record),
        attempt=record.attempt,
        candidate=Candidate(Target(record.provider, "openai", "", record.model), record.model),
        route=record.route or None,
        started=record.ts - record.latency_s,
        duration_s=record.latency_s,
        ttft_s=record.ttft_s,
        outcome=_OUTCOME.get(record.outcome, "APIError"),
        status_code=None,
        usage=usage,
    )


def replay(
    requests: Sequence[LoggedRequest],
    records: Sequence[UsageRecord],
    policy: Policy,
    evals: EvalLookup,
    *,
    seed: int = 0,
) -> dict[str, Side]:
    """Re-plan ``requests`` with ``policy``'s router and estimate each choice (module docstring)."""
    rng = random.Random(seed)
    prices = PriceTable.from_policy(policy)
    picture = _Picture(records)
    fit = LatencyFit(records)
    sides: dict[str, Side] = {}
    for request in requests:
        side = sides.setdefault(request.route, Side())
        route = policy.routes.get(request.route)
        if route is None:
            side.not_served["route not in policy"] += 1
            continue
        chat = ChatRequest(model=f"route:{request.route}", messages=_MESSAGES, stream=request.stream or None)
        scores = evals(route.eval_set)
        try:
            result = plan(
                chat,
                request.route,
                policy,
                picture.at(request.start),
                prompt_tokens=request.prompt_tokens,
                evals=scores,
                rng=rng,
            )
        except NoRouteError:
            side.not_served["no route"] += 1
            continue
        if not result.candidates:
            side.not_served["no candidate"] += 1
            continue
        head = result.candidates[0]
        latency = fit.estimate(head.model, request.completion_tokens)
        if latency is None:
            per_token = (head.latency_s - head.ttft_s) / result.output_tokens if result.output_tokens else 0.0
            latency = head.ttft_s + request.completion_tokens * per_token
        cost = prices.cost(
            head.model,
            prompt_tokens=request.prompt_tokens,
            completion_tokens=request.completion_tokens,
            provider=head.provider,
        )
        side.add(head.model, cost, head.quality, latency)
        picture.occupy(head.model, request.start + latency)
    return sides
