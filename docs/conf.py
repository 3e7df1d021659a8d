"""Sphinx configuration of the torch-dash-optim documentation.

Build (warnings are errors, as in CI)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
    python -m sphinx -W --keep-going -b doctest docs docs/_build/doctest
"""

from __future__ import annotations

import doctest
import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # document the checkout, installed or not

import torch_dash_optim  # noqa: E402

project = "torch-dash-optim"
author = "torch-dash-optim developers"
copyright = "2026, torch-dash-optim developers"
release = torch_dash_optim.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.doctest",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    "sphinx_copybutton",
    "myst_parser",  # only for the changelog, which is Markdown (../CHANGELOG.md)
]

source_suffix = {".rst": "restructuredtext"}  # Markdown is only ever included, never a page
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "figures/*.py"]
templates_path: list[str] = []

# -- autodoc / napoleon ---------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True

# -- doctest --------------------------------------------------------------------------------
# ``-b doctest`` runs the examples of the narrative pages and of every docstring that autodoc
# pulls in (pytest --doctest-modules runs the docstrings too). Each API page sets up the
# namespace of its module, as pytest does; this is the part common to every page.
doctest_global_setup = """
import torch
torch.manual_seed(0)
"""
doctest_default_flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.DONT_ACCEPT_TRUE_FOR_1

# -- intersphinx, offline by default --------------------------------------------------------
# The build must pass with no network (CI has none). docs/_inv/ holds small inventories, made
# by docs/_inv/make_inventories.py, of the Python, PyTorch and NumPy objects these pages link
# to, each pointing at the object's page on the project's real site. They are the only source
# unless the build runs on Read the Docs (READTHEDOCS is set) or DASH_DOCS_ONLINE=1: then the
# full upstream inventory is fetched first and the local one is only the fallback.
_ONLINE = bool(os.environ.get("READTHEDOCS")) or os.environ.get("DASH_DOCS_ONLINE") == "1"


def _inventory(name: str) -> tuple[str | None, ...]:
    local = f"_inv/{name}.inv"
    return (None, local) if _ONLINE else (local,)


intersphinx_mapping = {
    "python": ("https://docs.python.org/3", _inventory("python")),
    "torch": ("https://docs.pytorch.org/docs/stable", _inventory("torch")),
    "numpy": ("https://numpy.org/doc/stable", _inventory("numpy")),
}
intersphinx_timeout = 10

# -- math, HTML -----------------------------------------------------------------------------
# MathJax is loaded by the reader's browser from its CDN; nothing is fetched at build time.
html_theme = "furo"
html_title = f"torch-dash-optim {release}"
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_exclude = ".linenos, .gp, .go"

# MyST parses only the included changelog (CommonMark headings, lists and links).
myst_heading_anchors = 3


# -- constructor type hints -----------------------------------------------------------------
# The package uses ``from __future__ import annotations``. Sphinx evaluates the string
# annotations of functions, but for a class it reads ``__init__``'s raw strings ("Optimizer",
# "nn.Module | None"), which render unlinked. Evaluate them in their own module first; a class
# whose hints cannot be evaluated keeps its strings.
def _evaluate_constructor_hints(module: object) -> None:
    import inspect
    import typing

    for obj in vars(module).values():
        init = obj.__dict__.get("__init__") if inspect.isclass(obj) else None
        if init is None or not getattr(init, "__module__", "").startswith("torch_dash_optim"):
            continue
        try:
            init.__annotations__ = typing.get_type_hints(init)
        except Exception:  # keep the strings
            pass


def setup(app: object) -> None:
    import importlib
    import pkgutil

    for info in pkgutil.walk_packages(torch_dash_optim.__path__, "torch_dash_optim."):
        leaf = info.name.rsplit(".", 1)[-1]
        if not leaf.startswith("_") and leaf != "conftest":  # conftest needs pytest
            _evaluate_constructor_hints(importlib.import_module(info.name))
