"""How to install an optional extra, written once for every message that names one.

The package is installed from its repository (no package index carries it), so the command is
``pip install -e ".[extra]"`` in a clone, or a direct reference to the repository.
"""

from __future__ import annotations

__all__ = ["REPOSITORY", "install_hint"]

#: The project's repository (also in pyproject.toml's ``[project.urls]`` and docs/conf.py).
REPOSITORY = "https://github.com/torch-dash-optim/torch-dash-optim"


def install_hint(extra: str) -> str:
    """The commands that install ``extra`` (a name in pyproject.toml), from a clone or from the repository."""
    return f'pip install -e ".[{extra}]" (in a clone), or pip install "torch-dash-optim[{extra}] @ git+{REPOSITORY}"'
