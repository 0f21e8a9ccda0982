"""JSON Schema -> the OpenAPI subset Gemini's ``Schema`` accepts, refusing what it cannot express.

Gemini's ``Schema`` (function ``parameters`` and ``responseSchema``) takes ``type`` (one name),
``nullable``, ``enum`` (strings only), ``properties``/``required``, ``items``, ``anyOf`` and a few
bounds. The conversion:
- ``$ref`` into ``$defs``/``definitions`` is inlined (a recursive schema is refused);
- ``type: [T, "null"]`` and ``anyOf``/``oneOf`` with a ``null`` branch become ``nullable``;
  ``oneOf`` is loosened to ``anyOf``; ``allOf`` of one schema is merged;
- ``const`` becomes a one-value ``enum``;
- annotations Gemini does not take (``$schema``, ``examples``, ``default``, ``additionalProperties``
  true or false, string formats other than ``date-time``/``enum``) are dropped: they do not change
  which values are valid for a model that is asked to produce them;
- constraints it cannot express (``not``, ``if``, ``patternProperties``, ``additionalProperties`` as
  a schema, tuples, non-string enums, ``multipleOf``, ``uniqueItems``, ...) raise
  ``UnsupportedParameterError`` naming the JSON path.
"""

from __future__ import annotations

from typing import Any

from gateway.core.errors import UnsupportedParameterError

__all__ = ["to_gemini_schema"]

# Keywords copied as they are, with the JSON type their value must have.
_COPIED: dict[str, type | tuple[type, ...]] = {
    "description": str,
    "title": str,
    "pattern": str,
    "minimum": (int, float),
    "maximum": (int, float),
    "minItems": int,
    "maxItems": int,
    "minLength": int,
    "maxLength": int,
    "minProperties": int,
    "maxProperties": int,
    "propertyOrdering": list,
}
_REFUSED = frozenset(
    {
        "not",
        "if",
        "then",
        "else",
        "patternProperties",
        "dependentRequired",
        "dependentSchemas",
        "unevaluatedProperties",
        "unevaluatedItems",
        "propertyNames",
        "multipleOf",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "uniqueItems",
        "contains",
        "minContains",
        "maxContains",
        "prefixItems",
        "additionalItems",
    }
)
_FORMATS = {"string": {"date-time", "enum"}, "integer": {"int32", "int64"}, "number": {"float", "double"}}
_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object"})


def to_gemini_schema(schema: Any, param: str) -> dict[str, Any]:
    """Convert ``schema`` for Gemini; ``param`` names the request field in errors."""
    converter = _Converter(schema if isinstance(schema, dict) else {}, param)
    return converter.convert(schema, "", ())


class _Converter:
    def __init__(self, root: dict[str, Any], param: str) -> None:
        self.defs: dict[str, Any] = {**root.get("definitions", {}), **root.get("$defs", {})}
        self.param = param

    def refuse(self, path: str, why: str) -> UnsupportedParameterError:
        where = f"{self.param}{path}"
        return UnsupportedParameterError(
            f"Gemini cannot express the JSON Schema at {where or 'the root'}: {why}",
            param=self.param,
            provider="gemini",
        )

    def convert(self, schema: Any, path: str, seen: tuple[str, ...]) -> dict[str, Any]:
        if schema is True or schema == {}:
            return {}
        if not isinstance(schema, dict):
            raise self.refuse(path, f"expected a schema object, got {type(schema).__name__}")
        if "$ref" in schema:
            return self.reference(schema, path, seen)
        for key in schema:
            if key in _REFUSED:
                raise self.refuse(path, f"the keyword {key!r} has no Gemini equivalent")
        for key in ("anyOf", "oneOf"):
            if key in schema:
                return self.union(schema, key, path, seen)
        if "allOf" in schema:
            return self.intersection(schema, path, seen)
        return self.plain(schema, path, seen)

    def reference(self, schema: dict[str, Any], path: str, seen: tuple[str, ...]) -> dict[str, Any]:
        ref = str(schema["$ref"])
        name = ref.rsplit("/", 1)[-1]
        if not ref.startswith(("#/$defs/", "#/definitions/")) or name not in self.defs:
            raise self.refuse(path, f"cannot resolve $ref {ref!r} (only #/$defs/... is supported)")
        if name in seen:
            raise self.refuse(path, f"the schema is recursive through {ref!r}")
        target = self.convert(self.defs[name], path, (*seen, name))
        extra = {k: v for k, v in schema.items() if k in ("description", "title") and isinstance(v, str)}
        return {**target, **extra}

    def union(self, schema: dict[str, Any], key: str, path: str, seen: tuple[str, ...]) -> dict[str, Any]:
        branches = schema[key]
        if not isinstance(branches, list) or not branches:
            raise self.refuse(f"{path}.{key}", "expected a non-empty list")
        nullable = any(isinstance(b, dict) and b.get("type") == "null" for b in branches)
        rest = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
        converted = [self.convert(b, f"{path}.{key}[{i}]", seen) for i, b in enumerate(rest)]
        out: dict[str, Any] = {}
        if len(converted) == 1:
            out.update(converted[0])
        elif converted:
            out["anyOf"] = converted
        out.update({k: v for k, v in schema.items() if k in ("description", "title") and isinstance(v, str)})
        if nullable:
            out["nullable"] = True
        return out

    def intersection(self, schema: dict[str, Any], path: str, seen: tuple[str, ...]) -> dict[str, Any]:
        parts = schema["allOf"]
        if not isinstance(parts, list) or len(parts) != 1:
            raise self.refuse(f"{path}.allOf", "only an allOf of exactly one schema can be expressed")
        merged = {**{k: v for k, v in schema.items() if k != "allOf"}, **parts[0]}
        return self.convert(merged, path, seen)

    def plain(self, schema: dict[str, Any], path: str, seen: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        kind, nullable = self.type_of(schema, path)
        if kind is not None:
            out["type"] = kind.upper()
        if nullable or schema.get("nullable") is True:
            out["nullable"] = True
        for key, expected in _COPIED.items():
            if key not in schema:
                continue
            value = schema[key]
            if not isinstance(value, expected) or isinstance(value, bool):
                raise self.refuse(f"{path}.{key}", f"expected a {_type_name(expected)}, got {value!r}")
            out[key] = value
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS.get(kind or "", set()):
            out["format"] = fmt
        self.enum(schema, path, out)
        if "properties" in schema:
            out["properties"] = self.properties(schema["properties"], path, seen)
            wanted = schema.get("required", [])
            required = (
                [r for r in wanted if isinstance(r, str) and r in out["properties"]]
                if isinstance(wanted, list)
                else []
            )
            if required:
                out["required"] = required
        if "items" in schema:
            if isinstance(schema["items"], list):
                raise self.refuse(f"{path}.items", "tuple schemas (a list of items) have no equivalent")
            out["items"] = self.convert(schema["items"], f"{path}.items", seen)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            raise self.refuse(f"{path}.additionalProperties", "a schema for extra properties")
        return out

    def type_of(self, schema: dict[str, Any], path: str) -> tuple[str | None, bool]:
        kind = schema.get("type")
        if kind is None:
            if "properties" in schema:
                return "object", False
            if "enum" in schema or "const" in schema:
                return "string", False
            return None, False
        names = kind if isinstance(kind, list) else [kind]
        if not all(isinstance(name, str) for name in names):
            raise self.refuse(f"{path}.type", f"expected a type name, got {kind!r}")
        nullable = "null" in names
        rest = [n for n in names if n != "null"]
        if len(rest) != 1 or rest[0] not in _TYPES:
            raise self.refuse(f"{path}.type", f"Gemini takes exactly one type (and null), got {kind!r}")
        return str(rest[0]), nullable

    def enum(self, schema: dict[str, Any], path: str, out: dict[str, Any]) -> None:
        if "const" in schema:
            values = [schema["const"]]
        elif "enum" in schema:
            values = schema["enum"]
        else:
            return
        if not isinstance(values, list) or not all(isinstance(v, str) or v is None for v in values):
            raise self.refuse(f"{path}.enum", "Gemini enums hold strings only")
        if None in values:
            out["nullable"] = True
        out["type"] = "STRING"
        out["format"] = "enum"
        out["enum"] = [v for v in values if v is not None]

    def properties(self, props: Any, path: str, seen: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(props, dict):
            raise self.refuse(f"{path}.properties", "expected an object")
        return {name: self.convert(sub, f"{path}.properties.{name}", seen) for name, sub in props.items()}


def _type_name(kind: type | tuple[type, ...]) -> str:
    return "number" if isinstance(kind, tuple) else {str: "string", int: "integer", list: "list"}[kind]
