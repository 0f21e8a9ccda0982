"""Curate and export captured examples: filter, de-duplicate, split, write training files.

Formats:
- ``openai-ft``: OpenAI fine-tuning JSONL, ``{"messages": [..., {"role": "assistant", ...}]}``
  (also what ``switchyard tune`` reads);
- ``jsonl``: the captured records as they are stored (redacted), one per line;
- ``preference``: ``{"input": {"messages": [...]}, "preferred_output": [...],
  "non_preferred_output": [...]}`` pairs (OpenAI's DPO format), from prompts captured more than
  once with different feedback scores.

A held-out share (``held_out``) is written as an eval set (``held_out.jsonl``, docs/evals.md's
format: the captured answer is each case's ``expected``), cut by prompt before anything else, so
that no held-out prompt is in the training or validation files, with any of its answers.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gateway.capture.store import CapturedExample

__all__ = ["ExportFormat", "ExportResult", "curate", "export_examples"]

ExportFormat = Literal["openai-ft", "jsonl", "preference"]


@dataclass(slots=True)
class ExportResult:
    train: Path
    validation: Path | None
    train_count: int = 0
    validation_count: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> examples left out
    held_out: Path | None = None
    held_out_count: int = 0


def curate(examples: Iterable[CapturedExample], *, min_score: float | None = None,
           skipped: dict[str, int] | None = None) -> list[CapturedExample]:  # fmt: skip
    """Keep usable examples: a prompt and a completion, score at least ``min_score``, no duplicates."""
    counts = skipped if skipped is not None else {}
    kept: dict[str, CapturedExample] = {}
    for example in examples:
        reason = _unusable(example, min_score)
        if reason is None and example.digest in kept:
            reason = "duplicate"
        if reason is not None:
            counts[reason] = counts.get(reason, 0) + 1
            continue
        kept[example.digest] = example
    return list(kept.values())


def _unusable(example: CapturedExample, min_score: float | None) -> str | None:
    if not example.messages:
        return "no prompt"
    if not (example.completion or "").strip() and not example.tool_calls:
        return "empty completion"
    if min_score is not None and (example.score is None or example.score < min_score):
        return "below min score"
    return None


def _openai_ft(example: CapturedExample) -> dict[str, Any]:
    reply: dict[str, Any] = {"role": "assistant", "content": example.completion}
    if example.tool_calls:
        reply["tool_calls"] = example.tool_calls
    return {"messages": [*example.messages, reply]}


def _preference_pairs(examples: Sequence[CapturedExample]) -> list[dict[str, Any]]:
    by_prompt: dict[str, list[CapturedExample]] = {}
    for example in examples:
        if example.score is not None:
            by_prompt.setdefault(json.dumps(example.messages, sort_keys=True), []).append(example)
    pairs = []
    for group in by_prompt.values():
        ranked = sorted(group, key=lambda e: e.score or 0.0, reverse=True)
        best, worst = ranked[0], ranked[-1]
        if (best.score or 0.0) > (worst.score or 0.0):
            pairs.append({
                "input": {"messages": best.messages},
                "preferred_output": [{"role": "assistant", "content": best.completion}],
                "non_preferred_output": [{"role": "assistant", "content": worst.completion}],
            })  # fmt: skip
    return pairs


def export_examples(examples: Iterable[CapturedExample], out_dir: str | Path, *, fmt: ExportFormat = "openai-ft",
                    min_score: float | None = None, validation: float = 0.1,
                    seed: int = 0, held_out: float = 0.0, route: str | None = None,
                    scorer: str = "exact") -> ExportResult:  # fmt: skip
    """Write ``train.jsonl`` and ``validation.jsonl`` (a ``validation`` share, chosen by ``seed``), and
    with ``held_out`` > 0 an eval set of that share of the prompts (``held_out.jsonl``)."""
    if not 0 <= validation < 1:
        raise ValueError(f"validation must be in [0, 1), got {validation}")
    if not 0 <= held_out < 1:
        raise ValueError(f"held_out must be in [0, 1), got {held_out}")
    if held_out and fmt == "preference":
        raise ValueError("a held-out eval set is written with the openai-ft or jsonl format, not preference")
    skipped: dict[str, int] = {}
    kept = curate(examples, min_score=None if fmt == "preference" else min_score, skipped=skipped)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases: list[dict[str, Any]] = []
    if held_out:
        kept, held = _split_by_prompt(kept, held_out, seed)
        cases = [_case(e, scorer) for e in held]
        header = {"set": {"name": f"{route or 'captured'}-held-out", "scorer": scorer,
                          **({"route": route} if route else {})}}  # fmt: skip
        _write(out / "held_out.jsonl", [header, *cases])
    rows: list[dict[str, Any]]
    if fmt == "preference":
        rows = _preference_pairs(kept)
    elif fmt == "jsonl":
        rows = [e.to_json() for e in kept]
    else:
        rows = [_openai_ft(e) for e in kept]
    random.Random(seed).shuffle(rows)
    cut = round(len(rows) * validation) if len(rows) > 1 else 0
    if validation > 0 and len(rows) > 1:
        cut = max(cut, 1)
    result = ExportResult(out / "train.jsonl", out / "validation.jsonl" if cut else None, skipped=skipped)
    if held_out:
        result.held_out, result.held_out_count = out / "held_out.jsonl", len(cases)
    _write(result.train, rows[cut:])
    result.train_count = len(rows) - cut
    if result.validation is not None:
        _write(result.validation, rows[:cut])
        result.validation_count = cut
    return result


def _split_by_prompt(
    examples: Sequence[CapturedExample], share: float, seed: int
) -> tuple[list[CapturedExample], list[CapturedExample]]:
    """``share`` of the distinct prompts (at least one where there are two), all their examples out of
    training; the held-out side keeps one example per prompt (the first captured)."""
    by_prompt: dict[str, list[CapturedExample]] = {}
    for example in examples:
        by_prompt.setdefault(json.dumps(example.messages, sort_keys=True), []).append(example)
    prompts = sorted(by_prompt)
    random.Random(seed).shuffle(prompts)
    count = max(1, round(len(prompts) * share)) if len(prompts) > 1 else 0
    held = set(prompts[:count])
    train = [e for p in prompts if p not in held for e in by_prompt[p]]
    return train, [by_prompt[p][0] for p in prompts[:count]]


def _case(example: CapturedExample, scorer: str) -> dict[str, Any]:
    """An eval case from a captured example: its prompt, and its answer as ``expected``."""
    case: dict[str, Any] = {"id": example.id, "messages": example.messages}
    if example.tool_calls and not (example.completion or "").strip():
        call = example.tool_calls[0].get("function", {})
        try:
            arguments = json.loads(call.get("arguments") or "{}")
        except ValueError:
            arguments = {}
        case.update(expected={"name": call.get("name"), "arguments": arguments}, scorer="tool_call")
    else:
        case["expected"] = example.completion
        if scorer != "exact":
            case["scorer"] = scorer
    return case


def _write(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
