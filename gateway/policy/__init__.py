"""Policy files: what platform teams write to decide routing, budgets, limits and fallbacks.

A policy is YAML, TOML or JSON. ``load_policy`` reads it safely, expands ``${ENV}`` references,
validates it against the schema below (unknown keys are errors, with a did-you-mean) and resolves
every model name, then either returns a ``Policy`` or raises one ``PolicyError`` listing every
problem with its file, line, column and field path.

```
Policy
├── version: 1
├── providers: {name -> ProviderConfig}      a built-in host name (openai, groq, …) inherits its fields
│   ├── kind: openai | anthropic | gemini | local
│   ├── base_url, api_key: ${ENV_VAR} (secret), api_version
│   └── headers: {name -> value (secret)}, options: {name -> scalar}
├── models: {name -> ModelEntry}             overrides the catalog entry of the same name, field by field
│   ├── provider, model (upstream name)
│   ├── price: {input, cached_input, output,        USD per 1M tokens, Decimal
│   │          cache_write, cache_write_1h}          cache writes: 5-minute and 1-hour TTL
│   ├── context_window, max_output
│   ├── capabilities: {tools, vision, json_schema, streaming}
│   ├── tags: [local, …]
│   └── quality (prior, 0..1), ttft_s, tokens_per_s (speed priors)
├── routes: {name -> Route}
│   ├── candidates: [model name, …]                 declared order breaks ties
│   ├── weights: {quality, speed, cost}  |  minimize: cost | latency
│   ├── min_quality, max_latency_ms, max_cost_usd   constraints
│   ├── requires: [tools | vision | json_schema | streaming]
│   ├── data: any | local_only
│   ├── balance: weighted | least_busy, balance_weights: {model -> weight}
│   ├── explore (share, 0..1), expected_output_tokens
│   ├── fallback: {on: [rate_limit, server_error, timeout, connection,
│   │              context_length, content_filter, auth], max_attempts}
│   ├── retry: {max_retries, initial_delay_s, max_delay_s}
│   ├── timeouts: {connect_s, read_s, first_token_s, stream_idle_s, total_s}
│   ├── hedge: {after_ms | p95: true, max_extra_cost_usd}
│   ├── shadow: {candidate, share}                  a sampled copy, in the background
│   ├── split: {model -> weight}                    an A/B test: draws the head
│   └── buffer_tokens, drop_unsupported_params, eval_set
├── budgets: {name -> Budget}
│   ├── match: {team, key, route, user}              absent fields match everything
│   ├── window: minute | hour | day | month
│   ├── limit_usd | limit_tokens
│   └── on_exceed: reject | cheaper
├── rate_limits: {name -> RateLimit}
│   └── match, rpm, tpm, burst
├── state: {backend: memory | sqlite | redis, path, url: ${ENV} (secret), key_prefix, lease_s: 30,
│   │          busy_timeout_s: 10 (sqlite)}
│   └── fail_open: bool | {budgets: false, rate_limits, breakers, live_stats: true}
└── telemetry: {capture_content, service_name}
```

Example:
    >>> from gateway.policy import parse_policy
    >>> policy = parse_policy("version: 1\\nroutes: {chat: {candidates: [gpt-4o-mini]}}")
    >>> policy.routes["chat"].candidates
    ['gpt-4o-mini']
"""

from __future__ import annotations

from gateway.policy._source import MAX_POLICY_BYTES, Location, SourceMap
from gateway.policy.lint import LintWarning, lint_policy
from gateway.policy.loader import load_policy, location_of, parse_policy, source_map
from gateway.policy.references import PolicyIndex, policy_index, resolve_model_name
from gateway.policy.reload import PolicyWatcher
from gateway.policy.schema import (
    Budget,
    Capability,
    Fallback,
    FallbackTrigger,
    Hedge,
    Match,
    ModelCapabilities,
    ModelEntry,
    Policy,
    Price,
    ProviderConfig,
    ProviderKind,
    RateLimit,
    Retry,
    Route,
    StateConfig,
    Telemetry,
    Timeouts,
    Weights,
)
from gateway.policy.targets import resolve_target, resolve_target_config

__all__ = [
    "MAX_POLICY_BYTES",
    "Budget",
    "Capability",
    "Fallback",
    "FallbackTrigger",
    "Hedge",
    "LintWarning",
    "Location",
    "Match",
    "ModelCapabilities",
    "ModelEntry",
    "Policy",
    "PolicyIndex",
    "PolicyWatcher",
    "Price",
    "ProviderConfig",
    "ProviderKind",
    "RateLimit",
    "Retry",
    "Route",
    "SourceMap",
    "StateConfig",
    "Telemetry",
    "Timeouts",
    "Weights",
    "lint_policy",
    "load_policy",
    "location_of",
    "parse_policy",
    "policy_index",
    "resolve_model_name",
    "resolve_target",
    "resolve_target_config",
    "source_map",
]
