"""A small JSON Schema validator: the subset eval sets need, without a dependency.

Supported: ``type`` (one or a list), ``enum``, ``const``, ``properties``, ``required``,
``additionalProperties`` (bool or schema), ``items``, ``minItems``/``maxItems``, ``minLength``/
``maxLength``, ``pattern``, ``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum``,
``anyOf``/``oneOf``/``allOf``/``not``, and ``$ref`` to ``#/$defs/…`` or ``#/definitions/…``.
Other keywords are ignored, as a validator ignores unknown ones. The ``jsonschema`` package is not
a dependency of the gateway (the eval sets' schemas are small and this subset covers them).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["schema_errors"]

_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def schema_errors(value: Any, schema: Mapping[str, Any], *, limit: int = 10) -> list[str]:
    """Every way ``value`` breaks ``schema`` (up to ``limit``), as ``path: message`` strings.

    Example:
        >>> schema_errors({"a": "x"}, {"type": "object", "properties": {"a": {"type": "integer"}}})
        ['$.a: expected integer, got string']
    """
    errors: list[str] = []
    _check(value, schema, "$", schema, errors)
    return errors[:limit]


def _type_name(value: Any) -> str:
    for name, kinds in _TYPES.items():
        if name in ("integer", "number"):
            continue
        if isinstance(value, kinds) and not (name != "boolean" and isinstance(value, bool)):
            return name
    if isinstance(value, bool):
        return "boolean"
    return "integer" if isinstance(value, int) else "number"


def _is_type(value: Any, kind: str) -> bool:
    if kind not in _TYPES:
        return True
    if isinstance(value, bool):
        return kind == "boolean"
    if kind == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[kind])


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if not isinstance(ref, str):
        return schema
    node: Any = root
    for part in ref.removeprefix("#/").split("/") if ref != "#" else []:
        node = node.get(part) if isinstance(node, Mapping) else None
    if not isinstance(node, Mapping):
        raise ValueError(f"cannot resolve $ref {ref!r}")
    return node


def _check(value: Any, schema: Any, path: str, root: Mapping[str, Any], errors: list[str]) -> None:
    if schema is True or schema == {}:
        return
    if schema is False:
        errors.append(f"{path}: no value is allowed here")
        return
    schema = _resolve(schema, root)
    kinds = schema.get("type")
    if kinds is not None:
        names = kinds if isinstance(kinds, list) else [kinds]
        if not any(_is_type(value, k) for k in names):
            errors.append(f"{path}: expected {' or '.join(names)}, got {_type_name(value)}")
            return
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']!r}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: expected {schema['const']!r}")
    _combinators(value, schema, path, root, errors)
    if isinstance(value, dict):
        _object(value, schema, path, root, errors)
    elif isinstance(value, list):
        _array(value, schema, path, root, errors)
    elif isinstance(value, str):
        _string(value, schema, path, errors)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        _number(value, schema, path, errors)


def _combinators(
    value: Any, schema: Mapping[str, Any], path: str, root: Mapping[str, Any], errors: list[str]
) -> None:
    for sub in schema.get("allOf", ()):
        _check(value, sub, path, root, errors)
    if "anyOf" in schema or "oneOf" in schema:
        key = "anyOf" if "anyOf" in schema else "oneOf"
        passing = sum(1 for sub in schema[key] if not _sub_errors(value, sub, root))
        if passing == 0:
            errors.append(f"{path}: matches none of {key}")
        elif key == "oneOf" and passing > 1:
            errors.append(f"{path}: matches {passing} schemas of oneOf, expected exactly one")
    if "not" in schema and not _sub_errors(value, schema["not"], root):
        errors.append(f"{path}: must not match the 'not' schema")


def _sub_errors(value: Any, schema: Any, root: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    _check(value, schema, "$", root, found)
    return found


def _object(
    value: dict[str, Any], schema: Mapping[str, Any], path: str, root: Mapping[str, Any], errors: list[str]
) -> None:
    properties = schema.get("properties", {})
    for name in schema.get("required", ()):
        if name not in value:
            errors.append(f"{path}: missing required property {name!r}")
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            _check(item, properties[name], f"{path}.{name}", root, errors)
        elif extra is False:
            errors.append(f"{path}: unexpected property {name!r}")
        elif isinstance(extra, Mapping):
            _check(item, extra, f"{path}.{name}", root, errors)


def _array(
    value: list[Any], schema: Mapping[str, Any], path: str, root: Mapping[str, Any], errors: list[str]
) -> None:
    if "minItems" in schema and len(value) < schema["minItems"]:
        errors.append(f"{path}: expected at least {schema['minItems']} items, got {len(value)}")
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(f"{path}: expected at most {schema['maxItems']} items, got {len(value)}")
    items = schema.get("items")
    if isinstance(items, Mapping | bool):
        for i, item in enumerate(value):
            _check(item, items, f"{path}[{i}]", root, errors)


def _string(value: str, schema: Mapping[str, Any], path: str, errors: list[str]) -> None:
    if "minLength" in schema and len(value) < schema["minLength"]:
        errors.append(f"{path}: shorter than {schema['minLength']} characters")
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        errors.append(f"{path}: longer than {schema['maxLength']} characters")
    if "pattern" in schema and re.search(schema["pattern"], value) is None:
        errors.append(f"{path}: does not match pattern {schema['pattern']!r}")


def _number(value: float, schema: Mapping[str, Any], path: str, errors: list[str]) -> None:
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: {value} is below the minimum {schema['minimum']}")
    if "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{path}: {value} is above the maximum {schema['maximum']}")
    if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
        errors.append(f"{path}: {value} must be above {schema['exclusiveMinimum']}")
    if "exclusiveMaximum" in schema and value >= schema["exclusiveMaximum"]:
        errors.append(f"{path}: {value} must be below {schema['exclusiveMaximum']}")
