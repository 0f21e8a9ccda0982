"""The examples in the state layer's docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "gateway.state",
    "gateway.state.base",
    "gateway.state.memory",
    "gateway.state.sqlite",
    "gateway.state.urls",
    "gateway.state.outage",
    "gateway.metering.spool",
    "gateway.metering.observed",
    "gateway.budgets",
    "gateway.ratelimit",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
