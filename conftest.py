"""pytest's settings for the whole repository, kept out of the installed package.

* Every docstring example of the package may use ``torch`` (the doctest namespace), and starts
  from ``torch.manual_seed(0)``.
* An integration module whose framework is not installed is skipped, with the import error
  that names the extra to install, instead of failing collection. Where
  ``DASH_REQUIRE_INTEGRATIONS=1`` (CI, which installs every extra), it is collected as usual,
  so a missing package fails.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Generator, Iterable
from pathlib import Path

import pytest
import torch

_INTEGRATIONS = Path(__file__).resolve().parent / "torch_dash_optim" / "integrations"


@pytest.fixture(autouse=True)
def _doctest_namespace(doctest_namespace: dict) -> None:
    doctest_namespace["torch"] = torch
    torch.manual_seed(0)


def _missing_extra(file_path: Path) -> str | None:
    """The import error of an integration module whose extra is missing, else None."""
    if os.environ.get("DASH_REQUIRE_INTEGRATIONS") == "1" or file_path.suffix != ".py":
        return None
    if file_path.resolve().parent != _INTEGRATIONS or file_path.stem == "__init__":
        return None
    try:
        importlib.import_module(f"torch_dash_optim.integrations.{file_path.stem}")
    except ImportError as err:
        return str(err)
    return None


class _NeedsExtra(pytest.File):
    """A module that cannot be imported without an optional extra: reported as skipped."""

    reason: str = ""

    def collect(self) -> Iterable[pytest.Item]:
        pytest.skip(self.reason)


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Generator[None, list, list]:
    collectors = yield
    reason = _missing_extra(file_path)
    if reason is None or not collectors:
        return collectors
    skipped = _NeedsExtra.from_parent(parent, path=file_path)
    skipped.reason = reason
    return [skipped]
