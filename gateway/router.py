"""The router: a pure function from (request, route, policy, stats) to an ordered plan.

``plan()`` does no I/O and keeps no state: the caller passes a ``StatsSnapshot`` (live latency,
in-flight counts, open breakers, budgets) and, optionally, eval scores and a seeded ``Random``.

How a plan is made:

1. **Filter.** Each candidate of the route is dropped, with an ``Exclusion`` saying why, when it
   lacks a capability the request needs (tools present -> ``tools``; an image part -> ``vision``;
   ``response_format.type == "json_schema"`` -> ``json_schema``; ``stream=True`` -> ``streaming``;
   plus the route's ``requires``), when ``prompt_tokens`` + the requested max output + the route's
   ``buffer_tokens`` exceed its context window (or the requested output its ``max_output``), when
   its breaker is open, when it is over budget, when the route is ``data: local_only`` and it is
   not tagged ``local``, and when its estimates break ``min_quality``, ``max_ttft_s``,
   ``max_latency_ms`` or ``max_cost_usd``.
2. **Estimate**, per candidate and in units, never relative to the other candidates: quality
   (0..1) = the eval score if given, else the prior (``DEFAULT_QUALITY`` if none); ttft (s) and
   tokens/s = the live estimates blended with the catalog's priors, ``(w x live + PRIOR_WEIGHT x
   prior) / (w + PRIOR_WEIGHT)`` where ``w`` is the live estimate's effective (decayed) sample
   count, so a stale estimate drifts back to the prior; a decayed failure rate ``p`` scales ttft by
   ``1 / (1 - p)`` (the expected extra tries); latency = ttft + output_tokens / tokens_per_s;
   cost (USD, ``Decimal``) = (prompt_tokens x input price + output_tokens x output price) / 1e6,
   where output_tokens is the request's max output, else the route's ``expected_output_tokens``.
3. **Utility**, in USD per 1,000 requests, from the route's exchange rates (``utility:``)::

       U = quality_usd_per_1k x 100 x quality - 1000 x cost - ttft_usd_per_1k x ttft
           - latency_usd_per_1k x latency

   ``quality_usd_per_1k`` is what one quality point (0.01) is worth over 1,000 requests; the two
   time rates are what one second costs over 1,000 requests. A candidate with an unknown price
   ranks last. Highest U first; equal U is broken by ``tie_break`` (cost, quality or latency,
   then the other two), then by declared order, so a candidate no better on any axis never
   displaces one that is. ``minimize: cost`` is U = -cost (ties: quality); ``minimize: latency``
   is U = -latency (ties: cost). Legacy ``weights: {quality, speed, cost}`` map to rates:
   quality_usd_per_1k = ``LEGACY_USD_PER_QUALITY_POINT`` x quality / cost and
   latency_usd_per_1k = ``LEGACY_USD_PER_LATENCY_S`` x speed / cost (cost 0: dollars do not
   count), ties in declared order, as they always were. The built-in default, ``Utility()``, is $2 per quality point
   and $1 per second of latency per 1k requests: the old default weights 0.5/0.25/0.25.
4. **Split, explore or balance the head.** A route with ``split`` (an A/B test) draws the head
   from its weights, and neither explores nor balances. Otherwise, with ``explore > 0`` and an
   ``rng``, that share of plans moves a runner-up to the front, drawn with probability
   proportional to ``1 / (1 + samples)``: the stalest, least-known candidates are probed most, and
   no more than ``explore`` of the traffic goes to a candidate the utility ranks lower. Otherwise ``balance: weighted`` draws the head from
   ``balance_weights`` (a candidate not listed gets 0; no weights given: uniform; no ``rng``: the
   heaviest), and ``balance: least_busy`` puts the candidate with the fewest ``in_flight`` first
   (the best by utility among equals). The rest stay in utility order, as fallbacks.

Worked example (tested exactly in ``tests/router/test_worked_example.py``): a route with
``utility: {quality_usd_per_1k: 2.5, latency_usd_per_1k: 1.5}`` (what the legacy
``weights: {quality: 0.5, speed: 0.3, cost: 0.2}`` maps to), 1,000 prompt tokens and 500 expected
output tokens, over three models::

    model  quality  ttft  tok/s  $in/1M  $out/1M | latency  $/request | U, $/1k requests
    big    0.9      0.5   100    2.50    10.00   | 5.5 s    0.0075    | 225 - 7.5 - 8.25 = 209.25
    small  0.7      0.3   125    0.15     0.60   | 4.3 s    0.00045   | 175 - 0.45 - 6.45 = 168.10
    local  0.2      0.1    25    0        0       | 20.1 s   0         | 50 - 0 - 30.15 = 19.85

    plan: big, small, local. Twenty quality points are worth $50 per 1k requests here; big costs
    $7.05 more per 1k and is 1.2 s slower ($1.80): big wins by $41.15 per 1k requests.

Adding or removing a candidate changes no other candidate's U.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from gateway.catalog import ModelSpec, load_catalog
from gateway.core.errors import NoRouteError
from gateway.core.types import ChatRequest
from gateway.policy.located import did_you_mean
from gateway.policy.references import model_names, policy_index, resolve_model_name
from gateway.policy.schema import Policy, Route, Utility

__all__ = [
    "DEFAULT_QUALITY",
    "LEGACY_USD_PER_LATENCY_S",
    "LEGACY_USD_PER_QUALITY_POINT",
    "PRIOR_WEIGHT",
    "Candidate",
    "EvalScore",
    "Exclusion",
    "LocalEngineLoad",
    "ModelStats",
    "Plan",
    "StatsSnapshot",
    "plan",
    "route_rates",
    "utility_per_1k",
]

PRIOR_WEIGHT = 2.0  # the catalog's latency priors count as this many live observations
LEGACY_USD_PER_QUALITY_POINT = 1.0  # legacy ``weights``: quality/cost = 1 means $1 per point per 1k
LEGACY_USD_PER_LATENCY_S = 1.0  # legacy ``weights``: speed/cost = 1 means $1 per second per 1k
DEFAULT_QUALITY = 0.5  # a model with neither an eval score nor a prior
_PER_TOKEN = Decimal(1) / Decimal(1_000_000)  # prices are per million tokens
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})
_INF = float("inf")
_DEFAULT_UTILITY = Utility()


@dataclass(frozen=True, slots=True)
class ModelStats:
    """Live statistics of one model, already smoothed and decayed by whoever observes calls.

    ``weight`` is the effective number of observations behind the estimates after decay (old
    observations count less); ``None`` means ``samples``. ``failure_rate`` is the decayed share of
    attempts that failed or timed out (their durations already entered ``ttft_s`` as censored
    observations).
    """

    ttft_s: float | None = None
    tokens_per_s: float | None = None
    samples: int = 0
    in_flight: int = 0
    breaker_open: bool = False
    breaker_reason: str | None = None
    weight: float | None = None
    failure_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class LocalEngineLoad:
    """Load of the in-process engine: it slows models tagged ``local`` as it fills."""

    queue_depth: int = 0
    running: int = 0
    free_blocks: int | None = None
    tokens_per_s: float | None = None  # the engine's whole decode throughput
    max_batch: int | None = None  # sequences it decodes at once; None: every request queues


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """What the router knows about the world at one instant; empty means priors only."""

    models: Mapping[str, ModelStats] = field(default_factory=dict)
    over_budget: frozenset[str] = frozenset()
    local_engine: LocalEngineLoad | None = None


@dataclass(frozen=True, slots=True)
class EvalScore:
    """A model's measured quality on the route's eval set, 0..1."""

    score: float
    samples: int = 0


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A candidate the plan dropped: ``code`` is stable, ``message`` is for people."""

    model: str
    # missing_capability, context_window, max_output, breaker_open, over_budget, not_local,
    # min_quality, max_latency or max_cost
    code: str
    message: str


class Candidate(NamedTuple):
    """One model to try, with its estimates in their units and its utility.

    A ``NamedTuple`` rather than the frozen dataclass used elsewhere: ``plan()`` builds one per
    surviving candidate on every request, and a tuple is built about five times faster, which keeps
    a 10-candidate plan well under its 50 µs.
    """

    model: str
    provider: str
    upstream: str
    quality: float  # expected quality, 0..1 (eval score, else prior)
    ttft_s: float  # expected time to first token, seconds
    latency_s: float  # expected total latency, seconds
    cost_usd: Decimal | None  # expected cost of this request, USD
    utility: float  # value minus cost of 1,000 such requests, USD (see route_rates)
    samples: float  # effective live observations behind the latency estimate
    basis: str  # "utility", "weights", "minimize cost", "minimize latency", "balance …" or "explore"

    @property
    def reason(self) -> str:
        """Why it is here, in one line."""
        cost = "unknown cost" if self.cost_usd is None else f"${self.cost_usd:.6f}/request"
        return (
            f"{self.basis}: utility ${self.utility:.2f}/1k requests (quality {self.quality:.2f}, "
            f"ttft {self.ttft_s:.2f}s, latency {self.latency_s:.2f}s, {cost})"
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """The ordered candidates to try, what was excluded and why, and the route's settings."""

    route: str
    candidates: tuple[Candidate, ...]
    exclusions: tuple[Exclusion, ...]
    settings: Route
    prompt_tokens: int
    output_tokens: int

    def require(self) -> Plan:
        """Return the plan, or raise ``NoRouteError`` (carrying it) when no candidate survived."""
        if not self.candidates:
            reasons = (
                "; ".join(f"{e.model}: {e.message}" for e in self.exclusions) or "the route has no candidates"
            )
            raise NoRouteError(
                f"no candidate of route {self.route!r} can serve this request ({reasons})", plan=self
            )
        return self


def _needs(request: ChatRequest, route: Route) -> list[str]:
    needs: list[str] = list(route.requires)
    if request.tools or request.functions:
        needs.append("tools")
    if request.stream:
        needs.append("streaming")
    response_format = request.response_format
    if response_format is not None and response_format.get("type") == "json_schema":
        needs.append("json_schema")
    if any(
        isinstance(content := message.get("content"), list)
        and any(isinstance(part, dict) and part.get("type") in _IMAGE_PARTS for part in content)
        for message in request.messages
    ):
        needs.append("vision")
    return needs


@functools.lru_cache(maxsize=256)
def _implicit_route(model: str) -> Route:
    """Default route settings for a plan of one model named directly (``model="openai/gpt-4o"``)."""
    return Route(candidates=[model])


def _resolve_route(policy: Policy, route_name: str) -> tuple[str, Route, Sequence[ModelSpec]]:
    index = policy_index(policy)
    name = route_name.removeprefix("route:")
    route = policy.routes.get(name)
    if route is not None:
        return name, route, index.route_specs[name]
    model = resolve_model_name(policy, name)
    if model is not None:
        spec = index.models.get(model) or load_catalog().models[model]
        return name, _implicit_route(model), (spec,)
    hint = did_you_mean(name, [*policy.routes, *model_names(policy.models)])
    raise NoRouteError(f"unknown route or model {route_name!r}{hint}")


def _blend(prior: float, live: float | None, weight: float) -> float:
    return (
        prior
        if live is None or weight <= 0
        else (weight * live + PRIOR_WEIGHT * prior) / (weight + PRIOR_WEIGHT)
    )


def _latency(
    spec: ModelSpec, live: ModelStats | None, load: LocalEngineLoad | None, output_tokens: int
) -> tuple[float, float, float]:
    """Expected (ttft, total latency, effective samples): live estimates blended with the priors."""
    ttft, tps, weight = spec.ttft_s, spec.tokens_per_s, 0.0
    if live is not None:
        weight = live.samples if live.weight is None else live.weight
        ttft = _blend(ttft, live.ttft_s, weight)
        tps = _blend(tps, live.tokens_per_s, weight)
        if live.failure_rate > 0 and weight > 0:
            # A failed attempt costs about a ttft before the fallback: the expected extra tries.
            # The rate is blended toward 0 like the estimates, so a stale failure rate fades too.
            rate = min(live.failure_rate * weight / (weight + PRIOR_WEIGHT), 0.95)
            ttft *= 1 + rate / (1 - rate)
    if load is not None and "local" in spec.tags:
        # Requests beyond the batch's capacity wait their turn; those in the batch share the
        # engine's decode throughput.
        waiting, sharing = load.queue_depth, load.running + 1
        if load.max_batch:
            waiting = max(0, load.queue_depth + load.running + 1 - load.max_batch)
            sharing = min(sharing, load.max_batch)
        ttft *= 1 + waiting
        if load.tokens_per_s:
            tps = load.tokens_per_s / sharing
    return ttft, ttft + output_tokens / tps, weight


def _filter(
    spec: ModelSpec,
    live: ModelStats | None,
    needs: list[str],
    route: Route,
    stats: StatsSnapshot,
    context_tokens: int,
    requested: int | None,
) -> tuple[str, str] | None:
    for capability in needs:
        if not getattr(spec, capability):
            return "missing_capability", f"does not support {capability}"
    if spec.context_window is not None and context_tokens > spec.context_window:
        return "context_window", f"needs {context_tokens} tokens, the window holds {spec.context_window}"
    if requested is not None and spec.max_output is not None and requested > spec.max_output:
        return "max_output", f"asks for {requested} output tokens, the model writes at most {spec.max_output}"
    if live is not None and live.breaker_open:
        return "breaker_open", f"circuit breaker open ({live.breaker_reason or 'recent failures'})"
    if spec.name in stats.over_budget:
        return "over_budget", "over budget"
    if route.data == "local_only" and "local" not in spec.tags:
        return "not_local", "the route is data: local_only and the model is not tagged local"
    return None


def _constraint(
    route: Route, quality: float, ttft: float, latency: float, cost: Decimal | None
) -> tuple[str, str] | None:
    if route.min_quality is not None and quality < route.min_quality:
        return "min_quality", f"quality {quality:.2f} is below min_quality {route.min_quality}"
    if route.max_ttft_s is not None and ttft > route.max_ttft_s:
        return "max_ttft", f"estimated ttft {ttft:.2f}s exceeds max_ttft_s {route.max_ttft_s:g}"
    if route.max_latency_ms is not None and latency * 1000 > route.max_latency_ms:
        return (
            "max_latency",
            f"estimated {latency * 1000:.0f} ms exceeds max_latency_ms {route.max_latency_ms:g}",
        )
    if route.max_cost_usd is not None and (cost is None or cost > route.max_cost_usd):
        shown = "unknown" if cost is None else f"${cost.normalize():f}"
        return "max_cost", f"estimated cost {shown} exceeds max_cost_usd {route.max_cost_usd}"
    return None


class _Rates(NamedTuple):
    """A route's objective as exchange rates into dollars per 1,000 requests (see the docstring)."""

    quality: float  # USD per quality point (0.01 of the 0..1 scale)
    ttft: float  # USD per second of time to first token
    latency: float  # USD per second of total latency
    cost: float  # how many dollars a dollar of expected cost counts for (1, or 0 when ignored)
    tie_break: str  # "cost", "quality", "latency" or "order"
    basis: str


def route_rates(route: Route) -> _Rates:
    """The exchange rates a route's objective stands for; legacy ``weights`` map as the docstring says."""
    if route.minimize == "cost":
        return _Rates(0.0, 0.0, 0.0, 1.0, "quality", "minimize cost")
    if route.minimize == "latency":
        return _Rates(0.0, 0.0, 1.0, 0.0, "cost", "minimize latency")
    if route.weights is not None:
        w = route.weights
        if w.quality + w.speed + w.cost == 0:
            return _Rates(0.0, 0.0, 0.0, 0.0, "order", "weights")
        scale = w.cost if w.cost > 0 else 1.0
        cost = 1.0 if w.cost > 0 else 0.0
        return _Rates(
            LEGACY_USD_PER_QUALITY_POINT * w.quality / scale,
            0.0,
            LEGACY_USD_PER_LATENCY_S * w.speed / scale,
            cost,
            "order",  # as before: the declared order breaks ties
            "weights",
        )
    u = route.utility if route.utility is not None else _DEFAULT_UTILITY
    return _Rates(u.quality_usd_per_1k, u.ttft_usd_per_1k, u.latency_usd_per_1k, 1.0, u.tie_break, "utility")


def utility_per_1k(
    rates: _Rates, quality: float, ttft_s: float, latency_s: float, cost_usd: float | None
) -> float:
    """Value minus expected cost of 1,000 requests, in USD; ``-inf`` when a cost that counts is unknown."""
    if cost_usd is None:
        if rates.cost:
            return -_INF
        cost_usd = 0.0
    return (
        rates.quality * 100.0 * quality
        - rates.cost * 1000.0 * cost_usd
        - rates.ttft * ttft_s
        - rates.latency * latency_s
    )


# declared index, spec, quality, ttft, latency, cost (exact), cost (float), effective live samples
_Row = tuple[int, ModelSpec, float, float, float, Decimal | None, float | None, float]


def _rank(rows: list[_Row], rates: _Rates) -> list[Candidate]:
    keyed: list[tuple[tuple[float, ...], Candidate]] = []
    tie = rates.tie_break
    for i, spec, quality, ttft, latency, cost, cost_f, samples in rows:
        value = utility_per_1k(rates, quality, ttft, latency, cost_f)
        c_key = _INF if cost_f is None else cost_f
        if tie == "cost":
            tail: tuple[float, ...] = (c_key, -quality, latency)
        elif tie == "quality":
            tail = (-quality, c_key, latency)
        elif tie == "latency":
            tail = (latency, c_key, -quality)
        else:
            tail = ()
        candidate = Candidate(
            spec.name, spec.provider, spec.upstream, quality, ttft, latency, cost, value, samples, rates.basis
        )
        keyed.append(((-value, *tail, float(i)), candidate))
    keyed.sort(key=lambda pair: pair[0])  # the declared index is last and unique: never a tie
    return [candidate for _, candidate in keyed]


def _balance(
    ordered: list[Candidate], route: Route, stats: StatsSnapshot, rng: random.Random | None
) -> list[Candidate]:
    """Choose the head by ``balance``; the rest keep the objective's order as fallbacks."""
    if route.balance == "least_busy":
        busy = [(stats.models[c.model].in_flight if c.model in stats.models else 0) for c in ordered]
        head = busy.index(min(busy))  # the first among equals: the best by the objective
    else:
        given = route.balance_weights
        weights = [given.get(c.model, 0.0 if given else 1.0) for c in ordered]
        if sum(weights) <= 0:
            return ordered
        if rng is None:
            head = weights.index(max(weights))
        else:
            head = rng.choices(range(len(ordered)), weights=weights)[0]
    if head == 0:
        return ordered
    chosen = ordered.pop(head)
    return [chosen._replace(basis=f"balance {route.balance}"), *ordered]


def _split(
    ordered: list[Candidate], route: Route, policy: Policy, rng: random.Random | None
) -> list[Candidate]:
    """An A/B test: draw the head from ``split`` (over the arms that survived the filters); the rest
    keep the objective's order as fallbacks. Without an ``rng``, the heaviest arm leads."""
    weights_by_model = {resolve_model_name(policy, key) or key: w for key, w in route.split.items()}
    weights = [weights_by_model.get(c.model, 0.0) for c in ordered]
    if sum(weights) <= 0:
        return ordered
    if rng is None:
        head = weights.index(max(weights))
    else:
        head = rng.choices(range(len(ordered)), weights=weights)[0]
    chosen = ordered.pop(head)
    return [chosen._replace(basis="split"), *ordered]


def _explore(ordered: list[Candidate], rng: random.Random) -> list[Candidate]:
    """Move a runner-up to the front, drawn by uncertainty: ``1 / (1 + effective samples)``."""
    weights = [1.0 / (1.0 + c.samples) for c in ordered[1:]]
    pick = 1 + rng.choices(range(len(weights)), weights=weights)[0]
    chosen = ordered.pop(pick)
    return [chosen._replace(basis="explore"), *ordered]


def plan(
    request: ChatRequest,
    route_name: str,
    policy: Policy,
    stats: StatsSnapshot,
    *,
    prompt_tokens: int,
    evals: Mapping[str, EvalScore] | None = None,
    rng: random.Random | None = None,
) -> Plan:
    """Rank the candidates of ``route_name`` for ``request``; see the module docstring for how.

    Args:
        request: the chat request (its tools, images, response format, stream flag, max tokens).
        route_name: a route of the policy (``support`` or ``route:support``), or a model name,
            which plans that one model under default route settings.
        policy: the loaded policy.
        stats: live statistics; ``StatsSnapshot()`` means catalog priors only.
        prompt_tokens: the prompt's token count, as the caller's tokenizer estimated it.
        evals: eval scores by model name; they replace the quality priors.
        rng: randomness for ``balance: weighted`` and exploration; ``None`` keeps plans deterministic.

    Returns:
        The plan; ``plan.require()`` raises ``NoRouteError`` when nothing survived.

    Raises:
        NoRouteError: ``route_name`` names neither a route nor a model.

    Example:
        >>> from gateway.policy import parse_policy
        >>> from gateway.core.types import ChatRequest
        >>> policy = parse_policy("version: 1\\nroutes: {chat: {candidates: [gpt-4o-mini, gpt-4o], minimize: cost}}")
        >>> request = ChatRequest(model="route:chat", messages=[{"role": "user", "content": "hi"}])
        >>> [c.model for c in plan(request, "chat", policy, StatsSnapshot(), prompt_tokens=10).candidates]
        ['openai/gpt-4o-mini', 'openai/gpt-4o']
    """
    name, route, specs = _resolve_route(policy, route_name)
    float_prices = policy_index(policy).float_prices  # cached on the policy: a dict read
    needs = _needs(request, route)
    requested = request.max_output_tokens
    output_tokens = requested if requested is not None else route.expected_output_tokens
    context_tokens = prompt_tokens + (requested or 0) + route.buffer_tokens
    # Decimal x Decimal is cheaper than int x Decimal; this loop runs per candidate per request.
    prompt_d, output_d = Decimal(prompt_tokens), Decimal(output_tokens)
    constrained = (
        route.min_quality is not None
        or route.max_latency_ms is not None
        or route.max_cost_usd is not None
        or route.max_ttft_s is not None
    )
    live_stats, load = stats.models, stats.local_engine
    rows: list[_Row] = []
    exclusions: list[Exclusion] = []
    for i, spec in enumerate(specs):
        live = live_stats.get(spec.name)
        excluded = _filter(spec, live, needs, route, stats, context_tokens, requested)
        if excluded is None:
            score = evals.get(spec.name) if evals else None
            quality = score.score if score is not None else spec.quality
            if quality is None:
                quality = DEFAULT_QUALITY
            ttft, latency, samples = _latency(spec, live, load, output_tokens)
            cost, cost_f = None, None
            if spec.input_price is not None and spec.output_price is not None:
                cost = (prompt_d * spec.input_price + output_d * spec.output_price) * _PER_TOKEN
                per_token = float_prices.get(spec.name)
                cost_f = (
                    float(cost)
                    if per_token is None
                    else prompt_tokens * per_token[0] + output_tokens * per_token[1]
                )
            excluded = _constraint(route, quality, ttft, latency, cost) if constrained else None
            if excluded is None:
                rows.append((i, spec, quality, ttft, latency, cost, cost_f, samples))
                continue
        exclusions.append(Exclusion(spec.name, excluded[0], excluded[1]))
    ordered = _rank(rows, route_rates(route)) if rows else []
    if len(ordered) > 1:
        if route.split:
            ordered = _split(ordered, route, policy, rng)
        elif route.explore and rng is not None and rng.random() < route.explore:
            ordered = _explore(ordered, rng)
        elif route.balance is not None:
            ordered = _balance(ordered, route, stats, rng)
    return Plan(name, tuple(ordered), tuple(exclusions), route, prompt_tokens, output_tokens)
