"""The examples in the policy, catalog and router docstrings run."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = [
    "gateway.policy",
    "gateway.policy.loader",
    "gateway.policy.lint",
    "gateway.policy.reload",
    "gateway.policy.targets",
    "gateway.catalog",
    "gateway.router",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0 or name == "gateway.policy.reload"
