"""Read policy text (YAML, TOML or JSON) into plain data plus a map of where every value came from.

The YAML path is ``yaml.safe_load`` narrowed further: a ``SafeLoader`` subclass composes nodes (so
every value keeps its line and column), refuses any tag outside the core set (``!!python/object``,
``!!binary``, custom ``!tags``), caps nesting depth and alias expansion (billion-laughs files stop
after ``MAX_NODES`` visits), and rejects duplicate keys. Only ``true``/``false`` are booleans (YAML
1.2), so ``on:`` in a fallback section stays the string ``"on"`` and ``NO`` stays a country code.

Lines and columns are 1-based. TOML locations come from a line scanner, since ``tomllib`` keeps
none; JSON locations come from composing the same text as YAML when that works.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gateway.core.errors import PolicyError

__all__ = ["MAX_DEPTH", "MAX_NODES", "MAX_POLICY_BYTES", "Location", "Path", "SourceMap", "read_document"]

MAX_POLICY_BYTES = 1024 * 1024  # a policy is hand-written; anything larger is a mistake or an attack
MAX_DEPTH = 64
MAX_NODES = 100_000

Path: TypeAlias = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Location:
    line: int
    column: int


@dataclass(slots=True)
class SourceMap:
    """Where each value (and each mapping key) of a document was written."""

    file: str
    values: dict[Path, Location] = field(default_factory=dict)
    keys: dict[Path, Location] = field(default_factory=dict)
    from_env: set[Path] = field(default_factory=set)

    def locate(self, path: Path, *, key: bool = False) -> Location | None:
        """The location of ``path`` (its key when ``key``), else of its nearest located ancestor."""
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            found = self.values.get(path[:end])
            if found is not None:
                return found
        return None


def _error(smap: SourceMap, message: str, code: str, loc: Location | None, path: Path = ()) -> PolicyError:
    from gateway.policy.located import format_path

    line, column = (loc.line, loc.column) if loc else (None, None)
    return PolicyError(
        message, code=code, file=smap.file, line=line, column=column, field_path=format_path(path) or None
    )


def read_document(text: str, fmt: str, smap: SourceMap, problems: list[PolicyError]) -> Any:
    """Parse ``text`` as ``fmt`` (``yaml``, ``toml``, ``json``), filling ``smap`` and ``problems``.

    Raises:
        PolicyError: when the text cannot be parsed at all (located where the parser stopped).
    """
    if fmt == "toml":
        return _read_toml(text, smap)
    if fmt == "json":
        return _read_json(text, smap, problems)
    return _read_yaml(text, smap, problems)


# --- YAML ----------------------------------------------------------------------------------------

_CORE = "tag:yaml.org,2002:"
_BOOL_TAG = _CORE + "bool"
_DROPPED = {_BOOL_TAG, _CORE + "timestamp"}


def _resolvers() -> dict[Any, list[tuple[str, re.Pattern[str]]]]:
    table: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}
    for first, entries in yaml.SafeLoader.yaml_implicit_resolvers.items():
        kept = [(tag, regexp) for tag, regexp in entries if tag not in _DROPPED]
        if kept:
            table[first] = kept
    yaml_bool = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
    for first in "tTfF":
        table.setdefault(first, []).append((_BOOL_TAG, yaml_bool))
    return table


class _TooDeep(Exception):
    def __init__(self, mark: Any) -> None:
        super().__init__("too deep")
        self.mark = mark


class _PolicyLoader(yaml.SafeLoader):
    yaml_implicit_resolvers = _resolvers()

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _mark(node: Node) -> Location:
    return Location(node.start_mark.line + 1, node.start_mark.column + 1)


def _read_yaml(text: str, smap: SourceMap, problems: list[PolicyError]) -> Any:
    try:
        loader = _PolicyLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        message = f"invalid YAML: character {exc.character!r} is not allowed"
        raise _error(smap, message, "policy.syntax", Location(line, column)) from None
    try:
        root = loader.get_single_node()
    except _TooDeep as exc:
        loc = Location(exc.mark.line + 1, exc.mark.column + 1)
        raise _error(smap, f"nesting deeper than {MAX_DEPTH} levels", "policy.too-deep", loc) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(mark.line + 1, mark.column + 1) if mark else None
        problem = " ".join(filter(None, [exc.context, exc.problem]))
        raise _error(smap, f"invalid YAML: {problem}", "policy.syntax", where) from None
    except yaml.YAMLError as exc:
        raise _error(smap, f"invalid YAML: {exc}", "policy.syntax", None) from None
    finally:
        loader.dispose()
    if root is None:
        return None
    return _Converter(loader, smap, problems).convert(root, ())


class _Converter:
    """Nodes to plain values, recording locations; aliases are followed, up to ``MAX_NODES`` visits."""

    def __init__(self, loader: _PolicyLoader, smap: SourceMap, problems: list[PolicyError]) -> None:
        self.loader, self.smap, self.problems, self.visits = loader, smap, problems, 0
        self.open: set[int] = set()  # nodes being converted: an alias to one of them is a cycle

    def convert(self, node: Node, path: Path) -> Any:
        self.visits += 1
        if self.visits > MAX_NODES:
            message = f"more than {MAX_NODES} values after expanding aliases (an alias bomb?)"
            raise _error(self.smap, message, "policy.alias-limit", _mark(node), path)
        if id(node) in self.open:
            raise _error(
                self.smap,
                "an alias refers to a node that contains it",
                "policy.alias-cycle",
                _mark(node),
                path,
            )
        if len(self.open) >= MAX_DEPTH:
            message = f"nesting deeper than {MAX_DEPTH} levels after expanding aliases"
            raise _error(self.smap, message, "policy.too-deep", _mark(node), path)
        self.open.add(id(node))
        try:
            return self._convert(node, path)
        finally:
            self.open.discard(id(node))

    def _convert(self, node: Node, path: Path) -> Any:
        self.smap.values.setdefault(path, _mark(node))
        if isinstance(node, MappingNode):
            return self._mapping(node, path)
        if isinstance(node, SequenceNode):
            self._check_tag(node, _CORE + "seq", path)
            return [self.convert(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _check_tag(self, node: Node, expected: str, path: Path) -> bool:
        if node.tag == expected:
            return True
        tag = node.tag.replace(_CORE, "!!")
        self.problems.append(
            _error(
                self.smap,
                f"tag {tag!r} is not allowed; a policy holds only strings, numbers, booleans, null, lists and mappings",
                "policy.unsafe-tag",
                _mark(node),
                path,
            )
        )
        return False

    def _scalar(self, node: Node, path: Path) -> Any:
        tag = node.tag
        if tag == _CORE + "str":
            return node.value
        if tag == _CORE + "null":
            return None
        if tag == _BOOL_TAG:
            return str(node.value).lower() == "true"
        if tag in (_CORE + "int", _CORE + "float") and isinstance(node, ScalarNode):
            try:
                if tag == _CORE + "int":
                    return self.loader.construct_yaml_int(node)
                return self.loader.construct_yaml_float(node)
            except (ValueError, IndexError):  # only reachable through an explicit !!int / !!float tag
                kind = tag.removeprefix(_CORE)
                message = f"{node.value!r} is not a valid {kind}"
                self.problems.append(_error(self.smap, message, "policy.syntax", _mark(node), path))
                return None
        self._check_tag(node, _CORE + "str", path)
        return None

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        self._check_tag(node, _CORE + "map", path)
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _CORE + "merge":
                merged.update(self._merge(value_node, path))
                continue
            if not isinstance(key_node, ScalarNode):
                self.problems.append(
                    _error(
                        self.smap,
                        "mapping keys must be plain strings",
                        "policy.syntax",
                        _mark(key_node),
                        path,
                    )
                )
                continue
            key = str(key_node.value)
            child = (*path, key)
            if key in result:
                first = self.smap.keys[child]
                message = f"duplicate key {key!r} (first defined at line {first.line}, column {first.column})"
                self.problems.append(
                    _error(self.smap, message, "policy.duplicate-key", _mark(key_node), child)
                )
                continue
            self.smap.keys[child] = _mark(key_node)
            result[key] = self.convert(value_node, child)
        return {**{k: v for k, v in merged.items() if k not in result}, **result}

    def _merge(self, node: Node, path: Path) -> dict[str, Any]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        merged: dict[str, Any] = {}
        for source in sources:
            value = self.convert(source, path)
            if not isinstance(value, dict):
                self.problems.append(
                    _error(self.smap, "'<<' merges only mappings", "policy.syntax", _mark(source), path)
                )
                continue
            merged.update({k: v for k, v in value.items() if k not in merged})
        return merged


# --- JSON ----------------------------------------------------------------------------------------


class _JSONProblem(ValueError):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _JSONProblem(f"duplicate key {key!r}", "policy.duplicate-key")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise _JSONProblem(f"{name} is not a JSON number", "policy.syntax")


def _read_json(text: str, smap: SourceMap, problems: list[PolicyError]) -> Any:
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise _error(
            smap, f"invalid JSON: {exc.msg}", "policy.syntax", Location(exc.lineno, exc.colno)
        ) from None
    except RecursionError:
        raise _error(smap, f"nesting deeper than {MAX_DEPTH} levels", "policy.too-deep", None) from None
    except _JSONProblem as exc:
        raise _error(smap, f"invalid JSON: {exc}", exc.code, _json_problem_location(text, exc)) from None
    _locate_with_yaml(text, smap)
    return data


def _json_problem_location(text: str, problem: _JSONProblem) -> Location | None:
    if problem.code == "policy.duplicate-key":
        scratch: list[PolicyError] = []
        try:
            _read_yaml(text, SourceMap("<json>"), scratch)
        except PolicyError:
            return None
        found = next((p for p in scratch if p.code == "policy.duplicate-key" and p.line is not None), None)
        return (
            Location(found.line, found.column or 1) if found is not None and found.line is not None else None
        )
    token = re.search(r"(?<![\w\"])(NaN|-?Infinity)(?![\w\"])", text)
    if token is None:
        return None
    line = text.count("\n", 0, token.start()) + 1
    return Location(line, token.start() - (text.rfind("\n", 0, token.start()) + 1) + 1)


def _locate_with_yaml(text: str, smap: SourceMap) -> None:
    # JSON is (nearly) YAML flow syntax: compose it to learn positions; data still comes from json.
    scratch: list[PolicyError] = []
    try:
        _read_yaml(text, smap, scratch)
    except PolicyError:
        smap.values.clear()
        smap.keys.clear()


# --- TOML ----------------------------------------------------------------------------------------

_TOML_AT = re.compile(r"\(at line (\d+), column (\d+)\)")
_TOML_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_TOML_ITEM = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^,\s\]]+")
_TOML_KEY = re.compile(r"^(\s*)([A-Za-z0-9_\-.\"' ]+?)\s*=\s*")


def _toml_key_parts(text: str) -> list[str]:
    return [part.strip().strip("\"'") for part in text.split(".")]


def _read_toml(text: str, smap: SourceMap) -> Any:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_AT.search(str(exc))
        loc = Location(int(found.group(1)), int(found.group(2))) if found else None
        message = _TOML_AT.sub("", str(exc)).strip()
        raise _error(smap, f"invalid TOML: {message}", "policy.syntax", loc) from None
    except RecursionError:
        raise _error(smap, f"nesting deeper than {MAX_DEPTH} levels", "policy.too-deep", None) from None
    table: Path = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TOML_HEADER.match(line)
        if header:
            table = tuple(_toml_key_parts(header.group(1)))
            smap.values.setdefault(table, Location(number, line.index("[") + 1))
            continue
        key = _TOML_KEY.match(line)
        if key:
            path = (*table, *_toml_key_parts(key.group(2)))
            smap.keys.setdefault(path, Location(number, len(key.group(1)) + 1))
            smap.values.setdefault(path, Location(number, key.end() + 1))
            if line[key.end() :].startswith("["):
                _toml_array_items(line, key.end(), number, path, smap)
    return data


def _toml_array_items(line: str, start: int, number: int, path: Path, smap: SourceMap) -> None:
    """Locate the items of a one-line array of scalars (``candidates = ["a", "b"]``)."""
    end = line.find("]", start)
    if end < 0 or "[" in line[start + 1 : end] or "{" in line[start:end]:
        return
    for i, item in enumerate(_TOML_ITEM.finditer(line, start + 1, end)):
        smap.values.setdefault((*path, i), Location(number, item.start() + 1))
