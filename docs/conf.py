"""Sphinx configuration of the torch-dash-optim documentation.

Build (nitpicky, warnings are errors, offline, as in CI)::

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
    "sphinx-mathjax-offline",  # ships MathJax 3 into _static/: maths renders with no network
    "sphinx_copybutton",
    "myst_parser",  # only for the changelog, which is Markdown (../CHANGELOG.md)
]

source_suffix = {".rst": "restructuredtext"}  # Markdown is only ever included, never a page
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "figures/*.py"]
templates_path = ["_templates"]


# -- pages of parts that a checkout may not have yet -------------------------------------------
# The integrations (torch_dash_optim.integrations) and the module-level helpers on_new_data and
# find_dash have API pages in the toctrees. A page whose object does not exist is left out of
# the build, and its toctree entries with it (_drop_missing_entries), so the same docs build
# with and without them.
def _missing(module: str, attribute: str | None = None) -> bool:
    import importlib.util

    try:
        if importlib.util.find_spec(module) is None:
            return True
    except ModuleNotFoundError:
        return True
    return attribute is not None and not hasattr(importlib.import_module(module), attribute)


_OPTIONAL_PAGES = {
    "api/integrations/index.rst": ("torch_dash_optim.integrations", None),
    "api/integrations/lightning.rst": ("torch_dash_optim.integrations.lightning", None),
    "api/integrations/transformers.rst": ("torch_dash_optim.integrations.transformers", None),
    "api/on_new_data.rst": ("torch_dash_optim", "on_new_data"),
    "api/find_dash.rst": ("torch_dash_optim", "find_dash"),
}
_LEFT_OUT = [page for page, target in _OPTIONAL_PAGES.items() if _missing(*target)]
exclude_patterns += _LEFT_OUT


def _drop_missing_entries(app: object, docname: str, source: list[str]) -> None:
    """Remove the toctree entries (indented lines naming one page) of the pages left out."""
    import posixpath
    import re

    left_out = {page.removesuffix(".rst") for page in _LEFT_OUT}

    def target(entry: str) -> str:
        return (
            entry[1:]
            if entry.startswith("/")
            else posixpath.normpath(posixpath.join(posixpath.dirname(docname), entry))
        )

    def keep(m: re.Match[str]) -> str:
        return "" if target(m.group(1) or m.group(2)) in left_out else m.group(0)

    source[0] = re.sub(r"^ +(?:[^\n<]*<(\S+)>|(\S+)) *\n", keep, source[0], flags=re.MULTILINE)


# -- optional extras -----------------------------------------------------------------------
# The docs build as Read the Docs builds them: torch and the ``docs`` extra only. The frameworks
# that the integration modules need (extras ``lightning``, ``hf``...) are then absent, and
# autodoc imports those modules against stand-ins, so that their API pages are built all the
# same. Where a framework is installed, the real one is used.
_EXTRA_PACKAGES = ("lightning", "transformers", "accelerate", "timm", "schedulefree")


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


autodoc_mock_imports = [m for m in _EXTRA_PACKAGES if not _importable(m)]

# Every cross-reference must resolve (the build is nitpicky, and warnings are errors).
nitpicky = True
nitpick_ignore: list[tuple[str, str]] = [
    # TEMPORARY: the return annotation of experiments.loaders.make_loader names this private
    # class; remove this line once it is annotated with a public type.
    ("py:class", "torch_dash_optim.experiments.loaders._DeviceLoader"),
]

# -- project links, defined once --------------------------------------------------------------
# The same addresses are in pyproject.toml's [project.urls]. Pages link them as `repository`_
# and `issue tracker`_ (rst_epilog); the sidebar reads them from html_context.
REPOSITORY = "https://github.com/torch-dash-optim/torch-dash-optim"
ISSUES = f"{REPOSITORY}/issues"
rst_epilog = f"""
.. _repository: {REPOSITORY}
.. _issue tracker: {ISSUES}
.. |repository_url| replace:: {REPOSITORY}
"""

# -- autodoc / napoleon ---------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
python_use_unqualified_type_names = True  # "ParamReport", not "torch_dash_optim.report.ParamReport"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = False  # "Attributes" become attribute entries that :attr: can link

# -- doctest --------------------------------------------------------------------------------
# ``-b doctest`` runs the examples of the narrative pages and of every docstring that autodoc
# pulls in (pytest --doctest-modules runs the docstrings too). There is no global setup: every
# block of a narrative page imports and builds what it uses, in its own group, so that it runs
# as a reader pastes it (tests/repository/test_docs_snippets.py runs each alone, too). The docstring examples
# of the API pages are shown with the imports they need (_show_example_imports, below); an API
# page's testsetup only seeds torch, as pytest does.
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
# MathJax comes with the site: sphinx-mathjax-offline copies it into _static/mathjax/ and points
# mathjax_path there, so a local build reads correctly without internet (no CDN is referenced).
html_theme = "furo"
html_title = f"torch-dash-optim {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]
html_context = {"project_links": [("Repository", REPOSITORY), ("Issue tracker", ISSUES)]}
html_sidebars = {
    "**": [
        "sidebar/brand.html",
        "sidebar/search.html",
        "sidebar/scroll-start.html",
        "sidebar/navigation.html",
        "sidebar/project-links.html",
        "sidebar/scroll-end.html",
    ]
}
html_theme_options = {
    "source_repository": f"{REPOSITORY}/",
    "source_branch": "main",
    "source_directory": "docs/",
}
copybutton_selector = "div.highlight pre, pre.literal-block"  # the install line too
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


# -- the changelog --------------------------------------------------------------------------
# CHANGELOG.md follows Keep a Changelog: version headings are written "## [0.2.0] - date" and
# link to the release through a definition at the bottom ("[0.2.0]: https://..."). MyST renders
# a defined one as a link; a heading whose brackets have no definition would show them
# literally, so the ``changelog`` directive below drops those (in the docs only).
def unbracket_headings(markdown: str) -> str:
    """Drop the brackets of ``## [label]`` headings whose ``[label]:`` link is not defined."""
    import re

    defined = {m.lower() for m in re.findall(r"^ {0,3}\[([^\]]+)\]:", markdown, flags=re.MULTILINE)}

    def unbracket(match: re.Match[str]) -> str:
        hashes, label = match.group(1), match.group(2)
        return match.group(0) if label.lower() in defined else f"{hashes}{label}"

    return re.sub(r"^(#+ +)\[([^\]]+)\](?![(\[:])", unbracket, markdown, flags=re.MULTILINE)


def _changelog_directive() -> type:
    from docutils.utils import new_document
    from myst_parser.parsers.sphinx_ import MystParser
    from sphinx.util.docutils import SphinxDirective

    class Changelog(SphinxDirective):
        """``.. changelog:: ../CHANGELOG.md``: the Markdown file, parsed by MyST, headings mended."""

        required_arguments = 1

        def run(self) -> list:
            _, path = self.env.relfn2path(self.arguments[0])
            self.env.note_dependency(path)
            text = unbracket_headings(Path(path).read_text(encoding="utf-8"))
            document = new_document(str(path), self.state.document.settings)
            MystParser().parse(text, document)
            return document.children

    return Changelog


# -- the table of what the package exports ------------------------------------------------------
def _exports_directive() -> type:
    import inspect

    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective
    from sphinx.util.parsing import nested_parse_to_nodes

    def row(name: str) -> tuple[str, str]:
        obj = getattr(torch_dash_optim, name)
        role = "exc" if inspect.isclass(obj) and issubclass(obj, BaseException) else "class"
        role = role if inspect.isclass(obj) else "func"
        return f":{role}:`~torch_dash_optim.{name}`", (inspect.getdoc(obj) or "").splitlines()[0]

    class Exports(SphinxDirective):
        """``.. dash-exports::``: a table of ``torch_dash_optim.__all__`` (its classes and functions), with
        one-line summaries."""

        def run(self) -> list:
            first = ["DASHWrapper", "DASHConfig", "DASHReport", "ParamReport", "SAM"]  # the rest: __all__'s order
            names = [n for n in first if n in torch_dash_optim.__all__]
            names += [n for n in torch_dash_optim.__all__ if n not in first]
            lines = [".. list-table::", "   :widths: 35 65", ""]
            for name in names:
                ref, summary = row(name)
                lines += [f"   * - {ref}", f"     - {summary}"]
            return nested_parse_to_nodes(self.state, StringList(lines, source="dash-exports"))

    return Exports


# -- long dotted names in page titles and in the navigation ------------------------------------
# A name such as ``torch_dash_optim.experiments.protocol`` is one long word: a narrow column
# would break it anywhere. Offer a line break after each dot instead (<wbr>, invisible), in the
# page title, the navigation tree (furo builds it in its own handler, which runs first) and the
# page's table of contents.
def _soft_dots(html: str) -> str:
    import re

    return re.sub(r">([^<>]*\w\.[^<>]*)<", lambda m: ">" + re.sub(r"(\w)\.(?=\w)", r"\1.<wbr>", m.group(1)) + "<", html)


def _break_names_after_dots(app: object, pagename: str, templatename: str, context: dict, doctree: object) -> None:
    import re

    if context.get("body"):
        context["body"] = re.sub(
            r"<h1>.*?</h1>", lambda m: _soft_dots(m.group(0)), context["body"], count=1, flags=re.DOTALL
        )
    for key in ("furo_navigation_tree", "toc"):  # the navigation, and the page's contents
        if context.get(key):
            context[key] = _soft_dots(context[key])


# -- the imports of the docstring examples ------------------------------------------------------
# pytest runs a docstring's examples in its module's namespace, with ``torch`` added
# (the repository's conftest.py), so the examples in the source do not import what they use. A
# reader who copies one from an API page has neither: the page shows each docstring's examples
# with the imports they need added in front (``import torch``, ``from torch_dash_optim import
# DASHWrapper``...), and the doctest build runs them as shown.
def _example_imports(module_name: str, code: str) -> list[str]:
    """The import statements that the example ``code`` of a docstring in ``module_name`` needs."""
    import ast
    import builtins
    import inspect

    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    used = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
    namespace = vars(sys.modules[module_name])
    plain: list[str] = []
    froms: dict[str, list[str]] = {}
    for name in dict.fromkeys(used):
        if name in defined or name not in namespace and name != "torch":
            continue
        if name == "torch":
            plain.append("import torch")
            continue
        value = namespace[name]
        if inspect.ismodule(value):
            dotted = value.__name__
            plain.append(f"import {dotted}" if dotted == name else f"import {dotted} as {name}")
        elif name in getattr(torch_dash_optim, "__all__", ()) and getattr(torch_dash_optim, name) is value:
            froms.setdefault("torch_dash_optim", []).append(name)
        else:
            home = getattr(value, "__module__", None)
            source = home if home and getattr(sys.modules.get(home), name, None) is value else module_name
            froms.setdefault(source, []).append(name)
    return sorted(plain) + [
        f"from {source} import {', '.join(sorted(names))}" for source, names in sorted(froms.items())
    ]


def _show_example_imports(app: object, what: str, name: str, obj: object, options: object, lines: list[str]) -> None:
    """Put the imports a docstring's examples need in front of its first example."""
    first = next((i for i, line in enumerate(lines) if line.lstrip().startswith(">>>")), None)
    if first is None:
        return
    parts = name.split(".")
    module_name = next(
        (".".join(parts[:n]) for n in range(len(parts), 0, -1) if ".".join(parts[:n]) in sys.modules), ""
    )
    if not module_name.startswith("torch_dash_optim"):
        return
    code = "\n".join(line.strip()[4:] for line in lines if line.strip().startswith((">>> ", "... ")))
    indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
    lines[first:first] = [f"{indent}>>> {statement}" for statement in _example_imports(module_name, code)]


# -- "[docs]" links of the highlighted sources ---------------------------------------------------
# viewcode links each object of a module's source page back to where it is documented, as
# page#<prefix>.<name>, with one prefix per module. An object documented under its re-exported
# name (torch_dash_optim.find_dash, on api/find_dash) while its module is documented elsewhere
# (torch_dash_optim.wrapper, on api/modules/core) can then get the page of one and the prefix of
# the other: a dead anchor. Rewrite each such link to a name that is documented: the
# one on the linked page if there is one, else the module's or a parent package's.
def _mend_viewcode_backlinks(app: object, pagename: str, templatename: str, context: dict, doctree: object) -> None:
    import posixpath
    import re

    if not pagename.startswith("_modules/") or not context.get("body"):
        return
    modname = pagename.removeprefix("_modules/").replace("/", ".")
    entry = getattr(app.env, "_viewcode_modules", {}).get(modname)
    if not entry:
        return
    refname = entry[3]
    objects = app.env.get_domain("py").objects
    parts = modname.split(".")
    prefixes = [refname, modname] + [".".join(parts[:n]) for n in range(len(parts) - 1, 0, -1)]

    def mend(m: re.Match[str]) -> str:
        url, anchor = m.group(2), m.group(3)
        if not anchor.startswith(refname + "."):
            return m.group(0)
        name = anchor.removeprefix(refname + ".")
        linked = posixpath.normpath(posixpath.join(posixpath.dirname(pagename), url)).removesuffix(".html")
        found = [f"{p}.{name}" for p in prefixes if f"{p}.{name}" in objects]
        found.sort(key=lambda key: objects[key].docname != linked)  # the linked page first
        if not found:
            return m.group(0)
        entry = objects[found[0]]  # an alias (a :canonical: name) points at its object's anchor
        target = app.builder.get_relative_uri(pagename, entry.docname)
        return f'{m.group(1)}"{target}#{entry.node_id}"'

    context["body"] = re.sub(r'(<a class="viewcode-back" href=)"([^"#]*)#([^"]+)"', mend, context["body"])


# -- examples that need an absent framework ---------------------------------------------------
# Where an integration's framework is absent (mocked above, as on Read the Docs or in a venv
# with only the test extra), the doctest builder cannot run that module's examples: they are
# left out of the doctest build, as pytest skips the module. The html build still shows them.
_FRAMEWORK_OF = {
    "torch_dash_optim.integrations.lightning": "lightning",
    "torch_dash_optim.integrations.transformers": "transformers",
}


def _drop_examples_of_absent_frameworks(
    app: object, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    if getattr(getattr(app, "builder", None), "name", "") != "doctest":
        return
    module = next((m for m in _FRAMEWORK_OF if name == m or name.startswith(m + ".")), None)
    if module is None or _FRAMEWORK_OF[module] not in autodoc_mock_imports:
        return
    kept, in_example = [], False
    for line in lines:
        if line.lstrip().startswith(">>>"):
            in_example = True
        elif not line.strip():
            in_example = False
        if not in_example:
            kept.append(line)
    lines[:] = kept


def setup(app: object) -> None:
    import importlib
    import pkgutil

    app.connect("html-page-context", _mend_viewcode_backlinks)
    app.connect("autodoc-process-docstring", _drop_examples_of_absent_frameworks)
    app.connect("autodoc-process-docstring", _show_example_imports)

    app.connect("html-page-context", _break_names_after_dots, priority=900)  # after furo's
    app.connect("source-read", _drop_missing_entries)
    app.add_directive("changelog", _changelog_directive())
    app.add_directive("dash-exports", _exports_directive())

    from sphinx.ext.autodoc.mock import mock

    with mock(autodoc_mock_imports):  # the integration modules import their frameworks
        for info in pkgutil.walk_packages(torch_dash_optim.__path__, "torch_dash_optim."):
            leaf = info.name.rsplit(".", 1)[-1]
            if not leaf.startswith("_"):
                _evaluate_constructor_hints(importlib.import_module(info.name))
