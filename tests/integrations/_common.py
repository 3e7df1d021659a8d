"""The integration tests need their extras. Without them they are skipped, except where
``DASH_REQUIRE_INTEGRATIONS=1`` (set by ``.ci/run``, which installs every extra): there a
missing package is a failure."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def need(module: str) -> ModuleType:
    """Import ``module``; skip the test module without it, unless the integrations are required."""
    if os.environ.get("DASH_REQUIRE_INTEGRATIONS") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"{module} is not installed (an optional extra)")
