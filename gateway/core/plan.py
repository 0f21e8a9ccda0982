"""Turn a request's ``model`` into a ``Plan``: the candidates to try, in order.

Without a policy a plan has one candidate (see ``gateway/targets.py`` for how names resolve). With
a policy, ``route:NAME`` asks the router (``gateway/router.py``, a pure function) to order the
route's candidates from the live statistics and eval scores; a model the policy or the catalog
knows is served as the policy configures its provider.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from gateway.core.attempts import DEFAULT_FALLBACK_ON, Candidate, Plan
from gateway.core.errors import NotFoundError, PolicyError
from gateway.core.types import ChatRequest
from gateway.targets import ClientConfig, client_target, host_target, require_key, split_model, unknown_route
from providers.base import Target
from providers.hosts import HOSTS

if TYPE_CHECKING:
    from gateway.policy import Policy
    from gateway.router import EvalScore, StatsSnapshot
    from gateway.router import Plan as RouterPlan


class Planner:
    """Plans requests for one client: its own endpoint, the built-in hosts, and its policy if any."""

    def __init__(
        self,
        config: ClientConfig,
        policy: Policy | Callable[[], Policy] | None = None,
        *,
        stats: Callable[[], StatsSnapshot] | None = None,
        evals: Callable[[str | None], Mapping[str, EvalScore] | None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        # Exploration and ``balance: weighted`` draw from this; seed it for reproducible plans.
        self.rng = rng if rng is not None else random.Random()
        self._policy = policy
        self._stats = stats
        self._evals = evals
        self._targets: dict[str, Target] = {}
        self._targets_for: object = None

    @property
    def policy(self) -> Policy | None:
        """The current policy (a watched file's latest good version)."""
        policy = self._policy
        return policy() if callable(policy) else policy

    def plan(self, model: str, req: ChatRequest | None = None, client: ClientConfig | None = None) -> Plan:
        """``client``: the calling client's own endpoint for this request (else the planner's). The plan
        names the revision of the policy it was made under (``Plan.policy_revision``)."""
        policy = self.policy
        if model.startswith("route:"):
            plan = self._route(model.removeprefix("route:"), req, policy)
        elif policy is not None and _known_to_policy(policy, model):
            plan = Plan([Candidate(self._policy_target(model), model)], buffer_tokens=0)
        else:
            plan = Plan(
                [self.direct(model, client)], buffer_tokens=0
            )  # a direct model streams as the SDK does
        if policy is not None:
            plan.policy_revision = policy_revision(policy)
        return plan

    def direct(self, model: str, client: ClientConfig | None = None) -> Candidate:
        provider, name = split_model(model)
        if provider is None or provider == "openai":
            return Candidate(client_target(client or self.config, name), model)
        target = host_target(HOSTS[provider], name)
        require_key(target)
        return Candidate(target, model)

    def _route(self, name: str, req: ChatRequest | None, policy: Policy | None) -> Plan:
        from gateway import router

        if policy is None or name not in policy.routes:
            raise unknown_route(name)
        if req is None:
            raise NotFoundError(
                f"route {name!r} plans chat requests only",
                body={"message": "routes plan chat requests"},
                status_code=404,
            )
        route = policy.routes[name]
        snapshot = self._stats() if self._stats else router.StatsSnapshot()
        evals = self._evals(route.eval_set) if self._evals else None
        routed = router.plan(
            req, name, policy, snapshot, prompt_tokens=estimate_prompt_tokens(req), evals=evals, rng=self.rng
        )
        routed.require()
        return plan_for_route(policy, name, routed, self._policy_target)

    def _policy_target(self, model: str) -> Target:
        policy = self.policy
        if policy is not self._targets_for:  # a reloaded policy: targets may have changed
            self._targets, self._targets_for = {}, policy
        target = self._targets.get(model)
        if target is None:
            from gateway.policy.targets import resolve_target

            if policy is None:
                raise unknown_route(model)
            target = resolve_target(policy, model)
            require_key(target)
            self._targets[model] = target
        return target


def plan_for_route(
    policy: Policy, name: str, routed: RouterPlan, target_for: Callable[[str], Target]
) -> Plan:
    """The executor's plan: the router's order, with the route's retry, timeout, hedge and fallback settings."""
    from gateway.policy.references import policy_index
    from gateway.resilience.deadline import Timeouts
    from gateway.resilience.hedge import HedgeSettings
    from gateway.resilience.retry import RetrySettings

    route = policy.routes[name]
    retry = route.retry
    settings = RetrySettings(retry.max_retries, retry.initial_delay_s, retry.max_delay_s) if retry else None
    specs = {spec.name: spec for spec in policy_index(policy).route_specs.get(name, ())}
    candidates = []
    for c in routed.candidates:
        target = target_for(c.model)
        if route.drop_unsupported_params:
            target = replace(target, options={**target.options, "drop_unsupported_params": True})
        spec = specs.get(c.model)
        cost = float(c.cost_usd) if c.cost_usd is not None else None
        window = spec.context_window if spec is not None else None
        candidates.append(
            Candidate(
                target, c.model, c.reason, settings.max_retries if settings else None, settings, window, cost
            )
        )
    t = route.timeouts
    timeouts = (
        Timeouts(t.connect_s, t.read_s, t.first_token_s, t.stream_idle_s, t.total_s)
        if t is not None
        else None
    )
    h = route.hedge
    hedge = None
    if h is not None:
        after = h.after_ms / 1000 if h.after_ms is not None else None
        extra = float(h.max_extra_cost_usd) if h.max_extra_cost_usd is not None else None
        hedge = HedgeSettings(after_s=after, p95=h.p95, max_extra_cost_usd=extra)
    return Plan(
        candidates,
        route=name,
        details=routed,
        fallback_on=frozenset(route.fallback.on) if route.fallback is not None else DEFAULT_FALLBACK_ON,
        timeouts=timeouts,
        hedge=hedge,
        buffer_tokens=route.buffer_tokens,  # DEFAULT_BUFFER_TOKENS where the route sets none
        prompt_tokens=routed.prompt_tokens,
        max_candidates=route.fallback.max_attempts if route.fallback is not None else None,
    )


def _known_to_policy(policy: Policy, model: str) -> bool:
    from gateway.policy.references import resolve_model_name

    try:
        return resolve_model_name(policy, model) is not None and (
            model in policy.models or split_model(model)[0] is not None
        )
    except PolicyError:
        return False


def estimate_prompt_tokens(req: ChatRequest) -> int:
    """The prompt's size for routing (context-window filter, cost estimate): tiktoken, else chars/4."""
    from gateway.metering.tokens import count_chat

    count = count_chat(req.messages, req.model, req.tools)
    return count.tokens


_revisions: dict[int, tuple[Any, str]] = {}


def policy_revision(policy: Policy) -> str:
    """A short digest of a policy's content: equal for equal policies, new for every edited reload.
    Secrets are not in it (they dump masked). Computed once per policy object."""
    found = _revisions.get(id(policy))
    if found is not None and found[0] is policy:
        return found[1]
    import hashlib

    digest = hashlib.sha256(policy.model_dump_json().encode()).hexdigest()[:12]
    if len(_revisions) > 64:
        _revisions.clear()
    _revisions[id(policy)] = (policy, digest)
    return digest
