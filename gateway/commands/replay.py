"""``switchyard replay``: what a policy would have done with the traffic the usage store logged.

```
switchyard replay --policy new.yaml --since 7d
switchyard replay --policy new.yaml --baseline old.yaml --since 2026-11-24 --until 2026-12-01 --format json
switchyard replay --policy new.yaml --since 7d --chart replay.png
```

The logged requests (route, prompt and completion tokens, metadata, served model, latency,
outcome: one usage record per attempt) are re-planned with the new policy's router, and, with
``--baseline``, with the old one's too, on the same seed. Per route the report gives the share of
requests per model, the estimated cost (total and per 1,000 requests), the estimated quality (eval
scores from the eval store, else priors) and the estimated mean latency, beside what actually
happened; ``--chart`` also draws each route's sides as quality against cost per 1k requests. How
each estimate is made, and what the logs cannot tell, is in
``gateway/commands/replan.py`` and ``docs/routing.md``.

The store is ``--store``, else the baseline policy's ``state`` (the policy that logged the
traffic), else the new policy's; a memory store logged nothing another process can read. Exit
status: 0 with a report; 1 when a policy does not load or nothing was logged in the period; 2 when
the store cannot be read or an argument is wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

__all__ = ["register", "render_markdown", "replay_report", "run", "write_chart"]


def register(subparsers: Any) -> None:
    """Add the ``replay`` command to the CLI."""
    parser = subparsers.add_parser("replay", help="re-plan logged traffic with a policy and compare")
    parser.add_argument("--policy", required=True, help="the policy to evaluate")
    parser.add_argument("--baseline", help="the policy in force when the traffic was logged, replayed too")
    parser.add_argument("--since", default="7d", help="7d, 12h, 30m, 2w, a date (2026-11-01) or Unix time")
    parser.add_argument("--until", default=None, help="the end of the period, same forms (default: now)")
    parser.add_argument("--store", help="usage store URL (default: the baseline's, else the policy's state)")
    parser.add_argument("--eval-store", help="eval store URL (default: as `switchyard eval` finds it)")
    parser.add_argument("--route", action="append", help="only this route (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="for exploration and balance: weighted")
    parser.add_argument("--format", choices=("md", "json"), default="md")
    parser.add_argument("--chart", metavar="PATH", help="also draw quality against cost per route (PNG)")
    parser.add_argument("--no-env", action="store_true", help="treat every ${VAR} as set (no secrets needed)")
    parser.set_defaults(func=run)


def replay_report(
    records: Sequence[Any],
    policy: Any,
    evals: Any,
    *,
    baseline: Any = None,
    baseline_evals: Any = None,
    routes: Sequence[str] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The report as JSON-ready data: per route, the observed and replayed sides.

    Args:
        records: ``StateBackend.usage_records(since, until)``.
        policy: The loaded policy to evaluate.
        evals: ``eval_set -> {model: EvalScore}`` (an ``EvalScores``), for ``policy``'s routes.
        baseline: The baseline policy, replayed too when given.
        baseline_evals: The same lookup for ``baseline`` (default: ``evals``).
        routes: Only these routes.
        seed: The replay's ``Random`` seed.
    """
    from gateway.commands.replan import logged_requests, observed, replay

    requests, skipped = logged_requests(records)
    if routes:
        wanted = {r.removeprefix("route:") for r in routes}
        requests = [r for r in requests if r.route in wanted]
    sides = {"observed": observed(requests, baseline or policy, baseline_evals or evals)}
    sides["replayed"] = replay(requests, records, policy, evals, seed=seed)
    if baseline is not None:
        sides["baseline"] = replay(requests, records, baseline, baseline_evals or evals, seed=seed)
    counts: dict[str, int] = {}
    for request in requests:
        counts[request.route] = counts.get(request.route, 0) + 1
    report_routes = {
        route: {
            "requests": total,
            **{name: _side_json(by_route.get(route), total) for name, by_route in sides.items()},
        }
        for route, total in sorted(counts.items())
    }
    return {"requests": len(requests), "skipped": dict(skipped), "seed": seed, "routes": report_routes}


def _side_json(side: Any, total: int) -> dict[str, Any]:
    from gateway.commands.replan import Side

    side = side if side is not None else Side()
    cost: Decimal = side.cost_usd
    return {
        "served": side.served,
        "models": dict(side.requests.most_common()),
        "share": {model: count / total for model, count in side.requests.most_common()},
        "cost_usd": str(cost),
        "cost_per_1k_usd": str(round(cost * 1000 / side.served, 6)) if side.served else None,
        "unpriced": side.unpriced,
        "quality": None if side.quality is None else round(side.quality, 4),
        "latency_s": None if side.latency_s is None else round(side.latency_s, 4),
        "not_served": dict(side.not_served),
    }


_TITLES = {"observed": "observed", "replayed": "replayed: policy", "baseline": "replayed: baseline"}


def render_markdown(report: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """The report as Markdown: one section per route, models by share, then the totals."""
    lines = [*header]
    if report["skipped"]:
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(report["skipped"].items()))
        lines.append(f"Left out: {skipped} (not requests of a route).")
    for route, data in report["routes"].items():
        sides = [name for name in _TITLES if name in data]
        lines += ["", f"## route `{route}`: {data['requests']} requests", ""]
        lines.append("| | " + " | ".join(_TITLES[s] for s in sides) + " |")
        lines.append("| --- |" + " ---: |" * len(sides))
        models = sorted({m for s in sides for m in data[s]["models"]})
        models.sort(key=lambda m: -max(data[s]["share"].get(m, 0.0) for s in sides))
        for model in models:
            cells = [_share(data[s], model) for s in sides]
            lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
        for label, cell in _SUMMARY_ROWS:
            lines.append(f"| {label} | " + " | ".join(cell(data[s]) for s in sides) + " |")
        lines += ["", _change(data)]
    return "\n".join(lines).rstrip() + "\n"


def _share(side: Mapping[str, Any], model: str) -> str:
    count = side["models"].get(model, 0)
    return f"{side['share'].get(model, 0.0) * 100:.1f} % ({count})" if count else "-"


def _usd(text: str | None) -> str:
    return "-" if text is None else f"${Decimal(text):.6f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f} s" if value >= 1 else f"{value * 1000:.1f} ms"


def _not_served(side: Mapping[str, Any]) -> str:
    reasons = side["not_served"]
    return ", ".join(f"{n} {why}" for why, n in sorted(reasons.items())) if reasons else "0"


_SUMMARY_ROWS = (
    ("**cost**", lambda s: _usd(s["cost_usd"]) + (f" ({s['unpriced']} unpriced)" if s["unpriced"] else "")),
    ("cost per 1k requests", lambda s: _usd(s["cost_per_1k_usd"])),
    ("quality (mean, 0..1)", lambda s: "-" if s["quality"] is None else f"{s['quality']:.3f}"),
    ("latency (mean)", lambda s: _seconds(s["latency_s"])),
    ("not served", _not_served),
)


def _change(data: Mapping[str, Any]) -> str:
    """The policy against what happened (and against the baseline replayed), in one line."""
    new, old = data["replayed"], data["observed"]
    parts = [_delta("cost", new, old)]
    if "baseline" in data:
        parts.append(_delta("cost vs the baseline replayed", new, data["baseline"]))
    if new["quality"] is not None and old["quality"] is not None:
        parts.append(f"quality {new['quality'] - old['quality']:+.3f}")
    if new["latency_s"] is not None and old["latency_s"] is not None:
        delta = new["latency_s"] - old["latency_s"]
        parts.append(f"latency {'+' if delta >= 0 else '-'}{_seconds(abs(delta))}")
    return "Policy against observed: " + "; ".join(p for p in parts if p) + "."


def _delta(label: str, new: Mapping[str, Any], old: Mapping[str, Any]) -> str:
    before, after = Decimal(old["cost_usd"]), Decimal(new["cost_usd"])
    if before == 0:
        return f"{label} ${after:.6f} (was $0)"
    return f"{label} {(after - before) / before * 100:+.1f} %"


def run(args: argparse.Namespace) -> int:
    """Print the report; see the module docstring for the exit statuses."""
    from gateway.commands.usage import parse_since
    from gateway.state import BackendConfig, open_backend, redact_url
    from gateway.state.errors import StateBackendError

    now = time.time()
    try:
        since = parse_since(args.since, now)
        until = parse_since(args.until, now) if args.until else now
    except ValueError as exc:
        sys.stderr.write(f"switchyard replay: {exc}\n")
        return 2
    policy = _load(args.policy, args.no_env)
    baseline = _load(args.baseline, args.no_env) if args.baseline else None
    if policy is None or (args.baseline and baseline is None):
        return 1
    store = args.store or _store_url(baseline or policy)
    if store is None:
        sys.stderr.write(
            "switchyard replay: the policy's state is memory, so no other process logged usage there; "
            "pass --store sqlite:///path/state.sqlite or redis://host:port/db\n"
        )
        return 2
    if store.startswith("sqlite://") and not Path(store.removeprefix("sqlite://")).is_file():
        sys.stderr.write(f"switchyard replay: no SQLite store at {store.removeprefix('sqlite://')}\n")
        return 2
    key_prefix = (baseline or policy).state.key_prefix
    try:
        backend = open_backend(BackendConfig(store, key_prefix=key_prefix))
        try:
            records = backend.usage_records(since, until)
        finally:
            backend.close()
    except (StateBackendError, ValueError) as exc:
        sys.stderr.write(f"switchyard replay: cannot read {redact_url(store)}: {exc}\n")
        return 2
    with _Evals(policy, args.eval_store) as evals, _Evals(baseline, args.eval_store) as old_evals:
        report = replay_report(
            records,
            policy,
            evals,
            baseline=baseline,
            baseline_evals=old_evals if baseline is not None else None,
            routes=args.route,
            seed=args.seed,
        )
    if not report["requests"]:
        sys.stderr.write(
            f"switchyard replay: no routed requests logged in {redact_url(store)} between "
            f"{_when(since)} and {_when(until)}\n"
        )
        return 1
    if args.chart:
        sys.stderr.write(f"chart: {write_chart(report, args.chart)}\n")
    report["period"] = {"since": since, "until": until}
    report["policy"], report["baseline"] = args.policy, args.baseline
    if args.format == "json":
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0
    against = f" (baseline `{args.baseline}`)" if args.baseline else ""
    header = [
        f"# Replay of `{args.policy}`{against}",
        "",
        f"{report['requests']} routed requests logged from {_when(since)} to {_when(until)} in "
        f"{redact_url(store)}; seed {args.seed}. Estimates: docs/routing.md, section 5.",
    ]
    sys.stdout.write(render_markdown(report, header))
    return 0


_MARKERS = {"observed": ("o", "0.35"), "replayed": ("s", "tab:blue"), "baseline": ("^", "tab:orange")}


def write_chart(report: Mapping[str, Any], path: str | Path) -> Path:
    """Draw each route's sides as points of (cost per 1k requests, mean quality), an arrow from what
    happened to the replayed policy; one panel per route. Returns the PNG's path."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    routes = list(report["routes"].items())
    figure, panels = plt.subplots(1, len(routes), figsize=(5 * len(routes), 4.5), dpi=110, squeeze=False)
    try:
        for axes, (route, data) in zip(panels[0], routes, strict=True):
            points = {}
            for side, (marker, colour) in _MARKERS.items():
                values = data.get(side)
                if values is None or values["cost_per_1k_usd"] is None or values["quality"] is None:
                    continue
                points[side] = (float(values["cost_per_1k_usd"]), values["quality"])
                axes.scatter(*points[side], marker=marker, s=90, color=colour, label=_TITLES[side], zorder=3)
            if "observed" in points and "replayed" in points:
                axes.annotate(
                    "",
                    points["replayed"],
                    points["observed"],
                    arrowprops={"arrowstyle": "->", "color": "0.5"},
                )
            axes.set_title(f"route {route} ({data['requests']} requests)")
            axes.set_xlabel("cost per 1k requests (USD)")
            axes.set_ylabel("mean quality (0..1)")
            axes.margins(0.25)
            axes.grid(True, alpha=0.3)
            axes.legend(loc="best", fontsize=8)
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, bbox_inches="tight")
    finally:
        plt.close(figure)
    return out


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _load(path: str, no_env: bool) -> Any:
    from gateway.commands.policy import PlaceholderEnv
    from gateway.core.errors import PolicyError
    from gateway.policy import load_policy

    try:
        return load_policy(path, env=PlaceholderEnv() if no_env else None)
    except PolicyError as exc:
        for error in exc.errors:
            sys.stderr.write(f"{error.message} [{error.code}]\n")
        sys.stderr.write(f"{path}: {len(exc.errors)} error(s)\n")
        return None


def _store_url(policy: Any) -> str | None:
    state = policy.state
    if state.backend == "sqlite" and state.path:
        return f"sqlite:///{os.path.abspath(state.path)}"
    if state.backend == "redis" and state.url is not None:
        return str(state.url.get_secret_value())
    return None


class _Evals:
    """The eval scores a policy's routes see (``EvalScores`` on its eval store); none for ``None``,
    and none, without creating the file, when the default SQLite eval file does not exist."""

    def __init__(self, policy: Any, url: str | None) -> None:
        self.policy, self.url = policy, url
        self.backend: Any = None

    def __enter__(self) -> Any:
        from gateway.evals.store import EvalScores, EvalStore, store_config
        from gateway.state import open_backend

        if self.policy is None:
            return None
        config = store_config(self.policy, self.url)
        if config.url.startswith("sqlite:") and not os.path.exists(config.url.removeprefix("sqlite://")):
            return lambda eval_set: None
        self.backend = open_backend(config)
        return EvalScores(EvalStore(self.backend), ttl_s=float("inf"))

    def __exit__(self, *exc: object) -> None:
        if self.backend is not None:
            self.backend.close()
