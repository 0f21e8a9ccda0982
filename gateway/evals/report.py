"""Eval reports: a table, a chart of quality against cost, and a markdown summary.

The chart is what a person looks at to pick a model: each model is a point at (cost per case,
mean score) with its 95% interval as an error bar, coloured by median latency; the Pareto front
(no other model is at least as good *and* at least as cheap, and better in one) is joined by a
line and circled. matplotlib is imported only when a chart is drawn, with the ``Agg`` backend.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from gateway.evals.results import ModelSummary

__all__ = ["ReportFiles", "format_table", "markdown_summary", "pareto_front", "write_chart", "write_report"]


@dataclass(frozen=True, slots=True)
class ReportFiles:
    """Where :func:`write_report` wrote: the chart (``None`` when no model has a price) and the summary."""

    chart: Path | None
    markdown: Path


def pareto_front(summaries: Sequence[ModelSummary]) -> list[str]:
    """The models no other priced model dominates on (higher score, lower cost); cheapest first.

    Models without a price are left out: they cannot be placed on the cost axis.

    Example:
        >>> from decimal import Decimal as D
        >>> def s(m, q, c): return ModelSummary("s", "1", m, 1, 1, q, q, q, D(c), D(0), 1.0, 1.0, 0, 0.0)
        >>> pareto_front([s("big", 0.9, "0.01"), s("mid", 0.8, "0.02"), s("small", 0.6, "0.001")])
        ['small', 'big']
    """
    priced = [s for s in summaries if s.cost_per_case_usd is not None]
    front = []
    for a in priced:
        cost_a = a.cost_per_case_usd or Decimal(0)
        dominated = False
        for b in priced:
            cost_b = b.cost_per_case_usd or Decimal(0)
            if b is not a and b.mean >= a.mean and cost_b <= cost_a and (b.mean > a.mean or cost_b < cost_a):
                dominated = True
                break
        if not dominated:
            front.append(a)
    front.sort(key=lambda s: (s.cost_per_case_usd or Decimal(0), -s.mean))
    return [s.model for s in front]


def _cost(value: Decimal | None) -> str:
    return "unpriced" if value is None else f"${value:.6f}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _rows(summaries: Sequence[ModelSummary]) -> list[list[str]]:
    front = set(pareto_front(summaries))
    ranked = sorted(summaries, key=lambda s: -s.mean)
    return [
        [
            s.model,
            f"{s.mean:.3f} [{s.ci_low:.2f}, {s.ci_high:.2f}]",
            _cost(s.cost_per_case_usd),
            _seconds(s.latency_p50_s),
            _seconds(s.latency_p95_s),
            f"{s.failures}/{s.cases}",
            "*" if s.model in front else "",
        ]
        for s in ranked
    ]


_HEADER = ["model", "score [95% CI]", "cost/case", "p50", "p95", "failures", "pareto"]


def format_table(summaries: Sequence[ModelSummary]) -> str:
    """The summaries as a plain-text table, best score first; ``*`` marks the Pareto front."""
    rows = [_HEADER, *_rows(summaries)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_HEADER))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


def markdown_summary(summaries: Sequence[ModelSummary], *, chart: str | None = None) -> str:
    """A markdown summary: what was measured, the table, the front and a one-line recommendation."""
    if not summaries:
        return "# Eval report\n\nNo results.\n"
    first = summaries[0]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(max(s.finished_at for s in summaries)))
    front = pareto_front(summaries)
    best = max(summaries, key=lambda s: s.mean)
    lines = [
        f"# Eval report: {first.eval_set}",
        "",
        f"Set version `{first.set_version}`, {first.cases} cases, {len(summaries)} models, latest run {when}.",
        "",
        "| " + " | ".join(_HEADER) + " |",
        "| " + " | ".join("---" for _ in _HEADER) + " |",
        *("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in _rows(summaries)),
        "",
        f"**Pareto front** (cheapest first): {', '.join(front) if front else 'no priced model'}.",
        "",
        f"**Best score**: {best.model} ({best.mean:.3f}).",
    ]
    if front:
        cheapest_good = next(
            (m for m in front if next(s for s in summaries if s.model == m).ci_high >= best.mean), None
        )
        if cheapest_good is not None and cheapest_good != best.model:
            lines.append(
                f"**Cheapest statistically tied with the best**: {cheapest_good} "
                "(its 95% interval reaches the best score)."
            )
    failing = [s for s in summaries if s.failures]
    if failing:
        lines += ["", "## Failures", ""]
        for s in failing:
            lines += [f"- {s.model}: {s.failures} of {s.cases}"] + [f"  - {e}" for e in s.failure_examples]
    if chart is not None:
        lines += ["", f"![quality against cost]({chart})"]
    return "\n".join(lines) + "\n"


def write_chart(summaries: Sequence[ModelSummary], path: str | Path) -> Path | None:
    """Draw quality against cost per case (colour: median latency; the Pareto front joined) as a PNG.

    Returns:
        The path written, or ``None`` when no model has a price (nothing to place on the cost axis).
    """
    priced = [s for s in summaries if s.cost_per_case_usd is not None]
    if not priced:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    costs = [float(s.cost_per_case_usd or 0) for s in priced]
    scores = [s.mean for s in priced]
    latency = [s.latency_p50_s or 0.0 for s in priced]
    errors = [[s.mean - s.ci_low for s in priced], [s.ci_high - s.mean for s in priced]]
    figure, axes = plt.subplots(figsize=(8, 5.5), dpi=110)
    try:
        axes.errorbar(costs, scores, yerr=errors, fmt="none", ecolor="0.6", capsize=3, zorder=1)
        points = axes.scatter(costs, scores, c=latency, cmap="viridis", s=90, zorder=3, edgecolors="0.2")
        figure.colorbar(points, ax=axes, label="median latency (s)")
        front = set(pareto_front(priced))
        front_points = sorted(
            (c, q) for c, q, s in zip(costs, scores, priced, strict=True) if s.model in front
        )
        if front_points:
            xs, ys = zip(*front_points, strict=True)
            axes.plot(xs, ys, "--", color="tab:red", zorder=2, label="Pareto front")
            axes.scatter(xs, ys, s=260, facecolors="none", edgecolors="tab:red", linewidths=1.5, zorder=4)
        for c, q, s in zip(costs, scores, priced, strict=True):
            right = c == max(costs) and len(costs) > 1  # label the rightmost point on its left
            offset, align = ((-8, 6), "right") if right else ((8, 6), "left")
            axes.annotate(s.model, (c, q), textcoords="offset points", xytext=offset, ha=align, fontsize=8)
        positive = [c for c in costs if c > 0]
        if (
            positive
            and min(positive) > 0
            and max(positive) / min(positive) > 100
            and len(positive) == len(costs)
        ):
            axes.set_xscale("log")
        axes.margins(x=0.2)
        unpriced = [s.model for s in summaries if s.cost_per_case_usd is None]
        if unpriced:
            note = "not shown (no price): " + ", ".join(unpriced)
            axes.text(0.01, 0.01, note, transform=axes.transAxes, fontsize=7, color="0.4")
        axes.set_xlabel("cost per case (USD)")
        axes.set_ylabel("mean score (95% CI)")
        axes.set_ylim(-0.05, 1.05)
        axes.set_title(f"{priced[0].eval_set}: quality against cost")
        axes.grid(True, alpha=0.3)
        if front_points:
            axes.legend(loc="lower right")
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(out, bbox_inches="tight")
    finally:
        plt.close(figure)
    return out


def write_report(summaries: Sequence[ModelSummary], out_dir: str | Path) -> ReportFiles:
    """Write ``<set>.png`` and ``<set>.md`` into ``out_dir``.

    Raises:
        ValueError: No summaries.
    """
    if not summaries:
        raise ValueError("no eval results to report")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in summaries[0].eval_set)
    chart = write_chart(summaries, folder / f"{stem}.png")
    markdown = folder / f"{stem}.md"
    markdown.write_text(markdown_summary(summaries, chart=chart.name if chart else None), encoding="utf-8")
    return ReportFiles(chart, markdown)
