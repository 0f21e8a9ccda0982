"""Each built-in scorer as a value table, the judge's verdict parsing, and custom scorers."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from gateway.evals import (
    EvalCase,
    JudgeReply,
    Output,
    Score,
    ScorerError,
    ScoringContext,
    ToolCallOutput,
    resolve_scorer,
)
from gateway.evals._jsonschema import schema_errors

CTX = ScoringContext()


def score(spec: Any, text: str, expected: Any, *, calls: tuple[ToolCallOutput, ...] = ()) -> float:
    case = EvalCase("c", ({"role": "user", "content": "q"},), expected=expected)
    return resolve_scorer(spec)(Output(text, calls), case, CTX).value


@pytest.mark.parametrize(
    ("spec", "text", "expected", "want"),
    [
        ("exact", "Paris", "Paris", 1.0),
        ("exact", "  paris \n", "Paris", 1.0),
        ("exact", "Paris.", "Paris", 0.0),
        ({"type": "exact", "strip_punctuation": True}, "Paris.", "Paris", 1.0),
        ({"type": "exact", "case_sensitive": True}, "paris", "Paris", 0.0),
        ("exact", "new   york", "New York", 1.0),
        ({"type": "exact", "collapse_whitespace": False}, "new   york", "New York", 0.0),
        ("exact", "Lyon", ["Paris", "Lyon"], 1.0),
        ("exact", "4", 4, 1.0),
        ("contains", "The capital is Paris.", "paris", 1.0),
        ({"type": "contains", "case_sensitive": True}, "The capital is Paris.", "paris", 0.0),
        ("contains", "red and blue", ["red", "blue"], 1.0),
        ("contains", "red only", ["red", "blue"], 0.0),
        ({"type": "contains", "any": True}, "red only", ["red", "blue"], 1.0),
        ("regex", "Order #12345 shipped", r"#\d{5}\b", 1.0),
        ({"type": "regex", "pattern": r"^yes$", "ignore_case": True}, "YES", None, 1.0),
        ({"type": "regex", "pattern": r"\d+", "fullmatch": True}, "12 apples", None, 0.0),
        ("choice", "B", "B", 1.0),
        ("choice", "(b)", "B", 1.0),
        ("choice", "The answer is C.", "C", 1.0),
        ("choice", "Answer: (A) because 4 is even", "A", 1.0),
        ("choice", "B) 7 is prime", "B", 1.0),
        ("choice", "I think D", "B", 0.0),
        ("choice", "none of them", "B", 0.0),
        ("numeric", "42", 42, 1.0),
        ("numeric", "The total is 1,234.5 dollars", "1234.5", 1.0),
        ("numeric", "first 3 then 41.9", 42, 0.0),
        ({"type": "numeric", "abs_tol": 0.2}, "first 3 then 41.9", 42, 1.0),
        ({"type": "numeric", "rel_tol": 0.01}, "99.5", 100, 1.0),
        ("numeric", "-7", -7, 1.0),
        ("numeric", "no digits", 1, 0.0),
    ],
)
def test_text_scorers(spec: Any, text: str, expected: Any, want: float) -> None:
    assert score(spec, text, expected) == want


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"type": "integer", "minimum": 0},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ('{"name": "Ada", "age": 36}', 1.0),
        ('```json\n{"name": "Ada", "age": 36, "tags": ["a"]}\n```', 1.0),
        ('{"name": "Ada"}', 0.0),
        ('{"name": "Ada", "age": -1}', 0.0),
        ('{"name": "Ada", "age": 3, "extra": 1}', 0.0),
        ('{"name": "Ada", "age": 3, "tags": ["c"]}', 0.0),
        ('{"name": "Ada", "age": "36"}', 0.0),
        ("not json", 0.0),
    ],
)
def test_json_schema_scorer(text: str, want: float) -> None:
    assert score({"type": "json_schema", "schema": SCHEMA}, text, None) == want
    assert score("json_schema", text, SCHEMA) == want  # the schema may be the case's expected


def test_schema_subset_messages() -> None:
    assert schema_errors({"name": "", "age": 1.5, "x": 1}, SCHEMA) == [
        "$.name: shorter than 1 characters",
        "$.age: expected integer, got number",
        "$: unexpected property 'x'",
    ]
    ref = {"$defs": {"n": {"type": "number"}}, "anyOf": [{"$ref": "#/$defs/n"}, {"type": "null"}]}
    assert schema_errors(3, ref) == [] and schema_errors(None, ref) == []
    assert schema_errors("x", ref) == ["$: matches none of anyOf"]
    assert schema_errors(True, {"type": "integer"}) == ["$: expected integer, got boolean"]


def call(name: str, **arguments: Any) -> tuple[ToolCallOutput, ...]:
    return (ToolCallOutput(name, json.dumps(arguments)),)


@pytest.mark.parametrize(
    ("spec", "calls", "want"),
    [
        ("tool_call", call("get_weather", city="Paris", unit="c"), 1.0),
        ("tool_call", call("get_weather", city="Lyon"), 0.0),
        ("tool_call", call("get_time", city="Paris"), 0.0),
        ("tool_call", (), 0.0),
        ({"type": "tool_call", "exact_arguments": True}, call("get_weather", city="Paris", unit="c"), 0.0),
        ({"type": "tool_call", "exact_arguments": True}, call("get_weather", city="Paris"), 1.0),
        ("tool_call", (ToolCallOutput("get_weather", "{broken"),), 0.0),
    ],
)
def test_tool_call_scorer(spec: Any, calls: tuple[ToolCallOutput, ...], want: float) -> None:
    expected = {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert score(spec, "", expected, calls=calls) == want


class FakeJudge:
    def __init__(self, text: str) -> None:
        self.text = text
        self.seen: list[tuple[str | None, list[dict[str, Any]]]] = []

    def __call__(self, model: str | None, messages: list[dict[str, Any]]) -> JudgeReply:
        self.seen.append((model, messages))
        return JudgeReply(self.text, Decimal("0.001"))


@pytest.mark.parametrize(
    ("reply", "scale", "want", "failed"),
    [
        ('{"score": 0.75, "reason": "mostly right"}', 1, 0.75, False),
        ('Verdict: {"score": 8, "reason": "good"} done', 10, 0.8, False),
        ('{"score": 11}', 10, 0.0, True),
        ('{"score": "high"}', 1, 0.0, True),
        ('{"score": true}', 1, 0.0, True),
        ("It's great!", 1, 0.0, True),
        ("{not json}", 1, 0.0, True),
        ("[0.5]", 1, 0.0, True),
    ],
)
def test_judge_verdicts(reply: str, scale: int, want: float, failed: bool) -> None:
    judge = FakeJudge(reply)
    case = EvalCase(
        "c", ({"role": "user", "content": "Why is the sky blue?"},), expected="Rayleigh scattering"
    )
    spec = {"type": "judge", "rubric": "Mentions scattering", "scale": scale, "model": "judge/x"}
    result = resolve_scorer(spec)(Output("Because of scattering"), case, ScoringContext(judge=judge))
    assert (result.value, result.failure is not None, result.judge_cost_usd) == (
        want,
        failed,
        Decimal("0.001"),
    )
    model, messages = judge.seen[0]
    assert model == "judge/x"
    assert "Mentions scattering" in messages[1]["content"] and "Rayleigh scattering" in messages[1]["content"]


def test_judge_without_a_judge_model_raises() -> None:
    with pytest.raises(ValueError, match="judge model"):
        score("judge", "x", None)


def always_half(output: Output, case: EvalCase, *, bonus: float = 0.0) -> tuple[float, str]:
    return 0.5 + bonus, "half"


def returns_score(output: Output, case: EvalCase) -> Score:
    return Score(1.0 if output.text == case.expected else 0.0, "custom")


def returns_nonsense(output: Output, case: EvalCase) -> object:
    return "yes"


def test_custom_scorers_by_reference() -> None:
    here = __name__
    assert score(f"{here}:always_half", "x", None) == 0.5
    assert score({"type": f"{here}:always_half", "bonus": 0.25}, "x", None) == 0.75
    assert score(f"{here}:returns_score", "ok", "ok") == 1.0
    with pytest.raises(TypeError, match="must return"):
        score(f"{here}:returns_nonsense", "x", None)
    with pytest.raises(ValueError, match="within 0..1"):
        score({"type": f"{here}:always_half", "bonus": 1}, "x", None)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("levenshtein", "unknown scorer 'levenshtein'"),
        ("no_such_module_xyz:f", "cannot import scorer"),
        ("tests.evals.test_scorers:missing", "cannot import scorer"),
        ("tests.evals.test_scorers:SCHEMA", "not callable"),
    ],
)
def test_unresolvable_scorers(spec: str, message: str) -> None:
    with pytest.raises(ScorerError, match=message):
        resolve_scorer(spec)
