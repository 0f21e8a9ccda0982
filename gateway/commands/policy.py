"""``switchyard policy …``: check a policy file, explain a routing decision, write the JSON Schema.

```
switchyard policy check FILE [--strict] [--no-env]     exit 1 listing every error as file:line:col
switchyard policy explain FILE --route R --prompt TEXT  the plan as a table, with exclusions
switchyard policy schema [--output PATH | --stdout]     policies/policy.schema.json, for editors
```
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from gateway.core.errors import NoRouteError, PolicyError

__all__ = ["PlaceholderEnv", "policy_json_schema", "register"]

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "policies" / "policy.schema.json"
SCHEMA_ID = "https://switchyard.dev/policy.schema.json"


class PlaceholderEnv(Mapping[str, str]):
    """An environment where every variable is set: checks a policy's shape without its secrets."""

    def __getitem__(self, key: str) -> str:
        return f"<{key}>"

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def register(subparsers: Any) -> None:
    """Add the ``policy`` group to the ``switchyard`` parser."""
    parser = subparsers.add_parser("policy", help="check, explain and describe policy files")
    commands = parser.add_subparsers(dest="policy_command", required=True)

    check = commands.add_parser("check", help="validate a policy file and run its lints")
    check.add_argument("file")
    check.add_argument("--strict", action="store_true", help="treat lint warnings as errors")
    check.add_argument("--no-env", action="store_true", help="treat every ${VAR} as set (no secrets needed)")
    check.set_defaults(func=_check)

    explain = commands.add_parser("explain", help="show how a route would rank its candidates")
    explain.add_argument("file")
    explain.add_argument("--route", required=True)
    explain.add_argument("--prompt", required=True)
    explain.add_argument("--prompt-tokens", type=int, help="instead of estimating from --prompt")
    explain.add_argument("--max-tokens", type=int)
    explain.add_argument("--tools", action="store_true", help="the request carries tools")
    explain.add_argument(
        "--store",
        help="eval store URL (default: the policy's SQLite/Redis state, else .switchyard/evals.sqlite)",
    )
    explain.add_argument("--stream", action="store_true", help="the request streams")
    explain.add_argument(
        "--no-env", action="store_true", help="treat every ${VAR} as set (no secrets needed)"
    )
    explain.set_defaults(func=_explain)

    schema = commands.add_parser("schema", help="write the policy JSON Schema")
    schema.add_argument("--output", default=str(SCHEMA_PATH))
    schema.add_argument("--stdout", action="store_true")
    schema.set_defaults(func=_schema)


def _load(args: argparse.Namespace, err: TextIO) -> Any:
    from gateway.policy import load_policy

    try:
        return load_policy(args.file, env=PlaceholderEnv() if args.no_env else None)
    except PolicyError as exc:
        for error in exc.errors:
            err.write(f"{error.message} [{error.code}]\n")
        err.write(f"{args.file}: {len(exc.errors)} error(s)\n")
        return None


def _check(args: argparse.Namespace) -> int:
    from gateway.policy import lint_policy

    out, err = sys.stdout, sys.stderr
    policy = _load(args, err)
    if policy is None:
        return 1
    warnings = lint_policy(policy)
    for warning in warnings:
        (err if args.strict else out).write(f"{warning}\n")
    if args.strict and warnings:
        err.write(f"{args.file}: {len(warnings)} lint warning(s), errors under --strict\n")
        return 1
    out.write(
        f"{args.file}: ok ({len(policy.routes)} routes, {len(policy.models)} models, {len(warnings)} warnings)\n"
    )
    return 0


def _explain(args: argparse.Namespace) -> int:
    from gateway.core.types import ChatRequest
    from gateway.router import EvalScore, StatsSnapshot, plan

    policy = _load(args, sys.stderr)
    if policy is None:
        return 1
    body: dict[str, Any] = {
        "model": f"route:{args.route}",
        "messages": [{"role": "user", "content": args.prompt}],
    }
    if args.max_tokens is not None:
        body["max_tokens"] = args.max_tokens
    if args.tools:
        body["tools"] = [{"type": "function", "function": {"name": "tool", "parameters": {"type": "object"}}}]
    if args.stream:
        body["stream"] = True
    request = ChatRequest(**body)
    prompt_tokens = args.prompt_tokens if args.prompt_tokens is not None else _count_prompt(request)
    evidence = _eval_evidence(policy, args.route, args.store)
    evals = {e.model: EvalScore(e.quality, e.samples) for e in evidence if e.source == "eval"}
    try:
        result = plan(request, args.route, policy, StatsSnapshot(), prompt_tokens=prompt_tokens, evals=evals)
    except (PolicyError, NoRouteError) as exc:
        sys.stderr.write(f"{exc.message}\n")
        return 1
    sys.stdout.write(format_plan(result))
    if evidence:
        from gateway.evals.store import format_quality

        sys.stdout.write("quality used, per candidate:\n" + format_quality(evidence) + "\n")
    return 0


def _eval_evidence(policy: Any, route: str, store_url: str | None) -> list[Any]:
    """Which quality each candidate gets (an eval score and its age, or the prior) from the eval store."""
    from gateway.evals.store import EvalStore, route_quality, store_config
    from gateway.state import open_backend

    if route not in policy.routes:
        return []
    config = store_config(policy, store_url)
    if config.url.startswith("sqlite:") and not os.path.exists(config.url.removeprefix("sqlite://")):
        return []  # no eval has run yet: the priors stand (and explaining creates no files)
    backend = open_backend(config)
    try:
        return route_quality(EvalStore(backend), policy, route)
    finally:
        backend.close()


def _count_prompt(request: Any) -> int:
    """The prompt's tokens as the client counts them (tiktoken), else about four characters a token."""
    try:
        from gateway.metering.tokens import count_chat
    except ImportError:
        return max(1, sum(len(str(m.get("content") or "")) for m in request.messages) // 4)
    return int(count_chat(request.messages, request.model, request.tools).tokens)


def format_plan(result: Any) -> str:
    """The plan as a plain-text table: each candidate's estimates in their units, why the winner won."""
    from gateway.router import route_rates

    rates = route_rates(result.settings)
    objective = (
        f"{rates.basis}: ${rates.quality:g} per quality point, ${rates.ttft:g} per second of ttft, "
        f"${rates.latency:g} per second of latency, cost x{rates.cost:g} (per 1k requests; ties: {rates.tie_break})"
    )
    lines = [
        f"route {result.route}: {objective}",
        f"prompt {result.prompt_tokens} tokens, output {result.output_tokens} tokens",
        "",
        f"{'#':>2}  {'model':<36} {'quality':>7} {'ttft':>8} {'latency':>9} {'$/request':>11} "
        f"{'samples':>7} {'U $/1k':>10}  basis",
    ]
    for rank, c in enumerate(result.candidates, start=1):
        cost = "unknown" if c.cost_usd is None else f"{c.cost_usd:.6f}"
        lines.append(
            f"{rank:>2}  {c.model:<36} {c.quality:>7.3f} {c.ttft_s:>7.2f}s {c.latency_s:>8.2f}s {cost:>11} "
            f"{c.samples:>7.1f} {c.utility:>10.2f}  {c.basis}"
        )
    if not result.candidates:
        lines.append("    (no candidate survived)")
    elif len(result.candidates) > 1:
        lines += ["", _why(result.candidates[0], result.candidates[1], rates)]
    settings = result.settings
    if settings.split:
        arms = ", ".join(f"{model} {weight:g}" for model, weight in settings.split.items())
        lines += ["", f"split (A/B): the head is drawn by weight from {arms}; without a draw, the heaviest"]
    if settings.shadow is not None:
        lines.append(
            f"shadow: {settings.shadow.share:.1%} of requests copied to {settings.shadow.candidate} "
            f"in the background (metered as route shadow:{result.route})"
        )
    if result.exclusions:
        lines += ["", "excluded:"]
        lines += [f"    {e.model:<36} {e.code:<20} {e.message}" for e in result.exclusions]
    return "\n".join(lines) + "\n"


def _why(first: Any, second: Any, rates: Any) -> str:
    """The winner's margin over the runner-up, term by term, in USD per 1k requests."""
    if first.basis not in ("utility", "weights", "minimize cost", "minimize latency"):
        return f"{first.model} is first by {first.basis}; by utility {second.model} would lead"
    cost_1 = float(first.cost_usd) if first.cost_usd is not None else 0.0
    cost_2 = float(second.cost_usd) if second.cost_usd is not None else 0.0
    terms = {
        "quality": rates.quality * 100 * (first.quality - second.quality),
        "cost": -rates.cost * 1000 * (cost_1 - cost_2),
        "ttft": -rates.ttft * (first.ttft_s - second.ttft_s),
        "latency": -rates.latency * (first.latency_s - second.latency_s),
    }
    parts = ", ".join(f"{name} {value:+.2f}" for name, value in terms.items() if value)
    margin = first.utility - second.utility
    if margin == 0:
        return f"why {first.model}: ties {second.model} on utility; the tie-break ({rates.tie_break}) decides"
    return (
        f"why {first.model}: ${margin:.2f} per 1k requests over {second.model} ({parts or 'no term differs'})"
    )


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file, generated from the pydantic model."""
    from gateway.policy import Policy

    schema = Policy.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def _schema(args: argparse.Namespace) -> int:
    text = json.dumps(policy_json_schema(), indent=2, sort_keys=True) + "\n"
    if args.stdout:
        sys.stdout.write(text)
        return 0
    Path(args.output).write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {args.output}\n")
    return 0
