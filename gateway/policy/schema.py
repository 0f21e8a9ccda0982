"""The policy file's schema: pydantic models with ``extra="forbid"`` wherever users write.

Defaults for retries and timeouts match the openai SDK (see ``gateway/_constants.py``). Values that
can only be judged against the rest of the policy (a route naming an unknown model) are checked by
``gateway.policy.references``; settings that are legal but unwise are reported by
``gateway.policy.lint``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, model_validator

from gateway.capture.config import CaptureConfig

__all__ = [
    "BUILTIN_DEFAULT_WEIGHTS",
    "BreakerPolicy",
    "Budget",
    "Capability",
    "Fallback",
    "FallbackTrigger",
    "Hedge",
    "Match",
    "ModelCapabilities",
    "ModelEntry",
    "Policy",
    "Price",
    "ProviderConfig",
    "ProviderKind",
    "RateLimit",
    "Retry",
    "Route",
    "Shadow",
    "StateConfig",
    "Telemetry",
    "Timeouts",
    "Utility",
    "Weights",
]

ProviderKind: TypeAlias = Literal["openai", "anthropic", "gemini", "local"]
Capability: TypeAlias = Literal["tools", "vision", "json_schema", "streaming"]
FallbackTrigger: TypeAlias = Literal[
    "rate_limit", "server_error", "timeout", "connection", "context_length", "content_filter", "auth"
]
DEFAULT_FALLBACK_ON: tuple[FallbackTrigger, ...] = ("rate_limit", "server_error", "timeout", "connection")
Window: TypeAlias = Literal["minute", "hour", "day", "month"]


class _Section(BaseModel):
    # hide_input_in_errors: a value may have come from ${ENV}; errors must never echo it.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True, protected_namespaces=())


class ProviderConfig(_Section):
    """One deployment. A name that matches a built-in host (``openai``, ``groq``…) inherits its fields."""

    kind: ProviderKind | None = None
    base_url: str | None = None
    api_key: SecretStr | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    api_version: str | None = None
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)


class Price(_Section):
    """USD per one million tokens. A field left out keeps the catalog's (or genai-prices') value."""

    input: Decimal | None = Field(default=None, ge=0)
    cached_input: Decimal | None = Field(default=None, ge=0, description="prompt tokens read from the cache")
    output: Decimal | None = Field(default=None, ge=0)
    cache_write: Decimal | None = Field(
        default=None, ge=0, description="prompt tokens written to the cache (Anthropic: the 5-minute TTL)"
    )
    cache_write_1h: Decimal | None = Field(
        default=None, ge=0, description="prompt tokens written to the cache with a 1-hour TTL (Anthropic)"
    )


class ModelCapabilities(_Section):
    tools: bool | None = None
    vision: bool | None = None
    json_schema: bool | None = None
    streaming: bool | None = None


class BreakerPolicy(_Section):
    """A deployment's circuit breaker (see ``gateway/resilience/breaker.py``)."""

    window_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)
    min_calls: int = Field(default=10, ge=1)
    error_rate: float = Field(default=0.5, gt=0, le=1)
    cooldown_s: float = Field(default=30.0, gt=0, allow_inf_nan=False)
    cooldown_factor: float = Field(default=2.0, ge=1, allow_inf_nan=False)
    max_cooldown_s: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    half_open_probes: int = Field(
        default=1, ge=1, description="successful probes in a row, one at a time, that close it again"
    )


class ModelEntry(_Section):
    """A model: every field overrides the catalog entry of the same name, if there is one."""

    provider: str | None = None
    model: str | None = Field(default=None, description="the upstream model name")
    price: Price | None = None
    context_window: int | None = Field(default=None, gt=0)
    max_output: int | None = Field(default=None, gt=0)
    capabilities: ModelCapabilities | None = None
    tags: list[str] | None = None
    quality: float | None = Field(default=None, ge=0, le=1, description="prior quality, 0..1")
    ttft_s: float | None = Field(default=None, gt=0, description="prior time to first token")
    tokens_per_s: float | None = Field(default=None, gt=0, description="prior output speed")
    breaker: BreakerPolicy | None = None


class Weights(_Section):
    quality: float = Field(default=0.0, ge=0)
    speed: float = Field(default=0.0, ge=0)
    cost: float = Field(default=0.0, ge=0)


BUILTIN_DEFAULT_WEIGHTS = Weights(quality=0.5, speed=0.25, cost=0.25)


class Utility(_Section):
    """Exchange rates into dollars: what a route is willing to pay, per 1,000 requests, for one
    quality point (0.01 on the 0..1 scale) and against one second of time to first token or of
    total latency. The router maximises value minus expected cost, per candidate, on its own."""

    quality_usd_per_1k: float = Field(default=2.0, ge=0, allow_inf_nan=False)
    ttft_usd_per_1k: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    latency_usd_per_1k: float = Field(default=1.0, ge=0, allow_inf_nan=False)
    tie_break: Literal["cost", "quality", "latency"] = "cost"


def _default_fallback_on() -> list[FallbackTrigger]:
    return list(DEFAULT_FALLBACK_ON)


class Fallback(_Section):
    on: list[FallbackTrigger] = Field(default_factory=_default_fallback_on)
    max_attempts: int = 3  # legal but unwise values (< 1) are a lint, not a schema error


class Retry(_Section):
    max_retries: int = 2
    initial_delay_s: float = 0.5
    max_delay_s: float = 8.0


class Timeouts(_Section):
    """A route's timeouts in seconds. The defaults respect ``total_s``: with ``total_s: 3`` and no
    ``connect_s``, connecting may take the whole 3 s (not the default 5); a ``connect_s`` written
    longer than ``total_s`` is refused here, at load time, since no attempt could use it."""

    connect_s: float = Field(default=5.0, gt=0, allow_inf_nan=False)
    read_s: float = Field(default=600.0, gt=0, allow_inf_nan=False)
    first_token_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    stream_idle_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    total_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _within_total(self) -> Timeouts:
        total = self.total_s
        if total is None:
            return self
        if "connect_s" in self.model_fields_set and self.connect_s > total:
            raise ValueError(
                f"connect_s ({self.connect_s}) is longer than total_s ({total}): no attempt could "
                "wait that long; lower connect_s or raise total_s"
            )
        for name in ("connect_s", "read_s"):
            if name not in self.model_fields_set and getattr(self, name) > total:
                object.__setattr__(self, name, total)  # frozen model: a default lowered once, at load
        return self


class Hedge(_Section):
    """Send a second request when the first is slow: after a fixed delay or the observed p95."""

    after_ms: int | None = Field(default=None, gt=0)
    p95: bool = False
    max_extra_cost_usd: Decimal | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _one_trigger(self) -> Hedge:
        if (self.after_ms is None) == (not self.p95):
            raise ValueError("hedge needs exactly one of 'after_ms' or 'p95: true'")
        return self


class Shadow(_Section):
    """Send a sampled copy of a route's requests to ``candidate`` in the background: the copy's
    answer is never returned to the caller, it never delays the caller, and its usage is metered
    under the route ``shadow:<route>`` (its own line in ``switchyard usage --by route``)."""

    candidate: str
    share: float = Field(gt=0, le=1, description="the share of the route's requests copied, 0..1")


class Route(_Section):
    """A named choice among candidate models, with an objective, constraints and resilience settings."""

    candidates: list[str] = Field(min_length=1)
    weights: Weights | None = None
    utility: Utility | None = None
    minimize: Literal["cost", "latency"] | None = None
    min_quality: float | None = Field(default=None, ge=0, le=1)
    max_latency_ms: float | None = Field(default=None, gt=0)
    max_ttft_s: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    max_cost_usd: Decimal | None = Field(default=None, ge=0)
    requires: list[Capability] = Field(default_factory=list)
    data: Literal["any", "local_only"] = "any"
    balance: Literal["weighted", "least_busy"] | None = None
    balance_weights: dict[str, float] = Field(default_factory=dict)
    explore: float = Field(default=0.0, ge=0, le=1)
    expected_output_tokens: int = Field(default=256, gt=0)
    fallback: Fallback = Field(default_factory=Fallback)
    retry: Retry = Field(default_factory=Retry)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    hedge: Hedge | None = None
    # the first N content chunks of a stream held back so a failure inside them still falls back;
    # the default is gateway.core.attempts.DEFAULT_BUFFER_TOKENS (a test keeps the two equal)
    buffer_tokens: int = Field(default=4, ge=0)
    drop_unsupported_params: bool = False
    eval_set: str | None = None
    shadow: Shadow | None = None
    # An A/B test: the head is drawn from these weights (candidates of the route), before explore
    # and balance; the others stay in utility order as fallbacks (``switchyard eval report --split``).
    split: dict[str, float] = Field(default_factory=dict)
    capture: CaptureConfig | None = None  # keep replies as a dataset (gateway/capture)

    @model_validator(mode="after")
    def _one_objective(self) -> Route:
        if sum(x is not None for x in (self.weights, self.utility, self.minimize)) > 1:
            raise ValueError("a route takes one objective of 'utility', 'weights' or 'minimize', not both")
        if self.split and (any(w < 0 for w in self.split.values()) or sum(self.split.values()) <= 0):
            raise ValueError(
                "split weights must be >= 0 with a positive sum, e.g. {model-a: 0.5, model-b: 0.5}"
            )
        return self

    @property
    def effective_weights(self) -> Weights:
        """The weights the router uses: the route's own, or ``BUILTIN_DEFAULT_WEIGHTS``."""
        return self.weights if self.weights is not None else BUILTIN_DEFAULT_WEIGHTS


class Match(_Section):
    """Which requests a budget or rate limit counts; an absent field matches everything."""

    team: str | None = None
    key: str | None = None
    route: str | None = None
    user: str | None = None


class Budget(_Section):
    match: Match = Field(default_factory=Match)
    window: Window
    limit_usd: Decimal | None = Field(default=None, ge=0)
    limit_tokens: int | None = Field(default=None, ge=0)
    on_exceed: Literal["reject", "cheaper"] = "reject"

    @model_validator(mode="after")
    def _one_limit(self) -> Budget:
        if (self.limit_usd is None) == (self.limit_tokens is None):
            raise ValueError("a budget needs exactly one of 'limit_usd' or 'limit_tokens'")
        return self


class RateLimit(_Section):
    match: Match = Field(default_factory=Match)
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _some_limit(self) -> RateLimit:
        if self.rpm is None and self.tpm is None:
            raise ValueError("a rate limit needs 'rpm', 'tpm' or both")
        return self


class FailOpen(_Section):
    """Which concerns carry on with process-local state while the state backend is unreachable
    (``gateway/state/outage.py``). Budgets guard money: they fail closed unless set here."""

    budgets: bool = False
    rate_limits: bool = True
    breakers: bool = True
    live_stats: bool = True


class StateConfig(_Section):
    backend: Literal["memory", "sqlite", "redis"] = "memory"
    path: str | None = None
    url: SecretStr | None = None
    key_prefix: str = "switchyard:"
    # A bool sets rate_limits, breakers and live_stats; budgets only through the mapping.
    fail_open: bool | FailOpen = Field(default_factory=FailOpen)
    # How long a budget hold outlives its process (the heartbeat renews live ones every lease_s / 3).
    lease_s: float = Field(default=30.0, gt=0, le=3600)
    # SQLite only: how long a call waits for another process's write lock before the file counts as
    # unavailable (fail_open then degrades). The default is SQLiteBackend's DEFAULT_BUSY_TIMEOUT_S;
    # at most the SDK's 10-minute request timeout, past which no caller is still waiting.
    busy_timeout_s: float = Field(default=10.0, gt=0, le=600, allow_inf_nan=False)

    @model_validator(mode="after")
    def _backend_needs(self) -> StateConfig:
        if self.backend == "sqlite" and not self.path:
            raise ValueError("backend 'sqlite' needs 'path'")
        if self.backend == "redis" and self.url is None:
            raise ValueError("backend 'redis' needs 'url'")
        return self


class EvalsConfig(_Section):
    """How a running client reads eval scores (``gateway/evals/store.py``, ``EvalScores``)."""

    refresh_s: float = Field(
        default=60.0, ge=0, allow_inf_nan=False,
        description="how long a set's scores are reused before the store is read again (0: every plan)",
    )  # fmt: skip
    max_age_s: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="scores older than this are ignored (the prior stands in)",
    )


class Telemetry(_Section):
    capture_content: bool = False
    service_name: str = "switchyard"


class Policy(_Section):
    """A whole policy file. Build it with ``load_policy`` or ``parse_policy`` to get located errors."""

    version: Literal[1]
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    models: dict[str, ModelEntry] = Field(default_factory=dict)
    routes: dict[str, Route] = Field(default_factory=dict)
    budgets: dict[str, Budget] = Field(default_factory=dict)
    rate_limits: dict[str, RateLimit] = Field(default_factory=dict)
    state: StateConfig = Field(default_factory=StateConfig)
    telemetry: Telemetry = Field(default_factory=Telemetry)
    evals: EvalsConfig = Field(default_factory=EvalsConfig)

    # Filled by the loader: where each value came from, and the resolved model table (see index).
    _source: object = PrivateAttr(default=None)
    _index: object = PrivateAttr(default=None)

    def __eq__(self, other: object) -> bool:
        # Equal content is an equal policy, wherever it was loaded from (the private attrs differ).
        if not isinstance(other, Policy):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # holds dicts: not hashable, as pydantic's would fail anyway
