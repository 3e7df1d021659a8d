"""The integration tests need their extras. Without them they are skipped, and the skip names
the missing package and the extra, except where ``DASH_REQUIRE_INTEGRATIONS=1`` (set by
``.ci/run``, whose install command brings every extra): there a missing package is a failure."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

from torch_dash_optim._extras import install_hint

#: The extra that installs each top-level package the integration tests import.
EXTRA_OF = {
    "lightning": "lightning",
    "transformers": "hf",
    "accelerate": "hf",
    "timm": "timm",
    "schedulefree": "schedulefree",
    "torchvision": "vision",
}


def need(module: str) -> ModuleType:
    """Import ``module``; skip the test module without it, unless the integrations are required."""
    if os.environ.get("DASH_REQUIRE_INTEGRATIONS") == "1":
        return importlib.import_module(module)
    extra = EXTRA_OF.get(module.split(".")[0], "integrations")
    reason = f"{module} is not installed (the {extra!r} extra: {install_hint(extra)})"
    return pytest.importorskip(module, reason=reason)
