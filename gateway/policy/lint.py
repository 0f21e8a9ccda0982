"""Lints: settings that are valid but probably wrong. Warnings, or errors under ``--strict``.

| code | what |
| --- | --- |
| ``lint.fallback-smaller-context`` | a fallback candidate has a smaller context window than the primary |
| ``lint.requires-unsatisfiable`` | a route requires a capability no candidate has |
| ``lint.no-local-candidate`` | ``data: local_only`` but no candidate is tagged ``local`` |
| ``lint.matches-nothing`` | a budget or rate limit matches a route that does not exist |
| ``lint.no-price`` | a candidate has no input or output price: cost scores and budgets see it as unknown |
| ``lint.budget-unpriced`` | a ``limit_usd`` budget counts a model that has no price, in the policy, the catalog or genai-prices |
| ``lint.zero-weights`` | a route's weights sum to zero, so scores cannot rank candidates |
| ``lint.impossible-resilience`` | attempts or retries below zero, delays out of order, a deadline shorter than connect |
| ``lint.local-engine-setting`` | a local provider's engine setting the engine would refuse (checked without loading a model) |
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.policy._source import Path
from gateway.policy.loader import source_map
from gateway.policy.located import format_path
from gateway.policy.references import policy_index
from gateway.policy.schema import Policy, Route

__all__ = ["LintWarning", "lint_policy"]


@dataclass(frozen=True, slots=True)
class LintWarning:
    """One lint finding, located like a ``PolicyError``."""

    code: str
    message: str
    field_path: str
    file: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = self.file or "<policy>"
        if self.line is not None:
            where += f":{self.line}:{self.column}"
        return f"{where}: warning [{self.code}] at {self.field_path}: {self.message}"


class _Findings:
    def __init__(self, policy: Policy) -> None:
        self.smap = source_map(policy)
        self.found: list[LintWarning] = []

    def add(self, code: str, path: Path, message: str) -> None:
        loc = self.smap.locate(path)
        self.found.append(
            LintWarning(
                code=code,
                message=message,
                field_path=format_path(path),
                file=self.smap.file,
                line=loc.line if loc else None,
                column=loc.column if loc else None,
            )
        )


def _lint_candidates(policy: Policy, name: str, route: Route, out: _Findings) -> None:
    index = policy_index(policy)
    specs = [index.models[full] for full in index.routes.get(name, ())]
    base: Path = ("routes", name)
    primary = specs[0] if specs else None
    for i, spec in enumerate(specs):
        path = (*base, "candidates", i)
        if not spec.has_price:
            out.add(
                "lint.no-price", path, f"{spec.name!r} has no price: its cost counts as unknown (the worst)"
            )
        if primary is None or i == 0 or spec.context_window is None or primary.context_window is None:
            continue
        if spec.context_window < primary.context_window:
            out.add(
                "lint.fallback-smaller-context",
                path,
                f"fallback {spec.name!r} holds {spec.context_window} tokens, the primary {primary.name!r} "
                f"{primary.context_window}: prompts that fit the primary may not fit it",
            )
    for j, capability in enumerate(route.requires):
        if specs and not any(spec.supports(capability) for spec in specs):
            out.add(
                "lint.requires-unsatisfiable", (*base, "requires", j), f"no candidate supports {capability!r}"
            )
    if route.data == "local_only" and not any("local" in spec.tags for spec in specs):
        out.add(
            "lint.no-local-candidate",
            (*base, "data"),
            "data is local_only but no candidate is tagged 'local'",
        )


def _lint_objective(name: str, route: Route, out: _Findings) -> None:
    weights = route.weights
    if weights is not None and weights.quality + weights.speed + weights.cost == 0:
        out.add(
            "lint.zero-weights",
            ("routes", name, "weights"),
            "weights sum to zero: candidates keep their order",
        )


def _lint_resilience(name: str, route: Route, out: _Findings) -> None:
    base: Path = ("routes", name)
    if route.fallback.max_attempts < 1:
        out.add(
            "lint.impossible-resilience",
            (*base, "fallback", "max_attempts"),
            "max_attempts below 1: nothing is tried",
        )
    retry = route.retry
    if retry.max_retries < 0:
        out.add("lint.impossible-resilience", (*base, "retry", "max_retries"), "max_retries is negative")
    if retry.initial_delay_s < 0 or retry.initial_delay_s > retry.max_delay_s:
        out.add(
            "lint.impossible-resilience",
            (*base, "retry", "initial_delay_s"),
            "initial_delay_s must be between 0 and max_delay_s",
        )
    timeouts = route.timeouts
    if timeouts.total_s is not None and timeouts.total_s < timeouts.connect_s:
        out.add(
            "lint.impossible-resilience",
            (*base, "timeouts", "total_s"),
            f"the deadline ({timeouts.total_s}s) is shorter than the connect timeout ({timeouts.connect_s}s)",
        )
    if (
        timeouts.total_s is not None
        and timeouts.first_token_s is not None
        and timeouts.first_token_s > timeouts.total_s
    ):
        out.add(
            "lint.impossible-resilience",
            (*base, "timeouts", "first_token_s"),
            "first_token_s is longer than the whole deadline total_s",
        )


def _lint_budgets(policy: Policy, out: _Findings) -> None:
    """A USD budget over an unpriced model: a warning, not a load error, because the budget still holds.

    The guard reserves and charges an unpriced model at the dearest price it knows
    (``Guard.ceiling``), never at $0, so such a budget over-counts rather than leaks; the warning
    names the models to price (``models.<name>.input_price`` / ``output_price``).
    """
    from gateway.catalog_prices import maintained_price

    index = policy_index(policy)
    for name, budget in policy.budgets.items():
        route = budget.match.route
        if budget.limit_usd is None or (route is not None and route not in policy.routes):
            continue  # a token budget needs no price; a route that does not exist is lint.matches-nothing
        models = index.routes[route] if route is not None else tuple(index.models)
        specs = [index.models[full] for full in dict.fromkeys(models)]
        unpriced = [spec.name for spec in specs if not spec.has_price and maintained_price(spec) is None]
        if unpriced:
            scope = f"route {route!r}" if route is not None else "every request"
            out.add(
                "lint.budget-unpriced",
                ("budgets", name, "limit_usd"),
                f"the budget counts {scope}, which can be served by {', '.join(map(repr, unpriced))} with no "
                "price: those are charged at the dearest known price; set input_price and output_price",
            )


def _lint_local_engines(policy: Policy, out: _Findings) -> None:
    """A local provider's engine settings (``options``), checked as the engine checks them, before the
    first request would be refused with a 400 (``providers.local.check_options``: no torch, no model)."""
    from providers.local import check_options

    for name, provider in policy.providers.items():
        if (provider.kind or ("local" if name == "local" else None)) != "local":
            continue
        for setting, message in check_options(dict(provider.options)):
            out.add(
                "lint.local-engine-setting",
                ("providers", name, "options", setting)
                if setting in provider.options
                else ("providers", name, "options"),
                message,
            )


def _shadow_of(policy: Policy, route_name: str) -> bool:
    """``shadow:NAME`` names the shadow copies of route NAME, when that route has a ``shadow``."""
    route = (
        policy.routes.get(route_name.removeprefix("shadow:")) if route_name.startswith("shadow:") else None
    )
    return route is not None and route.shadow is not None


def lint_policy(policy: Policy) -> list[LintWarning]:
    """Every lint finding of ``policy``, in file order.

    Example:
        >>> from gateway.policy import parse_policy
        >>> text = "version: 1\\nroutes:\\n  r:\\n    candidates: [gpt-4o-mini]\\n    weights: {}\\n"
        >>> [w.code for w in lint_policy(parse_policy(text))]
        ['lint.zero-weights']
    """
    out = _Findings(policy)
    for name, route in policy.routes.items():
        _lint_candidates(policy, name, route, out)
        _lint_objective(name, route, out)
        _lint_resilience(name, route, out)
    _lint_budgets(policy, out)
    _lint_local_engines(policy, out)
    for section, entries in (("budgets", policy.budgets), ("rate_limits", policy.rate_limits)):
        for name, entry in entries.items():
            route_name = entry.match.route
            if (
                route_name is not None
                and route_name not in policy.routes
                and not _shadow_of(policy, route_name)
            ):
                out.add(
                    "lint.matches-nothing",
                    (section, name, "match", "route"),
                    f"no route is named {route_name!r}",
                )
    return sorted(out.found, key=lambda w: (w.line or 0, w.column or 0))
