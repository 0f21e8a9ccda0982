"""Cross-references: resolve every model the policy names, and report names that lead nowhere.

A route candidate may name a model of the policy's ``models`` section, a catalog entry
(``openai/gpt-4o-mini``), or a catalog entry by its bare name (``gpt-4o-mini``) when exactly one
provider offers it. A model's provider must be a provider of the policy or a built-in host
(``providers.hosts.HOSTS``). The result is a ``PolicyIndex``: every model resolved to a
``ModelSpec`` and every route's candidates to canonical names, which is what the router reads.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from gateway.catalog import ModelSpec, load_catalog
from gateway.core.errors import PolicyError
from gateway.policy._source import Path
from gateway.policy.located import MAX_ERRORS, did_you_mean
from gateway.policy.schema import ModelEntry, Policy
from providers.hosts import HOSTS

__all__ = [
    "PolicyIndex",
    "Problem",
    "build_index",
    "policy_index",
    "raw_candidate_problems",
    "resolve_model_name",
]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class PolicyIndex:
    """Every model the policy can route to, resolved, and each route's candidates by canonical name."""

    models: dict[str, ModelSpec]
    routes: dict[str, tuple[str, ...]]
    route_specs: dict[str, tuple[ModelSpec, ...]]
    float_prices: dict[str, tuple[float, float]]  # (input, output) per token, for normalising costs
    # The sections it was built from, held (not their ids) so that a ``model_copy(update=...)``,
    # which copies private attributes too, is noticed and re-indexed.
    sources: tuple[object, ...] = ()

    def built_from(self, policy: Policy) -> bool:
        """Whether this index was built from ``policy``'s current sections."""
        sources = self.sources
        return (
            len(sources) == 3
            and sources[0] is policy.providers
            and sources[1] is policy.models
            and sources[2] is policy.routes
        )


@dataclass(frozen=True, slots=True)
class Problem:
    path: Path
    message: str
    code: str
    key: bool = False


def _pick(override: _T | None, inherited: _T) -> _T:
    return inherited if override is None else override


def _base_for(name: str, entry: ModelEntry, policy: Policy) -> ModelSpec | None:
    catalog = load_catalog().models
    if name in catalog:
        return catalog[name]
    if entry.provider is None:
        return None
    config = policy.providers.get(entry.provider)
    providers = [entry.provider] + ([config.kind] if config is not None and config.kind else [])
    upstream = entry.model or name
    for provider in providers:
        if f"{provider}/{upstream}" in catalog:
            return catalog[f"{provider}/{upstream}"]
    return next((s for s in catalog.values() if s.upstream == upstream and s.provider in providers), None)


def _merge(name: str, entry: ModelEntry, base: ModelSpec | None, provider: str) -> ModelSpec:
    default = ModelSpec(name=name, provider=provider, upstream=name.removeprefix(f"{provider}/"))
    b = base or default
    price = entry.price
    caps = entry.capabilities
    return ModelSpec(
        name=name,
        provider=provider,
        upstream=_pick(entry.model, b.upstream),
        input_price=_pick(price.input if price else None, b.input_price),
        cached_input_price=_pick(price.cached_input if price else None, b.cached_input_price),
        output_price=_pick(price.output if price else None, b.output_price),
        cache_write_price=_pick(price.cache_write if price else None, b.cache_write_price),
        cache_write_1h_price=_pick(price.cache_write_1h if price else None, b.cache_write_1h_price),
        context_window=_pick(entry.context_window, b.context_window),
        max_output=_pick(entry.max_output, b.max_output),
        tools=_pick(caps.tools if caps else None, b.tools),
        vision=_pick(caps.vision if caps else None, b.vision),
        json_schema=_pick(caps.json_schema if caps else None, b.json_schema),
        streaming=_pick(caps.streaming if caps else None, b.streaming),
        tags=frozenset(entry.tags) if entry.tags is not None else b.tags,
        quality=_pick(entry.quality, b.quality),
        ttft_s=_pick(entry.ttft_s, b.ttft_s),
        tokens_per_s=_pick(entry.tokens_per_s, b.tokens_per_s),
    )


def resolve_model_name(policy: Policy, name: str) -> str | None:
    """The canonical name ``name`` refers to: a policy model, a catalog entry, or a unique bare name."""
    return _resolve(name, policy.models)


def _resolve(name: str, policy_models: Collection[str]) -> str | None:
    catalog = load_catalog().models
    if name in policy_models or name in catalog:
        return name
    matches = [full for full in catalog if full.split("/", 1)[1] == name]
    return matches[0] if len(matches) == 1 else None


def model_names(policy_models: Iterable[str]) -> list[str]:
    """Every name a route may use: policy models, catalog entries, and their bare names."""
    catalog = load_catalog().models
    return [*policy_models, *catalog, *(full.split("/", 1)[1] for full in catalog)]


def raw_candidate_problems(data: Mapping[str, Any]) -> list[Problem]:
    """Unknown route candidates, found in raw data: used when the schema already failed elsewhere."""
    models = data.get("models")
    policy_models = list(models) if isinstance(models, dict) else []
    routes = data.get("routes")
    problems: list[Problem] = []
    for route_name, route in routes.items() if isinstance(routes, dict) else ():
        candidates = route.get("candidates") if isinstance(route, dict) else None
        for i, candidate in enumerate(candidates if isinstance(candidates, list) else ()):
            if isinstance(candidate, str) and _resolve(candidate, policy_models) is None:
                hint = (
                    did_you_mean(candidate, model_names(policy_models)) if len(problems) < MAX_ERRORS else ""
                )
                path = ("routes", route_name, "candidates", i)
                problems.append(Problem(path, f"unknown model {candidate!r}{hint}", "policy.unknown-model"))
    return problems


def _check_providers(policy: Policy, problems: list[Problem]) -> None:
    for name, config in policy.providers.items():
        if name in HOSTS:
            continue
        if config.kind is None:
            message = (
                f"provider {name!r} is not a built-in host, so it needs 'kind'{did_you_mean(name, HOSTS)}"
            )
            problems.append(Problem(("providers", name), message, "policy.missing-field", key=True))
        elif config.base_url is None and config.kind != "local":
            message = f"provider {name!r} is not a built-in host, so it needs 'base_url'"
            problems.append(Problem(("providers", name), message, "policy.missing-field", key=True))


def _resolve_models(policy: Policy, problems: list[Problem]) -> dict[str, ModelSpec]:
    known_providers = [*policy.providers, *HOSTS]
    models: dict[str, ModelSpec] = {}
    for name, entry in policy.models.items():
        base = _base_for(name, entry, policy)
        provider = entry.provider or (base.provider if base else None)
        if provider is None:
            message = f"model {name!r} is not in the catalog, so it needs 'provider'"
            problems.append(Problem(("models", name), message, "policy.missing-field", key=True))
            continue
        if provider not in known_providers:
            message = f"unknown provider {provider!r}{did_you_mean(provider, known_providers)}"
            problems.append(Problem(("models", name, "provider"), message, "policy.unknown-provider"))
            continue
        models[name] = _merge(name, entry, base, provider)
    return models


def _resolve_routes(
    policy: Policy, models: dict[str, ModelSpec], problems: list[Problem]
) -> dict[str, tuple[str, ...]]:
    catalog = load_catalog().models
    routes: dict[str, tuple[str, ...]] = {}
    for route_name, route in policy.routes.items():
        resolved: list[str] = []
        for i, candidate in enumerate(route.candidates):
            path: Path = ("routes", route_name, "candidates", i)
            full = resolve_model_name(policy, candidate)
            if full is None:
                hint = (
                    did_you_mean(candidate, model_names(policy.models)) if len(problems) < MAX_ERRORS else ""
                )
                problems.append(Problem(path, f"unknown model {candidate!r}{hint}", "policy.unknown-model"))
            elif full in resolved:
                problems.append(
                    Problem(path, f"model {candidate!r} is listed twice", "policy.duplicate-candidate")
                )
            elif full not in models and full not in catalog:
                continue  # a policy model that failed to resolve: already reported
            else:
                resolved.append(full)
                if full not in models:
                    models[full] = catalog[full]
        for key in route.balance_weights:
            if key not in route.candidates and resolve_model_name(policy, key) not in resolved:
                hint = did_you_mean(key, route.candidates)
                message = f"balance weight for {key!r}, which is not a candidate of this route{hint}"
                path = ("routes", route_name, "balance_weights", key)
                problems.append(Problem(path, message, "policy.unknown-model", key=True))
        for key in route.split:
            if key not in route.candidates and resolve_model_name(policy, key) not in resolved:
                hint = did_you_mean(key, route.candidates)
                message = f"split weight for {key!r}, which is not a candidate of this route{hint}"
                path = ("routes", route_name, "split", key)
                problems.append(Problem(path, message, "policy.unknown-model", key=True))
        if route.shadow is not None:
            _resolve_shadow(policy, route_name, route.shadow.candidate, models, problems)
        routes[route_name] = tuple(resolved)
    return routes


def _resolve_shadow(
    policy: Policy, route_name: str, candidate: str, models: dict[str, ModelSpec], problems: list[Problem]
) -> None:
    """A shadow candidate is any model the policy or catalog knows (it need not be a candidate)."""
    full = resolve_model_name(policy, candidate)
    if full is None:
        hint = did_you_mean(candidate, model_names(policy.models))
        path: Path = ("routes", route_name, "shadow", "candidate")
        problems.append(Problem(path, f"unknown shadow model {candidate!r}{hint}", "policy.unknown-model"))
        return
    catalog = load_catalog().models
    if full not in models and full in catalog:
        models[full] = catalog[full]


def build_index(policy: Policy) -> tuple[PolicyIndex, list[Problem]]:
    """Resolve ``policy``'s models and routes; return the index and every problem found."""
    problems: list[Problem] = []
    _check_providers(policy, problems)
    models = _resolve_models(policy, problems)
    routes = _resolve_routes(policy, models, problems)
    specs = {name: tuple(models[model] for model in candidates) for name, candidates in routes.items()}
    floats = {
        name: (float(spec.input_price) / 1e6, float(spec.output_price) / 1e6)
        for name, spec in models.items()
        if spec.input_price is not None and spec.output_price is not None
    }
    sources = (policy.providers, policy.models, policy.routes)
    index = PolicyIndex(models=models, routes=routes, route_specs=specs, float_prices=floats, sources=sources)
    return index, problems


def policy_index(policy: Policy) -> PolicyIndex:
    """The policy's index, built once and kept on the policy.

    Raises:
        PolicyError: when a reference does not resolve (only for policies not built by the loader,
            which reports these with their locations).
    """
    # Read pydantic's private-attribute dict directly: ``policy._index`` costs a __getattr__ detour,
    # and the router asks for the index on every request.
    private = policy.__pydantic_private__
    index = private.get("_index") if private is not None else None
    if isinstance(index, PolicyIndex) and index.built_from(policy):
        return index
    built, problems = build_index(policy)
    if problems:
        first = problems[0]
        raise PolicyError(
            first.message, code=first.code, errors=[PolicyError(p.message, code=p.code) for p in problems]
        )
    policy._index = built
    return built
