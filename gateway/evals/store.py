"""The eval store: results in the state backend, and the router's view of them.

Everything lives in the :class:`~gateway.state.base.StateBackend`'s persistent kinds, so the same
store works on memory, SQLite and Redis. By default (:func:`store_config`) it is the policy's own
state backend when that is SQLite or Redis, so every gateway process reads the scores the evals
wrote; else ``.switchyard/evals.sqlite`` in the working directory. What it keeps:

- ``put_eval(set, model, summary)``: the latest :class:`ModelSummary` of a model on a set, with its
  time and set version; this is what the router reads;
- ``evalcase:[set, version, model, case]``: each case's result, so a run can resume;
- ``evalmodels:set``: the models measured on a set; ``evalhistory:[set, model]``: past summaries.

The router's quality for a candidate of a route is its latest score on the route's ``eval_set``,
else the policy's (or catalog's) prior. :func:`route_evals` builds the ``evals=`` mapping
``gateway.router.plan`` takes; :func:`route_quality` says, per candidate, which number is used,
where it came from and how old it is (what ``switchyard eval explain`` prints).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from gateway.evals.results import CaseResult, ModelSummary
from gateway.policy.schema import Policy
from gateway.router import DEFAULT_QUALITY, EvalScore
from gateway.state import BackendConfig, policy_backend_config
from gateway.state.base import StateBackend

__all__ = [
    "DEFAULT_STORE_PATH",
    "EvalScores",
    "EvalStore",
    "QualityEvidence",
    "SCORE_REFRESH_S",
    "format_quality",
    "route_evals",
    "route_quality",
    "set_scores",
    "store_config",
]

DEFAULT_STORE_PATH = ".switchyard/evals.sqlite"
# How long a running client reuses a set's scores before reading the store again: a new
# ``eval run`` reaches its routing at the first route plan at most this long after the run stored it.
SCORE_REFRESH_S = 60.0
HISTORY_LENGTH = 50


class EvalStore:
    """Eval results on a state backend.

    Args:
        backend: Any :class:`StateBackend`; open one with ``gateway.state.open_backend(url)``.

    Example:
        >>> from gateway.state import open_backend
        >>> store = EvalStore(open_backend("memory://"))
        >>> store.models("support")
        []
    """

    def __init__(self, backend: StateBackend) -> None:
        self.backend = backend
        self._index_lock = threading.Lock()

    @classmethod
    def open(cls, url_or_config: str | BackendConfig | None = None) -> EvalStore:
        """Open the backend a URL or config names (default: :func:`store_config` ``(None)``).

        A SQLite file's folder is created if missing.
        """
        from gateway.state import open_backend

        config = (
            url_or_config if isinstance(url_or_config, BackendConfig) else store_config(None, url_or_config)
        )
        if config.url.startswith("sqlite://"):
            os.makedirs(os.path.dirname(config.url.removeprefix("sqlite://")) or ".", exist_ok=True)
        return cls(open_backend(config))

    def close(self) -> None:
        """Close the backend."""
        self.backend.close()

    # --- per case (resumability) -----------------------------------------------------------------

    def get_case(self, eval_set: str, version: str, model: str, case_id: str) -> CaseResult | None:
        """A cached case result of this exact set version, or ``None``."""
        value = self.backend.get_json(_case_key(eval_set, version, model, case_id))
        return None if value is None else CaseResult.from_json(value)

    def put_case(self, eval_set: str, version: str, result: CaseResult) -> None:
        """Cache a case result under its set version, model and case."""
        self.backend.set_json(_case_key(eval_set, version, result.model, result.case_id), result.to_json())

    # --- per model (what the router reads) -------------------------------------------------------

    def put_summary(self, summary: ModelSummary) -> None:
        """Store a model's summary as its latest on the set, and append it to its history."""
        data = summary.to_json()
        self.backend.put_eval(summary.eval_set, summary.model, data)
        with self._index_lock:
            models = self.models(summary.eval_set)
            if summary.model not in models:
                self.backend.set_json(_models_key(summary.eval_set), sorted([*models, summary.model]))
            history_key = "evalhistory:" + json.dumps([summary.eval_set, summary.model])
            history = list(self.backend.get_json(history_key) or [])
            self.backend.set_json(history_key, [*history, data][-HISTORY_LENGTH:])

    def latest(self, eval_set: str, model: str) -> ModelSummary | None:
        """The latest summary of ``model`` on ``eval_set``, or ``None``."""
        value = self.backend.latest_eval(eval_set, model)
        return None if value is None else ModelSummary.from_json(value)

    def models(self, eval_set: str) -> list[str]:
        """The models with a stored summary on ``eval_set``."""
        return [str(m) for m in self.backend.get_json(_models_key(eval_set)) or []]

    def summaries(self, eval_set: str) -> list[ModelSummary]:
        """The latest summary of every model measured on ``eval_set``."""
        found = (self.latest(eval_set, model) for model in self.models(eval_set))
        return [s for s in found if s is not None]

    def history(self, eval_set: str, model: str) -> list[ModelSummary]:
        """Past summaries of ``model`` on ``eval_set``, oldest first (the last 50)."""
        raw = self.backend.get_json("evalhistory:" + json.dumps([eval_set, model])) or []
        return [ModelSummary.from_json(item) for item in raw]


def store_config(policy: Policy | None, url: str | None = None) -> BackendConfig:
    """Where eval results go: ``url`` if given, else the policy's SQLite or Redis state, else
    ``.switchyard/evals.sqlite`` under the working directory.

    Example:
        >>> store_config(None, "memory://").url
        'memory://'
    """
    if url:
        return BackendConfig(url)
    if policy is not None:
        config = dataclasses.replace(policy_backend_config(policy.state), fail_open=None)
        if config.url != "memory://":
            return config
    return BackendConfig(f"sqlite://{os.path.abspath(DEFAULT_STORE_PATH)}")


def _case_key(eval_set: str, version: str, model: str, case_id: str) -> str:
    return "evalcase:" + json.dumps([eval_set, version, model, case_id])


def _models_key(eval_set: str) -> str:
    return "evalmodels:" + json.dumps(eval_set)


@dataclass(frozen=True, slots=True)
class QualityEvidence:
    """The quality the router uses for one candidate of a route, and where it comes from.

    Attributes:
        model: The candidate's canonical name.
        quality: The number the router uses, 0..1.
        source: ``eval`` (the store), ``prior`` (policy or catalog) or ``default`` (neither).
        eval_set: The route's eval set, if it has one.
        set_version: The version the score was measured on.
        samples: Cases behind the score.
        measured_at: When, Unix seconds.
        age_s: How old the score is.
        ci: The score's 95% interval.
    """

    model: str
    quality: float
    source: Literal["eval", "prior", "default"]
    eval_set: str | None = None
    set_version: str | None = None
    samples: int = 0
    measured_at: float | None = None
    age_s: float | None = None
    ci: tuple[float, float] | None = None

    def describe(self) -> str:
        """One line for people: ``0.82 from eval set support v1a2b (40 cases, 2.5 h old)``."""
        if self.source != "eval":
            note = f" (no eval on set {self.eval_set!r})" if self.eval_set else " (the route has no eval_set)"
            return f"{self.quality:.2f} from the {self.source}{note}"
        ci = f", 95% CI {self.ci[0]:.2f}-{self.ci[1]:.2f}" if self.ci else ""
        return (
            f"{self.quality:.2f} from eval set {self.eval_set!r} v{self.set_version} "
            f"({self.samples} cases{ci}, {format_age(self.age_s or 0.0)} old)"
        )


def format_age(seconds: float) -> str:
    """``42 s``, ``5 min``, ``2.5 h``, ``3.0 d``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def format_quality(evidence: Sequence[QualityEvidence], indent: str = "    ") -> str:
    """One line per candidate, ``model  0.82 from eval set 'support' v1a2b (40 cases, …, 2.5 h old)``.

    Example:
        >>> print(format_quality([QualityEvidence("gpt-4o", 0.7, "prior", None)]), end="")
            gpt-4o  0.70 from the prior (the route has no eval_set)
    """
    width = max((len(e.model) for e in evidence), default=0)
    return "".join(f"{indent}{e.model:<{width}}  {e.describe()}\n" for e in evidence)


def route_quality(
    store: EvalStore,
    policy: Policy,
    route: str,
    *,
    now: float | None = None,
    max_age_s: float | None = None,
) -> list[QualityEvidence]:
    """For each candidate of ``route``: the quality the router will use, and its provenance.

    Args:
        store: The eval store.
        policy: The loaded policy.
        route: A route name (``support`` or ``route:support``).
        now: The current time (``time.time()`` by default).
        max_age_s: Ignore scores older than this (the prior stands in).

    Raises:
        KeyError: The policy has no such route.
    """
    from gateway.policy.references import policy_index

    name = route.removeprefix("route:")
    settings = policy.routes[name]
    index = policy_index(policy)
    now = time.time() if now is None else now
    out: list[QualityEvidence] = []
    for model in index.routes[name]:
        summary = store.latest(settings.eval_set, model) if settings.eval_set else None
        age = None if summary is None else max(0.0, now - summary.finished_at)
        if summary is not None and summary.scored > 0 and (max_age_s is None or (age or 0.0) <= max_age_s):
            out.append(
                QualityEvidence(
                    model,
                    summary.mean,
                    "eval",
                    settings.eval_set,
                    summary.set_version,
                    summary.scored,
                    summary.finished_at,
                    age,
                    (summary.ci_low, summary.ci_high),
                )  # fmt: skip
            )
            continue
        prior = index.models[model].quality
        source: Literal["prior", "default"] = "prior" if prior is not None else "default"
        quality = prior if prior is not None else DEFAULT_QUALITY
        out.append(QualityEvidence(model, quality, source, settings.eval_set))
    return out


def route_evals(
    store: EvalStore, policy: Policy, route: str, *, now: float | None = None, max_age_s: float | None = None
) -> dict[str, EvalScore]:
    """The ``evals=`` mapping ``gateway.router.plan`` takes for ``route``: measured models only.

    Example:
        >>> from gateway.policy import parse_policy
        >>> from gateway.state import open_backend
        >>> policy = parse_policy("version: 1\\nroutes: {chat: {candidates: [gpt-4o-mini], eval_set: chat}}")
        >>> route_evals(EvalStore(open_backend("memory://")), policy, "chat")
        {}
    """
    evidence = route_quality(store, policy, route, now=now, max_age_s=max_age_s)
    return {e.model: EvalScore(e.quality, e.samples) for e in evidence if e.source == "eval"}


def set_scores(
    store: EvalStore, eval_set: str, *, now: float | None = None, max_age_s: float | None = None
) -> dict[str, EvalScore]:
    """Every model's latest score on ``eval_set``, as the router's ``EvalScore``.

    Example:
        >>> from gateway.state import open_backend
        >>> set_scores(EvalStore(open_backend("memory://")), "support")
        {}
    """
    now = time.time() if now is None else now
    return {
        s.model: EvalScore(s.mean, s.scored)
        for s in store.summaries(eval_set)
        if s.scored > 0 and (max_age_s is None or now - s.finished_at <= max_age_s)
    }


class EvalScores:
    """Eval scores per set, cached for ``ttl_s``: what the client's planner calls on each route plan.

    Pass an instance as ``gateway.core.plan.Planner(..., evals=EvalScores(EvalStore(backend)))``: it is
    called with a route's ``eval_set`` (``None`` when the route has none) and returns the scores
    that replace the priors.

    Args:
        store: The eval store.
        policy: Needed only by :meth:`for_route`.
        ttl_s: How long a set's scores are reused before the store is read again (the client's
            is the policy's ``evals.refresh_s``, default ``SCORE_REFRESH_S``, 60 s).
        max_age_s: Ignore older scores (the prior stands in).
        settings: Returns the policy in force; when given, its ``evals.refresh_s`` and
            ``evals.max_age_s`` are used instead of ``ttl_s`` and ``max_age_s`` (a reload applies).
        clock: Returns Unix seconds.

    Example:
        >>> from gateway.policy import parse_policy
        >>> from gateway.state import open_backend
        >>> policy = parse_policy("version: 1\\nroutes: {chat: {candidates: [gpt-4o-mini], eval_set: chat}}")
        >>> scores = EvalScores(EvalStore(open_backend("memory://")), policy)
        >>> scores("chat"), scores(None), scores.for_route("route:chat")
        ({}, None, {})
    """

    def __init__(
        self,
        store: EvalStore,
        policy: Policy | None = None,
        *,
        ttl_s: float = SCORE_REFRESH_S,
        max_age_s: float | None = None,
        clock: Callable[[], float] = time.time,
        settings: Callable[[], Policy] | None = None,
    ) -> None:
        self.store, self.policy, self._ttl_s, self._max_age_s = store, policy, ttl_s, max_age_s
        self._settings = settings
        self._clock = clock
        self._cache: dict[str, tuple[float, Mapping[str, EvalScore]]] = {}
        self._lock = threading.Lock()

    @property
    def ttl_s(self) -> float:
        return self._settings().evals.refresh_s if self._settings is not None else self._ttl_s

    @property
    def max_age_s(self) -> float | None:
        return self._settings().evals.max_age_s if self._settings is not None else self._max_age_s

    def __call__(self, eval_set: str | None) -> Mapping[str, EvalScore] | None:
        """The scores of ``eval_set``; ``None`` for a route without one."""
        return None if eval_set is None else self.for_set(eval_set)

    def for_set(self, eval_set: str) -> Mapping[str, EvalScore]:
        """Every measured model's latest score on ``eval_set`` (cached for ``ttl_s``)."""
        now = self._clock()
        with self._lock:
            hit = self._cache.get(eval_set)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        scores = set_scores(self.store, eval_set, now=now, max_age_s=self.max_age_s)
        with self._lock:
            self._cache[eval_set] = (now, scores)
        return scores

    def for_route(self, route: str) -> Mapping[str, EvalScore]:
        """The scores of the route's ``eval_set`` (empty without one, or for an unknown route)."""
        if self.policy is None:
            raise ValueError("EvalScores.for_route needs the policy: EvalScores(store, policy)")
        settings = self.policy.routes.get(route.removeprefix("route:"))
        if settings is None or settings.eval_set is None:
            return {}
        return self.for_set(settings.eval_set)
