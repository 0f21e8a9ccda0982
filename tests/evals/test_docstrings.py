"""The examples in the evals docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "gateway.evals._jsonschema",
    "gateway.evals.calls",
    "gateway.evals.progress",
    "gateway.evals.report",
    "gateway.evals.results",
    "gateway.evals.scorers",
    "gateway.evals.sets",
    "gateway.evals.store",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert (result.failed, result.attempted > 0) == (0, True)
