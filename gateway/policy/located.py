"""Turn problems into ``PolicyError``s that say where (file:line:column, field path) and how to fix.

pydantic reports a ``loc`` tuple; the source map turns it into a line and column. Unknown keys and
unknown names get a did-you-mean from ``difflib``. Values are never echoed when they came from an
environment variable, so a secret cannot leak through an error message.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway.core.errors import PolicyError
from gateway.policy._source import Path, SourceMap

__all__ = ["MAX_ERRORS", "combine", "did_you_mean", "format_path", "from_validation_error", "located"]

MAX_ERRORS = 50  # reported in full; past this, a broken or hostile file gets a count, not a list

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def format_path(path: Sequence[str | int]) -> str:
    """``("routes", "support", "candidates", 2)`` -> ``routes.support.candidates[2]``.

    Keys that are not plain identifiers are bracketed: ``models["openai/gpt-4.1"].price``.
    """
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]".replace("'", '"')
    return out


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest choice, or ``""`` when nothing is close."""
    pool = list(choices)
    close = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if not close:
        lowered = {choice.lower(): choice for choice in pool}
        close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.6)
        close = [lowered[c] for c in close]
    return f"; did you mean {close[0]!r}?" if close else ""


def located(smap: SourceMap, message: str, code: str, path: Path, *, key: bool = False) -> PolicyError:
    """A ``PolicyError`` at ``path`` (at its key when ``key``), located through ``smap``."""
    loc = smap.locate(path, key=key)
    return PolicyError(
        message,
        code=code,
        file=smap.file,
        line=loc.line if loc else None,
        column=loc.column if loc else None,
        field_path=format_path(path) or None,
    )


def combine(file: str, errors: list[PolicyError]) -> PolicyError:
    """One ``PolicyError`` carrying all of ``errors`` (sorted by position); itself when there is one."""
    ordered = sorted(errors, key=lambda e: (e.line is None, e.line or 0, e.column or 0))
    if len(ordered) > MAX_ERRORS:
        more = len(ordered) - MAX_ERRORS
        ordered = ordered[:MAX_ERRORS]
        ordered.append(PolicyError(f"... and {more} more problems", code="policy.too-many-errors", file=file))
    if len(ordered) == 1:
        return ordered[0]
    first = ordered[0]
    lines = "\n".join(f"  {error.message}" for error in ordered)
    combined = PolicyError(
        f"{len(ordered)} problems in the policy:\n{lines}\n", code="policy.invalid", file=file, errors=ordered
    )
    # The summary points at the first problem, as a single error would.
    combined.line, combined.column, combined.field_path = first.line, first.column, first.field_path
    return combined


def _normalize(loc: Sequence[str | int], data: Any) -> Path:
    # pydantic puts union members and validator names in ``loc``; keep only real document keys.
    path: list[str | int] = []
    for i, part in enumerate(loc):
        if i == len(loc) - 1:
            if isinstance(data, dict | list):  # a scalar's last ``loc`` part is a union member's name
                path.append(part)
        elif isinstance(data, dict) and part in data:
            path.append(part)
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            path.append(part)
            data = data[part]
    return tuple(path)


def _unwrap(tp: Any) -> Any:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        for arg in typing.get_args(tp):
            if arg is not type(None):
                return _unwrap(arg)
    return tp


def _fields_at(root: type[BaseModel], path: Path) -> list[str]:
    """The field names the schema allows at ``path`` (a mapping), for did-you-mean."""
    tp: Any = root
    for part in path:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return []
            tp = field.annotation
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        elif origin is list:
            tp = typing.get_args(tp)[0]
        else:
            return []
    tp = _unwrap(tp)
    return list(tp.model_fields) if isinstance(tp, type) and issubclass(tp, BaseModel) else []


def _value_at(data: Any, path: Path) -> Any:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _one(error: Any, root: type[BaseModel], data: Any, smap: SourceMap) -> PolicyError:
    path = _normalize(error["loc"], data)
    kind, message = error["type"], str(error["msg"])
    if kind == "extra_forbidden":
        name = str(path[-1])
        hint = did_you_mean(name, _fields_at(root, path[:-1]))
        return located(smap, f"unknown field {name!r}{hint}", "policy.unknown-field", path, key=True)
    if kind == "missing":
        return located(
            smap, f"missing required field {path[-1]!r}", "policy.missing-field", path[:-1], key=True
        )
    message = message.removeprefix("Value error, ")
    value = _value_at(data, path)
    if kind == "literal_error" and isinstance(value, str) and path not in smap.from_env:
        allowed = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        message = f"{message}, got {value!r}{did_you_mean(value, allowed)}"
    code = "policy.invalid-value" if kind == "value_error" else f"policy.{kind.replace('_', '-')}"
    return located(smap, message, code, path)


def from_validation_error(
    exc: ValidationError, root: type[BaseModel], data: Any, smap: SourceMap
) -> list[PolicyError]:
    """Every error of ``exc`` as a located ``PolicyError``."""
    errors = exc.errors(include_url=False, include_input=False)
    found = [_one(error, root, data, smap) for error in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        message = f"... and {len(errors) - MAX_ERRORS} more schema problems"
        found.append(PolicyError(message, code="policy.too-many-errors", file=smap.file))
    return found
