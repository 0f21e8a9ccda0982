"""Helpers for policy tests: a fixed environment and a way to get every error of a text."""

from __future__ import annotations

import pytest

from gateway.core.errors import PolicyError
from gateway.policy import parse_policy

ENV = {
    "OPENAI_API_KEY": "sk-test-openai-0000",
    "ANTHROPIC_API_KEY": "sk-ant-test-0000",
    "GEMINI_API_KEY": "gm-test-0000",
    "GROQ_API_KEY": "gq-test-0000",
    "REDIS_URL": "redis://:hunter2@localhost:6379/0",
}


def errors_of(text: str, *, filename: str = "p.yaml", env: dict[str, str] | None = None) -> list[PolicyError]:
    """Every error parsing ``text`` reports (fails the test if it parses)."""
    with pytest.raises(PolicyError) as info:
        parse_policy(text, filename=filename, env=ENV if env is None else env)
    return info.value.errors


def where(errors: list[PolicyError]) -> list[tuple[int | None, int | None, str | None, str]]:
    """(line, column, field_path, code) of each error: the shape most tests compare whole."""
    return [(e.line, e.column, e.field_path, e.code) for e in errors]


@pytest.fixture
def preset_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return ENV
