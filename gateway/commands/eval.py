"""``switchyard eval …``: run eval sets against models, report the results, explain their use.

```
switchyard eval run SET.jsonl --policy P --models a,b,c     every case on each model, into the store
switchyard eval run SET.jsonl --policy P --route R          the route's candidates
    [--store URL] [--concurrency 4] [--fail-fast] [--judge MODEL]
    [--rpm N] [--max-retries 2] [--allow-errors] [--on-error fatal|skip] [--progress auto|rich|plain|none]
switchyard eval report SET [--policy P | --store URL] [--out DIR]   table, PNG chart and markdown summary
switchyard eval report SET.jsonl --policy P --split R [--since 7d]  the A/B arms of route R, differences with CIs
switchyard eval explain --policy P --route R [--store URL]  the plan with eval scores, and their age
switchyard eval shadow ROUTE --policy P [--since 7d] [--scorer exact|judge --judge MODEL] [--format md|json]
    a route's shadow copies scored against the answers it served (needs its capture: section)
```

``SET`` is a JSONL file (see ``docs/evals.md``); ``report`` also takes a set's name. The store is
the policy's own state backend when that is SQLite or Redis (so the gateway reads what the evals
wrote), else ``.switchyard/evals.sqlite``; ``--store`` overrides it. Every model
call is metered into the store (route ``eval:<set>``), so ``switchyard usage --store URL --by
route`` shows what the evals cost.

A failed model call is an error for its case, not a score of 0: a model with call errors gets no
stored summary and the run exits 3, naming the model and the first error, unless
``--allow-errors`` stores the mean of its answered cases (the errors counted as failures). A model
whose every case failed is never stored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]

EXIT_STOPPED = 1
EXIT_BAD_INPUT = 2
EXIT_CALL_ERRORS = 3
STORE_HELP = "state backend URL (default: the policy's SQLite/Redis state, else .switchyard/evals.sqlite)"


def register(subparsers: Any) -> None:
    """Add the ``eval`` group to the ``switchyard`` parser."""
    parser = subparsers.add_parser("eval", help="run eval sets, report results, explain routing by score")
    commands = parser.add_subparsers(dest="eval_command", required=True)

    run = commands.add_parser("run", help="run an eval set against models")
    run.add_argument("set", help="the eval set, a JSONL file")
    run.add_argument("--policy", help="the policy file that declares the models and routes")
    pick = run.add_mutually_exclusive_group()
    pick.add_argument("--models", help="comma-separated model names")
    pick.add_argument("--route", help="evaluate the candidates of this route")
    run.add_argument("--store", help=STORE_HELP)
    run.add_argument("--concurrency", type=int, default=4, help="calls in flight at once (default 4)")
    run.add_argument("--rpm", type=float, help="at most this many calls a minute to each model")
    run.add_argument("--max-retries", type=int, default=2, help="retries of a call on 429/5xx (default 2)")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first failed case")
    run.add_argument(
        "--allow-errors",
        action="store_true",
        help="store a model's mean over its answered cases despite failed calls (counted as failures)",
    )
    run.add_argument("--judge", help="the model the judge scorer calls")
    run.add_argument("--on-error", choices=("fatal", "skip"), default="fatal", help="malformed set lines")
    run.add_argument("--progress", choices=("auto", "rich", "plain", "none"), default="auto")
    run.set_defaults(func=_run)

    report = commands.add_parser("report", help="print a table and write a chart and a markdown summary")
    report.add_argument("set", help="the eval set: a JSONL file or a set name")
    report.add_argument("--store", help=STORE_HELP)
    report.add_argument("--policy", help="read the store location from this policy's state section")
    report.add_argument("--out", default="eval-reports", help="folder for the PNG and markdown")
    report.add_argument("--split", metavar="ROUTE", help="compare the arms of this route's split (A/B)")
    report.add_argument("--since", default="30d", help="with --split: the traffic since (7d, a date, …)")
    report.set_defaults(func=_report)

    explain = commands.add_parser("explain", help="rank a route's candidates with the stored eval scores")
    explain.add_argument("--policy", required=True)
    explain.add_argument("--route", required=True)
    explain.add_argument("--store", help=STORE_HELP)
    explain.add_argument("--prompt", default="Hello!", help="the request to plan (default: Hello!)")
    explain.set_defaults(func=_explain)

    shadow = commands.add_parser("shadow", help="score a route's shadow copies against the answers it served")
    shadow.add_argument("route")
    shadow.add_argument("--policy", required=True, help="the policy whose route has shadow: and capture:")
    shadow.add_argument("--since", help="only pairs this recent: 3600, 30m, 12h, 7d")
    shadow.add_argument("--scorer", default="exact", help="a scorer name or module:function (default exact)")
    shadow.add_argument("--judge", help="the model the judge scorer calls (with --scorer judge)")
    shadow.add_argument("--format", choices=("md", "json"), default="md")
    shadow.set_defaults(func=_shadow)


def _fail(message: str) -> int:
    sys.stderr.write(f"switchyard eval: {message}\n")
    return EXIT_BAD_INPUT


def _models(args: argparse.Namespace, policy: Any, set_route: str | None) -> list[str]:
    if args.models:
        return [m.strip() for m in args.models.split(",") if m.strip()]
    route = args.route or set_route
    if route is None:
        raise ValueError("name the models with --models a,b,c or a route with --route R")
    if policy is None:
        raise ValueError(f"--route {route} needs --policy")
    from gateway.policy.references import policy_index

    routes = policy_index(policy).routes
    name = route.removeprefix("route:")
    if name not in routes:
        raise ValueError(f"the policy has no route {name!r} (routes: {', '.join(sorted(routes)) or 'none'})")
    return list(routes[name])


def _run(args: argparse.Namespace) -> int:
    from gateway.core.errors import GatewayError
    from gateway.evals import (
        EvalStore,
        ModelCaller,
        format_table,
        load_set,
        make_progress,
        run_eval,
        store_config,
    )
    from gateway.evals.calls import price_table
    from gateway.metering import Meter, StateSink
    from gateway.state import redact_url

    try:
        eval_set = load_set(args.set, on_error=args.on_error)
        policy = _policy(args.policy)
        models = _models(args, policy, eval_set.route)
    except (GatewayError, ValueError, OSError) as exc:
        return _fail(str(exc))
    for problem in eval_set.problems:
        sys.stderr.write(f"skipped {problem.message}\n")
    config = store_config(policy, args.store)
    store = EvalStore.open(config)
    prices = price_table(policy)
    meter = Meter(StateSink(store.backend), prices=prices)
    try:
        with ModelCaller(policy, observer=meter, prices=prices, max_retries=args.max_retries) as caller:
            run = run_eval(
                eval_set, models, caller=caller, store=store, concurrency=args.concurrency,
                fail_fast=args.fail_fast, allow_errors=args.allow_errors, judge_model=args.judge, rpm=args.rpm,
                progress=make_progress(args.progress),
            )  # fmt: skip
    except (GatewayError, ValueError) as exc:
        return _fail(str(exc))
    finally:
        meter.close()
        store.close()
    sys.stdout.write(format_table([s for s in run.summaries if s.scored > 0]))
    sys.stdout.write(
        f"\nset {run.eval_set} v{run.set_version}: {run.upstream_calls} model calls, {run.cached} cached results\n"
    )
    if run.stopped is not None:
        sys.stderr.write(f"stopped at the first failure (--fail-fast): {run.stopped.case_id} on "
                         f"{run.stopped.model}: {run.stopped.error or run.stopped.reason}; nothing stored\n")  # fmt: skip
        return EXIT_STOPPED
    if len(run.unstored) < len(run.summaries):
        sys.stdout.write(f"stored in {redact_url(config.url)}; see: switchyard eval report {args.set}\n")
    for why in run.unstored.values():
        sys.stderr.write(f"switchyard eval: {why}\n")
    return EXIT_CALL_ERRORS if run.unstored else 0


def _policy(path: str | None) -> Any:
    if path is None:
        return None
    from gateway.policy import load_policy

    return load_policy(path)


def _set_name(text: str) -> str:
    path = Path(text)
    if path.suffix == ".jsonl" or path.exists():
        from gateway.evals import load_set

        return load_set(path, on_error="skip").name
    return text


def _report(args: argparse.Namespace) -> int:
    from gateway.core.errors import GatewayError
    from gateway.evals import EvalStore, format_table, store_config, write_report
    from gateway.state import redact_url

    try:
        name = _set_name(args.set)
        config = store_config(_policy(args.policy), args.store)
        if args.split:
            return _split_report(args, name, config)
    except (GatewayError, OSError, ValueError) as exc:
        return _fail(str(exc))
    store = EvalStore.open(config)
    try:
        summaries = store.summaries(name)
    finally:
        store.close()
    if not summaries:
        return _fail(
            f"no results for set {name!r} in {redact_url(config.url)}: run `switchyard eval run` first"
        )
    sys.stdout.write(format_table(summaries))
    files = write_report(summaries, args.out)
    if files.chart is None:
        sys.stdout.write("no model has a price: no chart (add prices to the policy's models)\n")
    else:
        sys.stdout.write(f"chart: {files.chart}\n")
    sys.stdout.write(f"summary: {files.markdown}\n")
    return 0


def _split_report(args: argparse.Namespace, name: str, config: Any) -> int:
    """The arms of a route's ``split`` on the traffic logged in the store, and their differences."""
    import dataclasses
    import time

    from gateway.commands.usage import parse_since
    from gateway.evals import EvalStore
    from gateway.evals.ab import Estimate, format_split, split_arms
    from gateway.policy.references import resolve_model_name

    policy = _policy(args.policy)
    if policy is None:
        return _fail("--split needs --policy (the route's split and models)")
    route_name = args.split.removeprefix("route:")
    route = policy.routes.get(route_name)
    if route is None or not route.split:
        return _fail(f"the policy's route {route_name!r} has no split")
    split = {resolve_model_name(policy, key) or key: weight for key, weight in route.split.items()}
    store = EvalStore.open(config)
    try:
        records = store.backend.usage_records(parse_since(args.since, time.time()))
        arms, samples = split_arms(records, route_name, split)
        summaries = {s.model: s for s in store.summaries(name)}
        arms = [
            dataclasses.replace(arm, quality=Estimate(s.mean, s.ci_low, s.ci_high, s.scored))
            if (s := summaries.get(arm.model)) is not None and s.scored
            else arm
            for arm in arms
        ]
        differences = _paired_quality(store, args.set, [arm.model for arm in arms]) if arms else {}
    finally:
        store.close()
    sys.stdout.write(format_split(route_name, arms, samples, differences))
    if not differences and len(arms) > 1:
        sys.stdout.write("\nquality differences need the set's cases: pass the set as a JSONL file\n")
    return 0


def _paired_quality(store: Any, set_arg: str, models: list[str]) -> dict[str, Any]:
    """Each other arm's quality minus the first's, paired over the cases both scored (a set file only)."""
    from gateway.evals import load_set
    from gateway.evals.ab import paired_difference

    path = Path(set_arg)
    if not path.is_file():
        return {}
    eval_set = load_set(path, on_error="skip")
    base, others = models[0], models[1:]
    differences = {}
    for model in others:
        pairs = []
        for case in eval_set.cases:
            a = store.get_case(eval_set.name, eval_set.version, base, case.id)
            b = store.get_case(eval_set.name, eval_set.version, model, case.id)
            if a is not None and b is not None and a.score is not None and b.score is not None:
                pairs.append((a.score, b.score))
        if pairs:
            differences[model] = paired_difference(pairs)
    return differences


def _explain(args: argparse.Namespace) -> int:
    from gateway.commands.policy import format_plan
    from gateway.core.errors import GatewayError
    from gateway.core.types import ChatRequest
    from gateway.evals import EvalStore, format_quality, route_quality, store_config
    from gateway.router import EvalScore, StatsSnapshot, plan

    try:
        policy = _policy(args.policy)
        name = args.route.removeprefix("route:")
        if name not in policy.routes:
            return _fail(f"the policy has no route {name!r}")
        store = EvalStore.open(store_config(policy, args.store))
        try:
            evidence = route_quality(store, policy, name)
        finally:
            store.close()
        evals = {e.model: EvalScore(e.quality, e.samples) for e in evidence if e.source == "eval"}
        request = ChatRequest(model=f"route:{name}", messages=[{"role": "user", "content": args.prompt}])
        result = plan(
            request, name, policy, StatsSnapshot(), prompt_tokens=max(1, len(args.prompt) // 4), evals=evals
        )
    except GatewayError as exc:
        return _fail(str(exc))
    sys.stdout.write(format_plan(result))
    sys.stdout.write("\nquality used:\n" + format_quality(evidence))
    return 0


def _shadow(args: argparse.Namespace) -> int:
    import json

    from gateway.capture import DatasetStore
    from gateway.commands.data import since_seconds
    from gateway.core.errors import PolicyError
    from gateway.evals import ModelCaller
    from gateway.evals.scorers import ScorerError
    from gateway.evals.shadow import score_shadows
    from gateway.policy import load_policy

    try:
        policy = load_policy(args.policy)
        since = since_seconds(args.since)
    except (PolicyError, ValueError, OSError) as exc:
        return _fail(str(exc))
    name = args.route.removeprefix("route:")
    route = policy.routes.get(name)
    if route is None or route.capture is None or route.shadow is None:
        return _fail(f"route {name!r} needs both a shadow: and a capture: section to be scored")
    store = DatasetStore(route.capture.store)
    caller = ModelCaller(policy) if args.judge else None
    try:
        served = list(store.examples(name, since=since))
        shadows = list(store.examples(f"shadow:{name}", since=since))
        results = score_shadows(served, shadows, args.scorer, _judge_context(caller, args.judge, name))
    except (ScorerError, ValueError) as exc:
        return _fail(str(exc))
    finally:
        store.close()
        if caller is not None:
            caller.close()
    if args.format == "json":
        sys.stdout.write(json.dumps([r.to_json() for r in results], indent=2) + "\n")
        return 0
    sys.stdout.write(f"route {name}: shadow copies scored against the served answers ({args.scorer})\n\n")
    sys.stdout.write("| shadow model | served by | pairs | agreement | 95 % interval | unpaired |\n")
    sys.stdout.write("| --- | --- | ---: | ---: | --- | ---: |\n")
    for r in results:
        low, high = r.interval
        served_by = ", ".join(sorted(r.served_models)) or "-"
        sys.stdout.write(
            f"| {r.shadow_model} | {served_by} | {r.pairs} | {r.mean:.3f} | {low:.3f}-{high:.3f} | {r.unpaired} |\n"
        )
    if not results:
        sys.stdout.write("| (no shadow copies captured) | | 0 | | | |\n")
    return 0


def _judge_context(caller: Any, judge: str | None, route: str) -> Any:
    """The scoring context: a judge that calls ``judge`` through ``caller`` (at temperature 0), or none."""
    from gateway.evals.scorers import JudgeReply, ScoringContext

    if caller is None or judge is None:
        return ScoringContext()

    def ask(model: str | None, messages: list[dict[str, Any]]) -> JudgeReply:
        reply = caller.call(
            model or judge, messages, request={"temperature": 0}, route=f"shadow:{route}:judge"
        )
        return JudgeReply(reply.completion.choices[0].message.content or "", reply.cost_usd)

    return ScoringContext(judge=ask)
