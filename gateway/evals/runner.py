"""The eval runner: every case of a set on every model, concurrently, resumably, into the store.

For each (case, model) the runner first looks in the store for a result of this exact set
version; only a miss calls the model (directly: one candidate, no router, no fallback, see
``calls.py``). Answers are scored at once and cached, so an interrupted run resumes where it
stopped and a repeated run makes no upstream call for cases it already has. Failed calls and
raising scorers are not cached: the next run tries them again.

A scorer that raises records a ``scorer_error`` for that case (with the exception) and the run
goes on; ``fail_fast=True`` stops scheduling new cases at the first failure instead, and then no
summary is stored (the router must not read a partial run).

A model call that fails (after its retries) is a ``call_error``: an error, not a score of 0, so
an upstream outage cannot pass for a model that answers wrong. A model with call errors gets no
stored summary (``EvalRun.unstored`` says why; its answered cases are cached, so a rerun once
the upstream is back calls only the failed ones) unless ``allow_errors=True``, which stores the
mean of its answered cases with the errors counted in ``failures``. A model with no scored case
at all never gets one: a mean of nothing is not a score.

Example:
    >>> from gateway.evals import ModelCaller, EvalStore, parse_set, run_eval  # doctest: +SKIP
    >>> run = run_eval(parse_set(text), ["fast/m", "big/m"], caller=ModelCaller(policy), store=store)  # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.core.errors import OpenAIError
from gateway.evals.calls import ModelCaller
from gateway.evals.progress import NullProgress, Progress
from gateway.evals.results import CaseResult, CaseStatus, ModelSummary, summarise
from gateway.evals.scorers import (
    BoundScorer,
    JudgeReply,
    Output,
    ScoringContext,
    ToolCallOutput,
    resolve_scorer,
)
from gateway.evals.sets import EvalCase, EvalSet
from gateway.evals.store import EvalStore

__all__ = ["DEFAULT_CONCURRENCY", "EvalRun", "run_eval", "unstored_reason"]

DEFAULT_CONCURRENCY = 4
OUTPUT_LIMIT = 2000
CACHED_STATUSES = frozenset({"ok", "judge_error"})


@dataclass(frozen=True, slots=True)
class EvalRun:
    """What a run did.

    Attributes:
        eval_set: The set's name.
        set_version: The set's version.
        summaries: One per model, in the order the models were given.
        results: Every case result, by model.
        upstream_calls: Model calls made by this run (cached cases make none).
        cached: Case results reused from the store.
        stopped: The failure that stopped a ``fail_fast`` run, else ``None``.
        unstored: Models whose summary was not stored because of failed cases, each with why
            (naming the first error); see ``unstored_reason``.
    """

    eval_set: str
    set_version: str
    summaries: tuple[ModelSummary, ...]
    results: Mapping[str, tuple[CaseResult, ...]]
    upstream_calls: int
    cached: int
    stopped: CaseResult | None = None
    unstored: Mapping[str, str] = field(default_factory=dict)


class _RateGate:
    """At most ``rpm`` calls a minute per model, spaced evenly (a call waits for its slot)."""

    def __init__(self, rpm: float | None, sleep: Callable[[float], None]) -> None:
        self._interval = 60.0 / rpm if rpm else 0.0
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()
        self._sleep = sleep

    def wait(self, model: str) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            slot = max(now, self._next.get(model, now))
            self._next[model] = slot + self._interval
        if slot > now:
            self._sleep(slot - now)


class _Worker:
    """Runs one (case, model) pair: cache lookup, call, score, cache store."""

    def __init__(
        self,
        eval_set: EvalSet,
        caller: ModelCaller,
        store: EvalStore | None,
        judge_model: str | None,
        gate: _RateGate,
    ) -> None:
        self.set, self.caller, self.store, self.gate = eval_set, caller, store, gate
        self.judge_model = judge_model
        self.route = f"eval:{eval_set.name}"
        self.scorers: dict[str, BoundScorer] = {}
        self.calls = 0
        self._lock = threading.Lock()
        self.context = ScoringContext(judge=self._judge)

    def scorer(self, case: EvalCase) -> BoundScorer:
        key = case.scorer if isinstance(case.scorer, str) else repr(sorted(case.scorer.items()))
        if key not in self.scorers:
            self.scorers[key] = resolve_scorer(case.scorer)
        return self.scorers[key]

    def _judge(self, model: str | None, messages: list[dict[str, Any]]) -> JudgeReply:
        judge = model or self.judge_model
        if judge is None:
            raise ValueError("the judge scorer needs a judge model: pass --judge MODEL or judge_model=")
        reply = self.caller.call(judge, messages, request={"temperature": 0}, route=self.route + ":judge")
        return JudgeReply(reply.completion.choices[0].message.content or "", reply.cost_usd)

    def run(self, case: EvalCase, model: str) -> tuple[CaseResult, bool]:
        # A retuned adapter keeps its model name: its revision keeps old cached cases out.
        version = self.set.version + self.caller.revision(model)
        if self.store is not None:
            cached = self.store.get_case(self.set.name, version, model, case.id)
            if cached is not None:
                return cached, True
        result = self._fresh(case, model)
        if self.store is not None and result.status in CACHED_STATUSES:
            self.store.put_case(self.set.name, version, result)
        return result, False

    def _fresh(self, case: EvalCase, model: str) -> CaseResult:
        self.gate.wait(model)
        with self._lock:
            self.calls += 1
        try:
            reply = self.caller.call(model, case.messages, request=case.request, route=self.route)
        except OpenAIError as exc:
            error = self.caller.redact(f"{type(exc).__name__}: {exc}")
            return CaseResult(case.id, model, "call_error", None, reason="the model call failed", error=error)
        output = _output(reply.completion)
        base = CaseResult(
            case.id, model, "ok", None, output=_shown(output), cost_usd=reply.cost_usd,
            latency_s=reply.latency_s, prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
        )  # fmt: skip
        try:
            score = self.scorer(case)(output, case, self.context)
        except Exception as exc:  # noqa: BLE001 - recorded as this case's failure; the run goes on
            error = self.caller.redact(f"{type(exc).__name__}: {exc}")  # a judge's error may echo its key
            return replace(base, status="scorer_error", reason="the scorer raised", error=error)
        status: CaseStatus = "judge_error" if score.failure else "ok"
        return replace(
            base, status=status, score=score.value, reason=score.reason,
            judge_cost_usd=score.judge_cost_usd, error=score.failure and self.caller.redact(score.failure),
        )  # fmt: skip


def _output(completion: Any) -> Output:
    message = completion.choices[0].message if completion.choices else None
    if message is None:
        return Output("")
    calls = tuple(ToolCallOutput(c.function.name, c.function.arguments) for c in message.tool_calls or ())
    return Output(message.content or "", calls)


def _shown(output: Output) -> str:
    calls = "".join(f"{c.name}({c.arguments})" for c in output.tool_calls)
    return (output.text + calls)[:OUTPUT_LIMIT]


def run_eval(
    eval_set: EvalSet,
    models: Sequence[str],
    *,
    caller: ModelCaller,
    store: EvalStore | None = None,
    concurrency: int = DEFAULT_CONCURRENCY,
    fail_fast: bool = False,
    allow_errors: bool = False,
    judge_model: str | None = None,
    rpm: float | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> EvalRun:
    """Run every case of ``eval_set`` on every model and store each model's summary.

    Args:
        eval_set: The set.
        models: Model names as the policy, the catalog or ``provider/model`` name them.
        caller: Calls the models (and the judge); its observer meters every call.
        store: Where cases are cached and summaries stored; ``None`` runs without either.
        concurrency: Calls in flight at once, over all models.
        fail_fast: Stop at the first failed case (no summary is stored then).
        allow_errors: Store a model's summary despite call errors (they are left out of its mean
            and counted); a model with no scored case is never stored.
        judge_model: The model the ``judge`` scorer calls, unless a case names its own.
        rpm: At most this many calls a minute to each model.
        progress: Receives one tick per case (``make_progress()`` for a bar).
        clock: Unix time for the summaries' ``finished_at``.
        sleep: How the rate gate waits.

    Returns:
        The run: summaries, case results, and how many calls it made.

    Raises:
        ValueError: ``concurrency`` below 1, or no model.
        ScorerError: A case names a scorer that cannot be resolved (checked before any call).
        PolicyError: A model the policy cannot resolve (checked before any call).
    """
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if not models:
        raise ValueError("name at least one model to evaluate")
    names = list(dict.fromkeys(caller.candidate(m).name for m in models))  # resolves every model first
    worker = _Worker(eval_set, caller, store, judge_model, _RateGate(rpm, sleep))
    for case in eval_set.cases:
        worker.scorer(case)
    bar = progress if progress is not None else NullProgress()
    bar.start(len(eval_set.cases) * len(names), f"eval {eval_set.name}")
    results: dict[str, dict[str, CaseResult]] = {name: {} for name in names}
    stop = threading.Event()
    stopped: list[CaseResult] = []
    cached = 0
    lock = threading.Lock()

    def task(case: EvalCase, model: str) -> None:
        nonlocal cached
        if stop.is_set():
            return
        result, hit = worker.run(case, model)
        with lock:
            results[model][case.id] = result
            cached += hit
            if fail_fast and result.status != "ok" and not stopped:
                stopped.append(result)
                stop.set()
        bar.advance(cached=hit)

    try:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="eval") as pool:
            futures = [pool.submit(task, case, model) for case in eval_set.cases for model in names]
            for future in futures:
                future.result()
    finally:
        bar.close()
    order = {case.id: i for i, case in enumerate(eval_set.cases)}
    ordered = {m: tuple(sorted(r.values(), key=lambda r: order[r.case_id])) for m, r in results.items()}
    finished = clock()
    summaries = tuple(
        summarise(eval_set.name, eval_set.version, m, ordered[m], finished_at=finished) for m in names
    )
    unstored = {
        s.model: why
        for s in summaries
        if (why := unstored_reason(s, ordered[s.model], allow_errors=allow_errors)) is not None
    }
    if store is not None and not stopped:
        for summary in summaries:
            if summary.model not in unstored:
                store.put_summary(summary)
    return EvalRun(
        eval_set.name,
        eval_set.version,
        summaries,
        ordered,
        worker.calls,
        cached,
        stopped[0] if stopped else None,
        unstored,
    )


def unstored_reason(
    summary: ModelSummary, results: Sequence[CaseResult], *, allow_errors: bool = False
) -> str | None:
    """Why ``summary`` must not reach the store (``None`` when it may), naming the first error.

    Example:
        >>> from gateway.evals.results import summarise
        >>> rows = [CaseResult("a", "m", "call_error", None, error="APIConnectionError: refused")]
        >>> unstored_reason(summarise("s", "v1", "m", rows, finished_at=0), rows)
        'm: all 1 cases failed (a: APIConnectionError: refused); nothing stored for it'
    """
    errors = [r for r in results if r.status == "call_error"]
    failed = [r for r in results if r.status not in ("ok", "judge_error")]
    if summary.scored == 0 and failed:
        first = failed[0]
        return (
            f"{summary.model}: all {len(results)} cases failed ({first.case_id}: {first.error or first.reason});"
            " nothing stored for it"
        )
    if errors and not allow_errors:
        first = errors[0]
        return (
            f"{summary.model}: {len(errors)} of {len(results)} model calls failed ({first.case_id}: "
            f"{first.error}); nothing stored for it: run again once the upstream answers (answered "
            "cases are cached), or pass --allow-errors to store the mean of the answered cases"
        )
    return None
