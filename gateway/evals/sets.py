"""Eval sets: JSONL files of cases, each a prompt, an optional expected answer and a scorer.

One JSON object per line. An optional first line ``{"set": {...}}`` names the set and what it
measures; every other line is a case::

    {"set": {"name": "support", "route": "support", "scorer": "exact"}}
    {"id": "refund", "prompt": "Can I get a refund? Answer yes or no.", "expected": "yes"}
    {"id": "capital", "messages": [{"role": "user", "content": "Capital of France?"}],
     "expected": "Paris", "scorer": {"type": "contains", "case_sensitive": false}, "tags": ["geo"]}

A case has ``messages`` (or ``prompt``, a shorthand for one user message), an optional
``expected``, a ``scorer`` (a name, ``module:function``, or an object with ``type`` and options;
the set's ``scorer`` when absent), optional ``tags``, ``tools``, ``response_format`` and
``params`` (``temperature``, ``max_tokens``… sent with the request). Blank lines and lines that
start with ``//`` are ignored.

A malformed line raises :class:`EvalSetError` naming its line (``on_error="fatal"``, the default)
or is skipped and listed in :attr:`EvalSet.problems` (``on_error="skip"``).

The set's ``version`` is the header's ``version`` when given, else a hash of the cases' content:
editing a case makes a new version, so cached results of the old one are not reused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gateway.core.errors import GatewayError

__all__ = ["EvalCase", "EvalSet", "EvalSetError", "load_set", "parse_set"]

OnError = Literal["skip", "fatal"]
DEFAULT_SCORER = "exact"
_CASE_FIELDS = frozenset(
    {"id", "messages", "prompt", "expected", "scorer", "tags", "tools", "response_format", "params"}
)
_SET_FIELDS = frozenset({"name", "route", "task", "description", "version", "scorer"})


class EvalSetError(GatewayError, ValueError):
    """An eval set file is malformed. ``file`` and ``line`` (1-based) say where."""

    code = "eval.bad-set"

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None) -> None:
        self.file, self.line = file, line
        where = (file or "<set>") + (f":{line}" if line is not None else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class EvalCase:
    """One case of a set.

    Attributes:
        id: Unique within the set (``line-N`` when the file gives none).
        messages: The conversation sent to the model, in the OpenAI shape.
        expected: What the scorer compares against, if anything.
        scorer: A scorer name, ``module:function``, or ``{"type": name, **options}``.
        tags: Free labels, for slicing reports.
        request: Extra request fields (``tools``, ``response_format``, ``temperature``…).
        line: The line of the file the case came from.
    """

    id: str
    messages: tuple[Mapping[str, Any], ...]
    expected: Any = None
    scorer: str | Mapping[str, Any] = DEFAULT_SCORER
    tags: tuple[str, ...] = ()
    request: Mapping[str, Any] = field(default_factory=dict)
    line: int = 0


@dataclass(frozen=True, slots=True)
class EvalSet:
    """A loaded set: its name, what it measures, its version and its cases.

    Attributes:
        name: The set's name (the header's, else the file's stem); the store is keyed by it.
        version: The header's ``version``, else a hash of the cases.
        cases: The cases, in file order.
        route: The policy route the set measures, if the header says.
        task: A free description of the task measured, if the header says.
        problems: Lines skipped under ``on_error="skip"``, as errors naming their line.
    """

    name: str
    version: str
    cases: tuple[EvalCase, ...]
    route: str | None = None
    task: str | None = None
    problems: tuple[EvalSetError, ...] = ()


def load_set(path: str | Path, *, on_error: OnError = "fatal") -> EvalSet:
    """Load an eval set from a JSONL file.

    Args:
        path: The file.
        on_error: ``"fatal"`` raises on the first malformed line; ``"skip"`` drops it and lists it
            in ``problems``.

    Returns:
        The set.

    Raises:
        EvalSetError: A malformed line (``fatal``), a duplicate id, or no case at all.
        OSError: The file cannot be read.
    """
    path = Path(path)
    return parse_set(path.read_text(encoding="utf-8"), name=path.stem, file=str(path), on_error=on_error)


def parse_set(
    text: str, *, name: str = "set", file: str | None = None, on_error: OnError = "fatal"
) -> EvalSet:
    """Parse the text of a JSONL set; see :func:`load_set`.

    Example:
        >>> s = parse_set('{"prompt": "2+2?", "expected": "4"}\\n{"prompt": "3+3?", "expected": "6"}')
        >>> [(c.id, c.expected) for c in s.cases]
        [('line-1', '4'), ('line-2', '6')]
    """
    if on_error not in ("skip", "fatal"):
        raise ValueError(f"on_error must be 'skip' or 'fatal', got {on_error!r}")
    header: dict[str, Any] = {}
    cases: list[EvalCase] = []
    problems: list[EvalSetError] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        try:
            value = _json_object(line)
            if "set" in value and not cases and not header:
                header = _header(value)
                continue
            case = _case(value, number, header.get("scorer", DEFAULT_SCORER))
            if case.id in seen:
                raise ValueError(f"duplicate case id {case.id!r} (first on line {seen[case.id]})")
        except ValueError as exc:
            error = EvalSetError(str(exc), file=file, line=number)
            if on_error == "fatal":
                raise error from exc
            problems.append(error)
            continue
        seen[case.id] = number
        cases.append(case)
    if not cases:
        raise EvalSetError("the set has no valid case", file=file)
    version = str(header.get("version") or _content_hash(cases))
    return EvalSet(
        name=str(header.get("name") or name),
        version=version,
        cases=tuple(cases),
        route=header.get("route"),
        task=header.get("task"),
        problems=tuple(problems),
    )


def _json_object(line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at column {exc.colno}") from exc
    if not isinstance(value, dict):
        raise ValueError(f"a case must be a JSON object, got {type(value).__name__}")
    return value


def _header(value: dict[str, Any]) -> dict[str, Any]:
    header = value["set"]
    if not isinstance(header, dict):
        raise ValueError('"set" must be an object: {"set": {"name": ..., "route": ...}}')
    unknown = sorted(set(header) - _SET_FIELDS)
    if unknown:
        raise ValueError(f"unknown set field(s) {unknown}; allowed: {sorted(_SET_FIELDS)}")
    for key in ("name", "route", "task", "description"):
        if key in header and not isinstance(header[key], str):
            raise ValueError(f'set field "{key}" must be a string')
    _check_scorer(header.get("scorer", DEFAULT_SCORER))
    return header


def _case(value: dict[str, Any], number: int, default_scorer: Any) -> EvalCase:
    unknown = sorted(set(value) - _CASE_FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}; a case takes {sorted(_CASE_FIELDS)}")
    case_id = value.get("id", f"line-{number}")
    if not isinstance(case_id, str | int) or isinstance(case_id, bool) or str(case_id) == "":
        raise ValueError('"id" must be a non-empty string or an integer')
    scorer = value.get("scorer", default_scorer)
    _check_scorer(scorer)
    tags = value.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise ValueError('"tags" must be a list of strings')
    request: dict[str, Any] = {}
    for key in ("tools", "response_format"):
        if key in value:
            request[key] = value[key]
    params = value.get("params", {})
    if not isinstance(params, dict):
        raise ValueError('"params" must be an object of request fields (temperature, max_tokens...)')
    request.update(params)
    return EvalCase(
        id=str(case_id),
        messages=_messages(value),
        expected=value.get("expected"),
        scorer=scorer,
        tags=tuple(tags),
        request=request,
        line=number,
    )


def _messages(value: dict[str, Any]) -> tuple[Mapping[str, Any], ...]:
    if ("messages" in value) == ("prompt" in value):
        raise ValueError('a case needs exactly one of "messages" or "prompt"')
    if "prompt" in value:
        if not isinstance(value["prompt"], str):
            raise ValueError('"prompt" must be a string')
        return ({"role": "user", "content": value["prompt"]},)
    messages = value["messages"]
    if not isinstance(messages, list) or not messages:
        raise ValueError('"messages" must be a non-empty list')
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise ValueError(f'messages[{i}] must be an object with a "role"')
    return tuple(messages)


def _check_scorer(scorer: Any) -> None:
    if isinstance(scorer, str) and scorer:
        return
    if isinstance(scorer, dict) and isinstance(scorer.get("type"), str):
        return
    raise ValueError('"scorer" must be a name, "module:function", or an object with a "type"')


def _content_hash(cases: list[EvalCase]) -> str:
    digest = hashlib.sha256()
    for case in cases:
        payload = [case.id, list(case.messages), case.expected, case.scorer, dict(case.request)]
        digest.update(json.dumps(payload, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]
