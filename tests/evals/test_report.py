"""The report: the Pareto front on known points, the table, the markdown and the PNG."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.evals import ModelSummary, format_table, markdown_summary, pareto_front, write_report
from gateway.evals.report import write_chart


def point(model: str, mean: float, cost: str | None, p50: float = 0.5) -> ModelSummary:
    return ModelSummary(
        "quiz", "v1", model, 20, 20, mean, max(0.0, mean - 0.1), min(1.0, mean + 0.1),
        None if cost is None else Decimal(cost), Decimal(0), p50, p50 * 2, 0, 1_700_000_000.0,
    )  # fmt: skip


# cost ->   0.0001  0.0005  0.001  0.002  0.004  0.01
# front:    tiny    small          mid           big      (cheap-worse, dominated, tie-loser excluded)
POINTS = [
    point("tiny", 0.40, "0.0001"),
    point("small", 0.70, "0.0005"),
    point("dominated", 0.60, "0.001"),  # small is better and cheaper
    point("mid", 0.85, "0.002"),
    point("same-quality-dearer", 0.85, "0.004"),  # mid has the same score for less
    point("big", 0.95, "0.01"),
    point("worse-and-dearest", 0.90, "0.02"),
    point("unpriced", 0.99, None),
]


def test_pareto_front_on_known_points() -> None:
    assert pareto_front(POINTS) == ["tiny", "small", "mid", "big"]
    assert pareto_front([point("a", 0.5, "0.001"), point("b", 0.5, "0.001")]) == ["a", "b"]  # exact ties stay
    assert pareto_front([point("only", 0.1, "0")]) == ["only"]
    assert pareto_front([point("u", 0.9, None)]) == []


def test_table_ranks_by_score_and_marks_the_front() -> None:
    table = format_table(POINTS[:3]).splitlines()
    assert table[0].split() == [
        "model",
        "score",
        "[95%",
        "CI]",
        "cost/case",
        "p50",
        "p95",
        "failures",
        "pareto",
    ]
    assert table[2].split() == [
        "small",
        "0.700",
        "[0.60,",
        "0.80]",
        "$0.000500",
        "0.50s",
        "1.00s",
        "0/20",
        "*",
    ]
    assert table[3].split()[0] == "dominated" and not table[3].endswith("*")
    assert table[4].split()[0] == "tiny"


def test_markdown_summary() -> None:
    text = markdown_summary(POINTS, chart="quiz.png")
    assert text.startswith(
        "# Eval report: quiz\n\nSet version `v1`, 20 cases, 8 models, latest run 2023-11-14 22:13 UTC."
    )
    assert "| small | 0.700 [0.60, 0.80] | $0.000500 | 0.50s | 1.00s | 0/20 | * |" in text
    assert "**Pareto front** (cheapest first): tiny, small, mid, big." in text
    assert "**Best score**: unpriced (0.990)." in text
    assert "**Cheapest statistically tied with the best**: big (its 95% interval" in text
    assert text.rstrip().endswith("![quality against cost](quiz.png)")


def test_write_report_draws_a_png(tmp_path: Path) -> None:
    files = write_report(POINTS, tmp_path / "out")
    assert files.chart == tmp_path / "out" / "quiz.png"
    assert files.chart.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and files.chart.stat().st_size > 10_000
    assert files.markdown.read_text().count("| ") > 8
    assert write_chart([point("u", 0.5, None)], tmp_path / "none.png") is None
    with pytest.raises(ValueError, match="no eval results"):
        write_report([], tmp_path)


def test_import_gateway_loads_neither_matplotlib_nor_rich() -> None:
    code = (
        "import sys, gateway, gateway.evals, gateway.commands.eval; "
        "print(sorted(m for m in ('matplotlib', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
