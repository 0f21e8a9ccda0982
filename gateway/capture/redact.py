"""Redaction of captured text: built-in detectors, the route's regular expressions, a callable.

The built-in detectors: e-mail addresses, API keys and bearer tokens (``sk-…``, ``sk-ant-…``,
``AKIA…``, ``ghp_…``, ``xox?-…``, ``AIza…``, ``Bearer …``, ``api_key=…``), and card numbers (13 to
19 digits, spaces or dashes between, that pass the Luhn check). Each match becomes
``[REDACTED:<kind>]``. The process's own provider keys (``*_API_KEY`` in the environment) are
always removed, whatever the route says.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gateway._redact import KEY_SHAPES
from gateway.capture.config import Redaction

__all__ = ["Redactor", "luhn_ok"]

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}")
_API_KEY = re.compile(
    rf"(?:{KEY_SHAPES}|(?i:bearer)\s+[A-Za-z0-9._~+/-]{{16,}}=*"
    r"|(?i:(?:api[_-]?key|secret|token|password)\s*[=:]\s*)[^\s\"']{8,})"
)
_CARD = re.compile(r"\b\d(?:[ -]?\d){12,18}\b")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a card number's digits."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char) * (2 if index % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _cards(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        return "[REDACTED:card_number]" if luhn_ok(digits) else match.group()

    return _CARD.sub(replace, text)


@dataclass(frozen=True, slots=True)
class Redactor:
    """``redactor(text) -> text`` with every secret and detected item replaced."""

    steps: tuple[Callable[[str], str], ...]

    @classmethod
    def from_config(cls, config: Redaction, environ: dict[str, str] | None = None) -> Redactor:
        env = os.environ if environ is None else environ
        keys = sorted(
            (v for k, v in env.items() if k.endswith("_API_KEY") and len(v) >= 8), key=len, reverse=True
        )
        steps: list[Callable[[str], str]] = [_literal(keys)] if keys else []
        builtins = {
            "email": lambda t: _EMAIL.sub("[REDACTED:email]", t),
            "api_key": lambda t: _API_KEY.sub("[REDACTED:api_key]", t),
            "card_number": _cards,
        }
        steps += [builtins[name] for name in ("api_key", "email", "card_number") if name in config.detectors]
        for pattern in config.patterns:
            compiled = re.compile(pattern)
            steps.append(lambda t, c=compiled: c.sub("[REDACTED:pattern]", t))  # type: ignore[misc]
        if config.function is not None:
            steps.append(_load_function(config.function))
        return cls(tuple(steps))

    def __call__(self, text: str) -> str:
        for step in self.steps:
            text = step(text)
        return text


def _literal(values: Sequence[str]) -> Callable[[str], str]:
    pattern = re.compile("|".join(re.escape(v) for v in values))
    return lambda text: pattern.sub("[REDACTED:secret]", text)


def _load_function(spec: str) -> Callable[[str], str]:
    module, _, name = spec.partition(":")
    try:
        target: object = importlib.import_module(module)
        for part in name.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"capture.redact.function {spec!r} cannot be imported: {exc}") from exc
    if not callable(target):
        raise ValueError(f"capture.redact.function {spec!r} is not callable")
    return target  # type: ignore[return-value]
