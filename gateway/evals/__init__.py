"""Evals: private benchmarks that score models on your own cases and feed the router's quality.

The loop, in four calls (``switchyard eval run`` / ``eval report`` do the same)::

    from gateway.evals import EvalStore, ModelCaller, load_set, run_eval, store_config, write_report
    from gateway.policy import load_policy

    policy = load_policy("policies/default.yaml")
    store = EvalStore.open(store_config(policy))  # the policy's SQLite/Redis state, else .switchyard/
    with ModelCaller(policy) as caller:
        run = run_eval(load_set("evals/support.jsonl"), ["gpt-4o-mini", "gpt-4o"], caller=caller, store=store)
    write_report(store.summaries("support"), "reports/")

The router then reads the store: the client's planner takes ``evals=EvalScores(store)`` (called
with a route's ``eval_set``, cached); a direct ``gateway.router.plan`` call takes
``evals=route_evals(store, policy, route)``.

Modules: ``sets`` (JSONL loading), ``scorers``, ``calls`` (direct model calls), ``runner``,
``results`` (statistics), ``store`` (the state backend and the router's view), ``report``
(table, chart, markdown), ``progress``. See ``docs/evals.md``.
"""

from __future__ import annotations

from gateway.evals.calls import CallResult, ModelCaller, canonical_model
from gateway.evals.progress import PlainProgress, Progress, make_progress
from gateway.evals.report import format_table, markdown_summary, pareto_front, write_chart, write_report
from gateway.evals.results import CaseResult, ModelSummary, confidence_interval, percentile
from gateway.evals.runner import EvalRun, run_eval
from gateway.evals.scorers import (
    BUILTIN_SCORERS,
    JudgeReply,
    Output,
    Score,
    ScorerError,
    ScoringContext,
    ToolCallOutput,
    resolve_scorer,
)
from gateway.evals.sets import EvalCase, EvalSet, EvalSetError, load_set, parse_set
from gateway.evals.store import (
    DEFAULT_STORE_PATH,
    SCORE_REFRESH_S,
    EvalScores,
    EvalStore,
    QualityEvidence,
    format_quality,
    route_evals,
    route_quality,
    set_scores,
    store_config,
)

__all__ = [
    "BUILTIN_SCORERS",
    "CallResult",
    "CaseResult",
    "DEFAULT_STORE_PATH",
    "EvalCase",
    "EvalRun",
    "EvalScores",
    "EvalSet",
    "EvalSetError",
    "EvalStore",
    "JudgeReply",
    "ModelCaller",
    "ModelSummary",
    "Output",
    "PlainProgress",
    "Progress",
    "QualityEvidence",
    "SCORE_REFRESH_S",
    "Score",
    "ScorerError",
    "ScoringContext",
    "ToolCallOutput",
    "canonical_model",
    "confidence_interval",
    "format_quality",
    "format_table",
    "load_set",
    "make_progress",
    "markdown_summary",
    "pareto_front",
    "parse_set",
    "percentile",
    "resolve_scorer",
    "route_evals",
    "route_quality",
    "run_eval",
    "set_scores",
    "store_config",
    "write_chart",
    "write_report",
]
