"""Load a policy file: read it safely, expand ``${ENV}``, validate, resolve references.

Every problem found on the way is collected; the caller gets one ``PolicyError`` whose ``errors``
lists each of them with its file, line, column and field path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path as FilePath
from typing import Any

from pydantic import ValidationError

from gateway._redact import register_secret
from gateway.core.errors import PolicyError
from gateway.policy._source import MAX_POLICY_BYTES, Location, Path, SourceMap, read_document
from gateway.policy.located import combine, did_you_mean, from_validation_error, located
from gateway.policy.references import build_index, raw_candidate_problems
from gateway.policy.schema import Policy

__all__ = ["expand_env", "load_policy", "parse_policy", "policy_format", "source_map"]

_ENV = re.compile(r"\$\$|\$\{([^}]*)\}")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def policy_format(filename: str) -> str:
    """``yaml``, ``toml`` or ``json``, from the file's suffix (YAML when it has none we know)."""
    suffix = FilePath(filename).suffix.lower()
    return {".toml": "toml", ".json": "json"}.get(suffix, "yaml")


def load_policy(source: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Policy:
    """Load and validate the policy file at ``source``.

    Args:
        source: path to a ``.yaml``/``.yml``, ``.toml`` or ``.json`` file.
        env: where ``${VAR}`` references are looked up; ``os.environ`` when ``None``.

    Returns:
        The validated policy, with every model and route resolved.

    Raises:
        PolicyError: listing every problem in ``.errors``, each with file, line, column and field path.

    Example:
        >>> policy = load_policy("policies/local-only.yaml")
        >>> list(policy.routes)
        ['default']
    """
    path = FilePath(source)
    name = str(source)
    try:
        size = path.stat().st_size
        if size > MAX_POLICY_BYTES:
            raise _too_large(name, size)
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(
            f"cannot read the policy file: {exc.strerror or exc}", code="policy.unreadable", file=name
        ) from None
    return parse_policy(raw, filename=name, env=env)


def _too_large(filename: str, size: int) -> PolicyError:
    return PolicyError(
        f"the policy is {size} bytes; the limit is {MAX_POLICY_BYTES} bytes. Split it or remove generated content",
        code="policy.too-large",
        file=filename,
    )


def _decode(raw: bytes, filename: str) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise PolicyError(
            f"the policy is not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
            code="policy.encoding",
            file=filename,
            line=line,
            column=column,
        ) from None


def parse_policy(
    text: str | bytes,
    *,
    filename: str = "<policy>",
    env: Mapping[str, str] | None = None,
    fmt: str | None = None,
) -> Policy:
    """Validate policy ``text``; ``filename`` names it in errors and picks the format by suffix.

    Args:
        text: the document (YAML, TOML or JSON); bytes are decoded as UTF-8, a BOM is dropped.
        filename: used in error locations, and to pick the format unless ``fmt`` is given.
        env: where ``${VAR}`` references are looked up; ``os.environ`` when ``None``.
        fmt: ``yaml``, ``toml`` or ``json``.

    Returns:
        The validated policy.

    Raises:
        PolicyError: listing every problem in ``.errors``.
    """
    if len(text) > MAX_POLICY_BYTES:
        raise _too_large(filename, len(text))
    if isinstance(text, bytes):
        text = _decode(text, filename)
    text = text.removeprefix("\ufeff")
    if (
        len(text) * 4 > MAX_POLICY_BYTES
    ):  # UTF-8 takes at most 4 bytes a character: count only when it matters
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_POLICY_BYTES:
            raise _too_large(filename, size)
    smap = SourceMap(filename)
    problems: list[PolicyError] = []
    data = read_document(text, fmt or policy_format(filename), smap, problems)
    if not isinstance(data, dict):
        what = "nothing" if data is None else type(data).__name__
        problems.append(
            PolicyError(
                f"a policy is a mapping with 'version: 1' at the top; found {what}",
                code="policy.not-a-mapping",
                file=filename,
                line=1,
                column=1,
            )
        )
        raise combine(filename, problems)
    if problems:  # unsafe tags, duplicate keys: the document is not what its author meant; stop here
        raise combine(filename, problems)
    data = expand_env(data, (), os.environ if env is None else env, smap, problems)
    policy = _validate(data, smap, problems)
    if problems or policy is None:
        raise combine(filename, _without_env_values(problems, data, smap))
    return policy


def _without_env_values(problems: list[PolicyError], data: Any, smap: SourceMap) -> list[PolicyError]:
    """The problems with every value that came from ``${VAR}`` cut out of their messages.

    Any field may take ``${VAR}``, and a check that quotes the value it judges (an unknown model, a
    bad URL) would otherwise echo what may be a secret written into the wrong field.
    """
    values = sorted(
        {v for v in (_at(data, path) for path in smap.from_env) if isinstance(v, str) and len(v) >= 4},
        key=len,
        reverse=True,
    )
    if not values:
        return problems
    out = []
    for problem in problems:
        message = problem.message
        for value in values:
            message = message.replace(value, "<value from the environment>")
        if message == problem.message:
            out.append(problem)
            continue
        message = message.removeprefix(_prefix(problem))
        out.append(
            PolicyError(
                message,
                code=problem.code,
                file=problem.file,
                line=problem.line,
                column=problem.column,
                field_path=problem.field_path,
            )
        )
    return out


def _prefix(problem: PolicyError) -> str:
    """What ``PolicyError`` put before its message (the location), so it is not written twice."""
    where = problem.file or "<policy>"
    if problem.line is not None:
        where += f":{problem.line}" + (f":{problem.column}" if problem.column is not None else "")
    return where + (f" at {problem.field_path}" if problem.field_path else "") + ": "


def _at(data: Any, path: Path) -> Any:
    for part in path:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _validate(data: dict[str, Any], smap: SourceMap, problems: list[PolicyError]) -> Policy | None:
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems.extend(from_validation_error(exc, Policy, data, smap))
        for problem in raw_candidate_problems(data):
            problems.append(located(smap, problem.message, problem.code, problem.path, key=problem.key))
        return None
    index, references = build_index(policy)
    for problem in references:
        problems.append(located(smap, problem.message, problem.code, problem.path, key=problem.key))
    policy._source = smap
    policy._index = index
    _register_secrets(policy)
    return policy


def _register_secrets(policy: Policy) -> None:
    # The secret fields: redact() then removes their values wherever they would be echoed.
    for config in policy.providers.values():
        register_secret(config.api_key.get_secret_value() if config.api_key else None)
        for value in config.headers.values():
            register_secret(value.get_secret_value())
    register_secret(policy.state.url.get_secret_value() if policy.state.url else None)


def expand_env(
    value: Any, path: Path, env: Mapping[str, str], smap: SourceMap, problems: list[PolicyError]
) -> Any:
    """Replace ``${VAR}`` in every string with ``env[VAR]`` (``$$`` is a literal ``$``).

    A missing or malformed variable is reported at the string's location; the value is never echoed.
    """
    if isinstance(value, dict):
        return {key: expand_env(item, (*path, key), env, smap, problems) for key, item in value.items()}
    if isinstance(value, list):
        return [expand_env(item, (*path, i), env, smap, problems) for i, item in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        if not _ENV_NAME.match(name):
            problems.append(
                located(smap, f"'${{{name}}}' is not a valid variable name", "policy.env-syntax", path)
            )
            return ""
        if name not in env:
            hint = did_you_mean(name, [k for k in env if k.isupper()])
            message = f"environment variable {name!r} is not set{hint}; set it or remove the reference"
            problems.append(located(smap, message, "policy.missing-env", path))
            return ""
        smap.from_env.add(path)
        return env[name]

    return _ENV.sub(substitute, value)


def source_map(policy: Policy) -> SourceMap:
    """Where each value of ``policy`` was written (empty for a policy not built by the loader)."""
    found = policy._source
    return found if isinstance(found, SourceMap) else SourceMap("<policy>")


def location_of(policy: Policy, path: Path) -> Location | None:
    """The line and column of ``path`` in the file ``policy`` was loaded from."""
    return source_map(policy).locate(path)
