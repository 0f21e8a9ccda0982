"""Turn a request's ``model`` into a ``Plan``: the candidates to try, in order.

Without a policy a plan has one candidate (see ``gateway/targets.py`` for how names resolve). With
a policy, ``route:NAME`` asks the router (``gateway/router.py``) to order the route's candidates
from the live statistics; a model the policy declares is served as the policy configures it.
"""

from __future__ import annotations

from typing import Any

from gateway.attempts import Candidate, Plan
from gateway.targets import ClientConfig, client_target, host_target, require_key, split_model, unknown_route
from gateway.types import ChatRequest
from providers.hosts import HOSTS


class Planner:
    """Plans requests for one client: its own endpoint, the built-in hosts, and its policy if any."""

    def __init__(self, config: ClientConfig, policy: Any = None) -> None:
        self.config = config
        self.policy = policy

    def plan(self, model: str, req: ChatRequest | None = None) -> Plan:
        if model.startswith("route:"):
            raise unknown_route(model.removeprefix("route:"))
        return Plan([self.direct(model)])

    def direct(self, model: str) -> Candidate:
        provider, name = split_model(model)
        if provider is None or provider == "openai":
            return Candidate(client_target(self.config, name), model)
        target = host_target(HOSTS[provider], name)
        require_key(target)
        return Candidate(target, model)
