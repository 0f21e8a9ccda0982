"""Loading JSONL sets: the case shapes, the header, and malformed lines (fatal or skipped)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.evals import EvalCase, EvalSetError, load_set, parse_set

GOOD = '{"id": "a", "prompt": "hi", "expected": "hello"}'


def test_cases_header_and_defaults(tmp_path: Path) -> None:
    path = tmp_path / "support.jsonl"
    path.write_text(
        '{"set": {"name": "help-desk", "route": "support", "task": "triage", "scorer": "contains"}}\n'
        "\n"
        "// a comment\n"
        f"{GOOD}\n"
        '{"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}],'
        ' "expected": 4, "scorer": {"type": "numeric", "abs_tol": 0.1}, "tags": ["math"],'
        ' "params": {"temperature": 0}, "response_format": {"type": "json_object"}}\n'
    )
    loaded = load_set(path)
    assert (loaded.name, loaded.route, loaded.task, loaded.problems) == ("help-desk", "support", "triage", ())
    assert loaded.cases == (
        EvalCase("a", ({"role": "user", "content": "hi"},), "hello", "contains", (), {}, 4),
        EvalCase(
            "line-5",
            ({"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}),
            4,
            {"type": "numeric", "abs_tol": 0.1},
            ("math",),
            {"response_format": {"type": "json_object"}, "temperature": 0},
            5,
        ),
    )
    assert len(loaded.version) == 12


def test_name_defaults_to_the_file_stem_and_version_follows_content(tmp_path: Path) -> None:
    path = tmp_path / "quiz.jsonl"
    path.write_text(GOOD + "\n")
    first = load_set(path)
    assert first.name == "quiz"
    path.write_text(GOOD.replace("hello", "hey") + "\n")
    assert load_set(path).version != first.version
    path.write_text('{"set": {"version": "2026-11"}}\n' + GOOD + "\n")
    assert load_set(path).version == "2026-11"


BAD_LINES = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"expected": "x"}', 'exactly one of "messages" or "prompt"'),
    ('{"prompt": "a", "messages": [{"role": "user", "content": "a"}]}', "exactly one of"),
    ('{"prompt": 3}', '"prompt" must be a string'),
    ('{"messages": []}', "non-empty list"),
    ('{"messages": [{"content": "x"}]}', 'messages[0] must be an object with a "role"'),
    ('{"prompt": "a", "scorer": 7}', '"scorer" must be'),
    ('{"prompt": "a", "tags": "x"}', '"tags" must be a list'),
    ('{"prompt": "a", "expect": "x"}', "unknown field(s) ['expect']"),
    ('{"prompt": "a", "params": [1]}', '"params" must be an object'),
    ('{"id": "a", "prompt": "again"}', "duplicate case id 'a' (first on line 1)"),
]


@pytest.mark.parametrize(("line", "message"), BAD_LINES)
def test_a_malformed_line_is_fatal_with_its_line_number(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(f"{GOOD}\n\n{line}\n")
    with pytest.raises(EvalSetError) as info:
        load_set(path)
    assert (info.value.file, info.value.line) == (str(path), 3)
    assert info.value.message.startswith(f"{path}:3: ")
    assert message in info.value.message
    assert isinstance(info.value, ValueError)


def test_skip_drops_malformed_lines_and_lists_them() -> None:
    text = "\n".join([GOOD, "{oops", '{"prompt": "b"}', "42", '{"prompt": "c", "bogus": 1}'])
    loaded = parse_set(text, name="s", file="s.jsonl", on_error="skip")
    assert [c.id for c in loaded.cases] == ["a", "line-3"]
    assert [(p.line, p.code) for p in loaded.problems] == [
        (2, "eval.bad-set"),
        (4, "eval.bad-set"),
        (5, "eval.bad-set"),
    ]


def test_bad_header_and_empty_sets() -> None:
    with pytest.raises(EvalSetError, match=r"<set>:1: unknown set field\(s\) \['owner'\]"):
        parse_set('{"set": {"owner": "me"}}\n' + GOOD)
    with pytest.raises(EvalSetError, match="no valid case"):
        parse_set("{oops\n", on_error="skip")
    with pytest.raises(EvalSetError, match="no valid case"):
        parse_set("// nothing\n")
    with pytest.raises(ValueError, match="on_error"):
        parse_set(GOOD, on_error="ignore")  # type: ignore[arg-type]
