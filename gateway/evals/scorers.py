"""Scorers: from a model's output and a case to a score in 0..1 with a reason.

Built in, by the name a case's ``scorer`` uses (options go beside ``type`` in an object)::

    exact        the normalised output equals ``expected`` (or one of a list)
                 options: case_sensitive (false), strip_punctuation (false), collapse_whitespace (true)
    contains     the output contains ``expected`` (a string, or a list: all of them, or any with any: true)
    regex        the output matches ``pattern`` (or ``expected``); options: ignore_case, fullmatch
    choice       the multiple-choice letter in the output ("B", "(b)", "Answer: B") equals ``expected``
    numeric      the last number in the output is within abs_tol (1e-6) or rel_tol (0) of ``expected``
    json_schema  the output (code fences allowed) is JSON valid against ``schema`` (or ``expected``)
    tool_call    the first tool call has ``expected.name`` and, at least, ``expected.arguments``
                 (every argument when exact_arguments: true)
    judge        a judge model, called through Switchyard, grades the output against ``rubric``;
                 options: rubric, model, scale (1): it answers {"score": 0..scale, "reason": "..."}

A custom scorer is ``module:function``, called as ``function(output, case, **options)``; it may
return a :class:`Score`, a number in 0..1, a bool, or a ``(number, reason)`` pair.

A judge that answers something unparseable gives a *scored failure*: score 0, with ``failure`` set;
never an exception. A scorer that raises is the runner's business (a failure of that case).
"""

from __future__ import annotations

import importlib
import json
import math
import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from gateway.core.errors import GatewayError
from gateway.evals._jsonschema import schema_errors
from gateway.evals.sets import EvalCase

__all__ = [
    "BUILTIN_SCORERS",
    "JudgeReply",
    "Output",
    "Score",
    "ScorerError",
    "ScoringContext",
    "ToolCallOutput",
    "resolve_scorer",
]

JUDGE_SYSTEM = (
    "You grade an AI assistant's answer against a rubric. Reply with one JSON object and nothing else: "
    '{"score": <a number from 0 to SCALE>, "reason": "<one sentence>"}.'
)


@dataclass(frozen=True, slots=True)
class ToolCallOutput:
    """One tool call the model made: its name and its arguments as the JSON text it wrote."""

    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Output:
    """What the model answered: its text (``""`` when none) and its tool calls."""

    text: str
    tool_calls: tuple[ToolCallOutput, ...] = ()


@dataclass(frozen=True, slots=True)
class Score:
    """A scorer's verdict.

    Attributes:
        value: 0 (wrong) .. 1 (right).
        reason: Why, for people.
        judge_cost_usd: What the judge call cost, when a judge was called (``None`` if unpriced).
        failure: Set when the score is a failure rather than a judgement (a judge's garbage).
    """

    value: float
    reason: str = ""
    judge_cost_usd: Decimal | None = None
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class JudgeReply:
    """What a judge call returned: its text and cost."""

    text: str
    cost_usd: Decimal | None = None


class JudgeFn(Protocol):
    """Calls a judge model with ``messages`` and returns its reply."""

    def __call__(self, model: str | None, messages: list[dict[str, Any]]) -> JudgeReply: ...


@dataclass(frozen=True, slots=True)
class ScoringContext:
    """What a scorer may use besides the output and the case: the judge, if one is configured."""

    judge: JudgeFn | None = None


class ScorerError(GatewayError, ValueError):
    """A scorer name or reference that cannot be resolved."""

    code = "eval.bad-scorer"


BoundScorer = Callable[[Output, EvalCase, ScoringContext], Score]


def _normalise(text: str, *, case_sensitive: bool, strip_punctuation: bool, collapse_whitespace: bool) -> str:
    text = text.strip()
    if not case_sensitive:
        text = text.casefold()
    if strip_punctuation:
        text = text.translate(str.maketrans("", "", string.punctuation)).strip()
    if collapse_whitespace:
        text = " ".join(text.split())
    return text


def _accepted(expected: Any) -> list[str]:
    if expected is None:
        raise ValueError("this scorer needs the case's 'expected'")
    return [str(e) for e in expected] if isinstance(expected, list) else [str(expected)]


def exact(
    output: Output,
    case: EvalCase,
    ctx: ScoringContext,
    *,
    case_sensitive: bool = False,
    strip_punctuation: bool = False,
    collapse_whitespace: bool = True,
) -> Score:
    """1 when the normalised output equals the normalised ``expected`` (or one of a list)."""
    options = {
        "case_sensitive": case_sensitive,
        "strip_punctuation": strip_punctuation,
        "collapse_whitespace": collapse_whitespace,
    }
    got = _normalise(output.text, **options)
    ok = any(got == _normalise(e, **options) for e in _accepted(case.expected))
    return Score(1.0 if ok else 0.0, "matches" if ok else f"{got[:80]!r} is not {case.expected!r}")


def contains(
    output: Output, case: EvalCase, ctx: ScoringContext, *, case_sensitive: bool = False, any: bool = False
) -> Score:
    """1 when the output contains ``expected`` (all of a list, or any with ``any=True``)."""
    fold = (lambda s: s) if case_sensitive else str.casefold
    text = fold(output.text)
    needles = _accepted(case.expected)
    found = [n for n in needles if fold(n) in text]
    ok = bool(found) if any else len(found) == len(needles)
    missing = [n for n in needles if n not in found]
    return Score(1.0 if ok else 0.0, "found" if ok else f"missing {missing!r}")


def regex(
    output: Output,
    case: EvalCase,
    ctx: ScoringContext,
    *,
    pattern: str | None = None,
    ignore_case: bool = False,
    fullmatch: bool = False,
) -> Score:
    """1 when the output matches ``pattern`` (else ``expected``), anywhere or in full."""
    compiled = re.compile(
        pattern if pattern is not None else _accepted(case.expected)[0], re.I if ignore_case else 0
    )
    text = output.text.strip()
    ok = (compiled.fullmatch(text) if fullmatch else compiled.search(text)) is not None
    return Score(1.0 if ok else 0.0, "matches" if ok else f"does not match {compiled.pattern!r}")


def _choice_letter(text: str, letters: str) -> str | None:
    stripped = text.strip()
    short = re.fullmatch(r"\(?([A-Za-z])\)?[.):]?", stripped)
    if short:
        return short.group(1).upper()
    answer = re.search(r"\banswer\s*(?:is|:)?\s*\(?([A-Za-z])\)?(?![A-Za-z])", stripped, re.I)
    if answer:
        return answer.group(1).upper()
    leading = re.search(r"^\s*\(?([A-Z])\)?(?:[.):]|\s*$)", stripped, re.M)
    if leading:
        return leading.group(1)
    standalone = [m for m in re.findall(r"\(?\b([A-Z])\b\)?", stripped) if m in letters and m != "I"]
    return standalone[-1] if standalone else None


def choice(output: Output, case: EvalCase, ctx: ScoringContext, *, letters: str = "ABCDEFGH") -> Score:
    """1 when the multiple-choice letter found in the output ("B", "(b)", "Answer: B") equals ``expected``."""
    want = _accepted(case.expected)[0].strip().upper()
    got = _choice_letter(output.text, letters)
    if got is None or got not in letters:
        return Score(0.0, "no choice letter in the output")
    return Score(1.0 if got == want else 0.0, f"chose {got}, expected {want}")


_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?|-?\.\d+")


def numeric(
    output: Output, case: EvalCase, ctx: ScoringContext, *, abs_tol: float = 1e-6, rel_tol: float = 0.0
) -> Score:
    """1 when the last number in the output is within ``abs_tol`` or ``rel_tol`` of ``expected``."""
    want = float(_accepted(case.expected)[0].replace(",", ""))
    numbers = _NUMBER.findall(output.text)
    if not numbers:
        return Score(0.0, "no number in the output")
    got = float(numbers[-1].replace(",", ""))
    ok = math.isclose(got, want, abs_tol=abs_tol, rel_tol=rel_tol)
    return Score(1.0 if ok else 0.0, f"{got:g} {'is' if ok else 'is not'} {want:g}")


def _json_text(text: str) -> Any:
    stripped = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", stripped, re.S)
    return json.loads(fenced.group(1) if fenced else stripped)


def json_schema(
    output: Output, case: EvalCase, ctx: ScoringContext, *, schema: Mapping[str, Any] | None = None
) -> Score:
    """1 when the output is JSON valid against ``schema`` (else ``expected``, read as a schema)."""
    rules = schema if schema is not None else case.expected
    if not isinstance(rules, Mapping):
        raise ValueError("json_schema needs a 'schema' option or an object 'expected'")
    try:
        value = _json_text(output.text)
    except json.JSONDecodeError as exc:
        return Score(0.0, f"not JSON: {exc.msg}")
    errors = schema_errors(value, rules)
    return Score(0.0 if errors else 1.0, "; ".join(errors) if errors else "valid")


def tool_call(output: Output, case: EvalCase, ctx: ScoringContext, *, exact_arguments: bool = False) -> Score:
    """1 when the first tool call has ``expected.name`` and (at least) ``expected.arguments``."""
    expected = case.expected
    if not isinstance(expected, Mapping) or not isinstance(expected.get("name"), str):
        raise ValueError('tool_call needs expected: {"name": ..., "arguments": {...}}')
    if not output.tool_calls:
        return Score(0.0, "no tool call")
    call = output.tool_calls[0]
    if call.name != expected["name"]:
        return Score(0.0, f"called {call.name!r}, expected {expected['name']!r}")
    try:
        arguments = json.loads(call.arguments or "{}")
    except json.JSONDecodeError:
        return Score(0.0, "the arguments are not JSON")
    want = dict(expected.get("arguments") or {})
    if exact_arguments:
        ok = arguments == want
    else:
        ok = isinstance(arguments, dict) and all(arguments.get(k) == v for k, v in want.items())
    return Score(1.0 if ok else 0.0, "matches" if ok else f"arguments {arguments!r}, expected {want!r}")


def judge(
    output: Output,
    case: EvalCase,
    ctx: ScoringContext,
    *,
    rubric: str = "Is the answer correct, complete and helpful?",
    model: str | None = None,
    scale: float = 1.0,
) -> Score:
    """Ask a judge model to grade the output; unparseable answers are scored failures."""
    if ctx.judge is None:
        raise ValueError("the judge scorer needs a judge model: pass --judge MODEL or judge_model=")
    question = case.messages[-1].get("content", "")
    expected = "" if case.expected is None else f"\nReference answer: {case.expected}"
    messages = [
        {"role": "system", "content": JUDGE_SYSTEM.replace("SCALE", f"{scale:g}")},
        {
            "role": "user",
            "content": f"Rubric: {rubric}\nQuestion: {question}{expected}\nAnswer to grade: {output.text}",
        },
    ]
    reply = ctx.judge(model, messages)
    value, reason = _parse_verdict(reply.text, scale)
    if value is None:
        return Score(0.0, reason, judge_cost_usd=reply.cost_usd, failure=f"judge returned garbage: {reason}")
    return Score(value, reason, judge_cost_usd=reply.cost_usd)


def _parse_verdict(text: str, scale: float) -> tuple[float | None, str]:
    match = re.search(r"\{.*\}", text, re.S)
    try:
        verdict = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        verdict = None
    if not isinstance(verdict, dict):
        return None, f"no JSON verdict in {text[:80]!r}"
    raw = verdict.get("score")
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= scale:
        return None, f"score {raw!r} is not a number from 0 to {scale:g}"
    return float(raw) / scale, str(verdict.get("reason", ""))[:500]


BUILTIN_SCORERS: dict[str, Callable[..., Score]] = {
    "exact": exact,
    "contains": contains,
    "regex": regex,
    "choice": choice,
    "numeric": numeric,
    "json_schema": json_schema,
    "tool_call": tool_call,
    "judge": judge,
}


def resolve_scorer(spec: str | Mapping[str, Any]) -> BoundScorer:
    """Turn a case's ``scorer`` into a callable ``(output, case, ctx) -> Score``.

    Args:
        spec: A built-in name, ``module:function``, or ``{"type": ..., **options}``.

    Raises:
        ScorerError: An unknown name, or a ``module:function`` that cannot be imported.

    Example:
        >>> score = resolve_scorer({"type": "numeric", "abs_tol": 0.5})
        >>> score(Output("about 41.8"), EvalCase("c", (), expected=42), ScoringContext()).value
        1.0
    """
    name, options = (
        (spec, {})
        if isinstance(spec, str)
        else (str(spec["type"]), {k: v for k, v in spec.items() if k != "type"})
    )
    if name in BUILTIN_SCORERS:
        function = BUILTIN_SCORERS[name]

        def builtin(output: Output, case: EvalCase, ctx: ScoringContext) -> Score:
            return function(output, case, ctx, **options)

        return builtin
    custom = _import(name)

    def call_custom(output: Output, case: EvalCase, ctx: ScoringContext) -> Score:
        return _as_score(custom(output, case, **options))

    return call_custom


def _import(reference: str) -> Callable[..., Any]:
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        known = ", ".join(sorted(BUILTIN_SCORERS))
        raise ScorerError(f"unknown scorer {reference!r}: use one of {known}, or module:function")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ScorerError(f"cannot import scorer {reference!r}: {exc}") from exc
    if not callable(target):
        raise ScorerError(f"scorer {reference!r} is not callable")
    return target  # type: ignore[no-any-return]


def _as_score(result: Any) -> Score:
    if isinstance(result, Score):
        value, reason = result.value, result.reason
    elif isinstance(result, tuple) and len(result) == 2:
        value, reason = result[0], str(result[1])
    elif isinstance(result, bool | int | float):
        value, reason = result, ""
    else:
        raise TypeError(f"a scorer must return a Score, a number, a bool or (number, reason), got {result!r}")
    value = float(value)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"a score must be within 0..1, got {value}")
    return result if isinstance(result, Score) else Score(value, reason)
