"""Calling one model directly, through Switchyard's request loop but around its router.

An eval must measure *the* model it names, never a fallback, so each call is a plan of exactly
one candidate run by the same executor the client uses (retries on 429/5xx with the usual
backoff, error mapping, the observer). Metering is therefore the client's: pass a
:class:`~gateway.metering.Meter` as ``observer`` and every eval call, judge calls included, becomes
a usage record under the route ``eval:<set>``.

A model name resolves as the client resolves ``model=``: a model of the policy (its provider,
base URL and key), a catalog entry or ``provider/model`` of a built-in host, else the client's
own endpoint (``OPENAI_BASE_URL``); with a policy, a name it cannot resolve is an error (a typo
should not silently hit another endpoint). The client's runtime (budgets, rate-limit guard, live
stats) is not involved: an eval is a measurement, spaced by the runner's own ``concurrency`` and
``rpm``, and its spend is visible in usage under the route ``eval:<set>``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gateway.core.attempts import Candidate, NullObserver, Observer, Plan
from gateway.core.execute import Executor
from gateway.core.types import ChatCompletion, ChatRequest
from gateway.metering.pricing import PriceTable
from gateway.policy.schema import Policy
from gateway.resilience.retry import RetrySettings

__all__ = ["CallResult", "ModelCaller", "adapter_revision", "canonical_model", "price_table"]

DEFAULT_EVAL_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class CallResult:
    """One completed call: the reply, its cost and how long it took."""

    completion: ChatCompletion
    cost_usd: Decimal | None
    latency_s: float
    prompt_tokens: int
    completion_tokens: int


def canonical_model(policy: Policy | None, model: str) -> str:
    """The name the router and the store use for ``model`` (``gpt-4o-mini`` -> ``openai/gpt-4o-mini``).

    Example:
        >>> canonical_model(None, "my-model")
        'my-model'
    """
    if policy is None:
        from gateway.catalog import load_catalog

        catalog = load_catalog().models
        if model in catalog:
            return model
        matches = [name for name, spec in catalog.items() if spec.upstream == model]
        return matches[0] if len(matches) == 1 else model
    from gateway.policy.references import resolve_model_name

    return resolve_model_name(policy, model) or model


class ModelCaller:
    """Calls models by name, one candidate per call, and prices each call.

    Args:
        policy: Where models, providers and prices come from; ``None`` for catalog and env only.
        observer: Receives every attempt (a ``Meter`` to meter eval and judge calls).
        max_retries: Retries of one call on 429, 5xx and connection errors.
        timeout: Seconds per attempt.
        http_client: An ``httpx.Client`` to send with (one is made, and closed by :meth:`close`).
        prices: Overrides the policy's and the catalog's prices.
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        observer: Observer | None = None,
        max_retries: int = 2,
        timeout: float = DEFAULT_EVAL_TIMEOUT_S,
        http_client: Any = None,
        prices: PriceTable | None = None,
    ) -> None:
        self.policy = policy
        self._owns_http = http_client is None
        self._http = http_client or _default_http(timeout)
        self._timeout = timeout
        self._executor = Executor(
            self._http,
            observer=observer if observer is not None else NullObserver(),
            retry=RetrySettings(max_retries=max_retries),
        )
        self.prices = prices if prices is not None else price_table(policy)
        self._candidates: dict[str, Candidate] = {}
        self._lock = threading.Lock()

    def candidate(self, model: str) -> Candidate:
        """The one deployment ``model`` names (resolved once, then cached)."""
        with self._lock:
            found = self._candidates.get(model)
        if found is None:
            found = _resolve(self.policy, model)
            with self._lock:
                self._candidates[model] = found
        return found

    def revision(self, model: str) -> str:
        """What identifies the weights behind ``model`` beyond its name: ``""`` for most models.

        A local model with LoRA adapters (``local/<base>+<adapter folder>``) keeps its name when
        it is tuned again, so its cached eval cases must not outlive the adapter: the revision
        is a digest of the adapter files' sizes and modification times.
        """
        target = self.candidate(model).target
        if target.provider != "local" or "+" not in target.model:
            return ""
        return adapter_revision(_adapter_folders(target))

    def call(
        self,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        request: Mapping[str, Any] | None = None,
        route: str | None = None,
    ) -> CallResult:
        """Send one chat completion to ``model`` and nothing else.

        Args:
            model: A policy model, catalog name, ``provider/model`` or a name of the client endpoint.
            messages: The conversation.
            request: Extra request fields (``tools``, ``response_format``, ``temperature``…).
            route: The label usage records carry (``eval:<set>``).

        Raises:
            APIError: The model failed after its retries (the error of its last attempt).
        """
        candidate = self.candidate(model)
        body: dict[str, Any] = {
            **(request or {}),
            "model": candidate.target.model,
            "messages": list(messages),
        }
        started = time.perf_counter()
        reply = self._executor.complete(
            ChatRequest.model_validate(body),
            Plan([candidate], route=route),
            headers={},
            timeout=self._timeout,
        )
        latency = time.perf_counter() - started
        usage = reply.usage
        prompt = usage.prompt_tokens if usage is not None else 0
        completion = usage.completion_tokens if usage is not None else 0
        cost = self.prices.cost(
            candidate.name,
            prompt_tokens=prompt,
            completion_tokens=completion,
            provider=candidate.target.provider,
        )
        return CallResult(reply, cost, latency, prompt, completion)

    def redact(self, text: str) -> str:
        """``text`` without the API keys of the models called so far (an upstream may echo one)."""
        from gateway._redact import redact

        with self._lock:
            keys = [c.target.api_key for c in self._candidates.values() if c.target.api_key]
        return redact(text, keys)

    def close(self) -> None:
        """Close the HTTP client if this caller made it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> ModelCaller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _adapter_folders(target: Any) -> list[str]:
    """The adapter folders the local engine would read (resolved under the model roots), or the names
    as written where they do not resolve (the call then fails with the engine's own error)."""
    from providers.local import adapter_folders

    names: list[str] = target.model.split("+")[1:]
    return adapter_folders(names, dict(target.options)) or names


def adapter_revision(folders: Sequence[str]) -> str:
    """A short digest of the files in adapter ``folders`` (size and mtime); ``"missing"`` parts stay.

    Example:
        >>> adapter_revision(["/no/such/adapter"])
        '+8342d12757'
    """
    import hashlib
    import os

    digest = hashlib.sha256()
    for folder in folders:
        digest.update(folder.encode())
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        for name in names:
            stat = os.stat(os.path.join(folder, name))
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return "+" + digest.hexdigest()[:10]


def price_table(policy: Policy | None) -> PriceTable:
    """The catalog's prices overlaid with the policy's models' (what eval costs are computed with)."""
    from gateway.catalog import load_catalog

    specs = dict(load_catalog().models)
    if policy is not None:
        from gateway.policy.references import policy_index

        specs.update(policy_index(policy).models)
    return PriceTable.from_specs(specs.values())


def _resolve(policy: Policy | None, model: str) -> Candidate:
    from gateway.core.plan import Planner
    from gateway.targets import client_config_from_env, split_model

    if policy is not None:
        from gateway.policy.references import resolve_model_name
        from gateway.policy.targets import resolve_target

        name = resolve_model_name(policy, model)
        if name is not None or split_model(model)[0] is None:
            # With a policy, a name it cannot resolve is a typo far more often than a model of
            # the client's own endpoint: resolve_target raises PolicyError with a did-you-mean.
            return Candidate(resolve_target(policy, name or model), name or model, reason=_REASON)
    config = client_config_from_env(
        api_key=None, base_url=None, organization=None, project=None, default_headers=None, default_query=None
    )
    direct = Planner(config).direct(model)
    return Candidate(direct.target, canonical_model(None, model), reason=_REASON)


_REASON = "eval: called directly"


def _default_http(timeout: float) -> Any:
    """The openai SDK's default HTTP client (httpx2 under openai 3.x, httpx under 2.x)."""
    import openai

    return openai.DefaultHttpxClient(timeout=timeout)
