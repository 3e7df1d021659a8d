"""The examples in the docstrings of the renderers run and hold (pytest collects no doctests outside
the package and tests/, so they are run here)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["format", "experiments", "exploration", "mechanism", "figures", "text", "tuning"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(f"scripts.render.{name}")
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    failed, attempted = doctest.testmod(module, optionflags=flags, verbose=False, report=True)
    assert attempted > 0 and failed == 0, f"{failed} of {attempted} examples of {module.__name__} failed"
