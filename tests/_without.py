"""An environment in which some installed packages cannot be imported, as if absent.

A ``sitecustomize`` module on ``PYTHONPATH`` puts a finder first on ``sys.meta_path`` that
answers ``ModuleNotFoundError`` for the named top-level packages. A subprocess started with
:func:`env_without` then behaves as a venv without them: ``import lightning`` fails, and so does
``importlib.util.find_spec("lightning")``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

#: The packages that the integration extras bring (and that nothing else needs).
INTEGRATION_PACKAGES = ("lightning", "pytorch_lightning", "lightning_fabric", "transformers", "accelerate", "timm",
                        "schedulefree")  # fmt: skip

#: Every package that an extra brings and the library's modules may not need at import time.
EXTRA_PACKAGES = (*INTEGRATION_PACKAGES, "mnist1d", "tqdm", "torchvision", "matplotlib")

#: What Read the Docs lacks, where only torch and the ``docs`` extra are installed.
NOT_IN_DOCS_EXTRA = (*INTEGRATION_PACKAGES, "mnist1d", "tqdm", "torchvision", "hypothesis", "pytest", "_pytest")

_SITECUSTOMIZE = '''\
import sys

_BLOCKED = {blocked!r}


class _Absent:
    """Finds nothing for the blocked packages: they read as not installed."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in _BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _Absent())
'''


def env_without(folder: Path, packages: Iterable[str], base: dict[str, str] | None = None) -> dict[str, str]:
    """Return a copy of ``base`` (default ``os.environ``) in which ``packages`` cannot be imported.

    Parameters
    ----------
    folder:
        An empty folder for the ``sitecustomize.py`` that blocks them.
    packages:
        Top-level package names.
    base:
        The environment to start from.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(_SITECUSTOMIZE.format(blocked=sorted(set(packages))), encoding="utf-8")
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(folder), env.get("PYTHONPATH")]))
    env.pop("DASH_REQUIRE_INTEGRATIONS", None)
    return env
