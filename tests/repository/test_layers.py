"""The package's architecture, read from its source with :mod:`ast`: layers, no cycles, no clone paths.

* **Layers.** Every import inside ``torch_dash_optim`` (at module level or inside a function;
  ``if TYPE_CHECKING:`` blocks aside, they run never) goes to a module of the importer's own
  layer or of a layer below it, per :data:`LAYERS`, the one table of the layering.
* **No cycles.** No chain of imports (module or function level) leads from a module back to
  itself, in the whole package and, stated on its own, inside ``experiments/``.
* **Installed code stands alone.** No installed module finds files through
  ``Path(__file__).parents[...]`` (or ``.parent.parent``): a wheel has no clone around it. No
  ``conftest.py`` inside the package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "torch_dash_optim"
NAME = "torch_dash_optim"

#: The layers, bottom to top. A module may import its own layer's modules and those of the
#: layers below. Entries are the first name under ``torch_dash_optim``: a top-level module, or a
#: subpackage with all its modules. ``__init__`` is the package's facade (what ``import
#: torch_dash_optim`` gives): it may re-export the core, and nothing in the core imports it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("_checks", "_interrupts", "_extras", "_nesting", "_delegate", "_deprecation"),  # private base
    ("functional", "ranks"),  # pure tensor math: DASH's factors, and the ranks of matrices
    ("distributed",),  # DTensor helpers over functional; gather and the wrapper use them
    ("names", "units"),  # parameter names across wrapper modules; unit rules by module type
    ("selection",),
    ("tolerance", "gather"),
    ("state_policy", "report"),
    ("wrapper",),
    ("sam",),
    ("amp",),
    ("baselines",),
    ("diagnostics",),
    ("__init__",),
    ("integrations",),
    ("experiments",),
)
#: Deprecated shims, each kept for one release at its old path: it may import its replacement
#: (and the private base); no module but the package's ``__init__`` imports it.
SHIMS: dict[str, str] = {"chain": "wrapper", "skip": "tolerance"}

_LEVEL = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _modules(package: Path = PACKAGE, name: str = NAME) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name, for its ``__init__``)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run (at module level or in functions), not under ``TYPE_CHECKING``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _import_nodes_of(child))
            continue
        yield from _import_nodes_of(node)


def _import_nodes_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        yield node
    else:
        yield from _import_nodes(node)


def imports(module: str, path: Path, known: set[str]) -> dict[str, int]:
    """The package's modules that ``module`` imports, each with the line of its first import."""
    is_package = path.name == "__init__.py"
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        while target and target not in known:  # an attribute of a module: the module
            target = target.rpartition(".")[0]
        if target and target != module:
            found.setdefault(target, line)

    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == NAME or alias.name.startswith(NAME + "."):
                    add(alias.name, node.lineno)
            continue
        if node.level:
            base = module.split(".")
            if not is_package:
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if not (source == NAME or source.startswith(NAME + ".")):
            continue
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            add(sub if sub in known else source, node.lineno)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """Each module of the package with the package modules it imports (and where)."""
    modules = _modules(package)
    return {m: imports(m, p, set(modules)) for m, p in modules.items()}


def _key(module: str) -> str:
    """A module's entry in :data:`LAYERS`: its first name under the package (``__init__`` for the root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_violations(graph: dict[str, dict[str, int]]) -> list[str]:
    """Every import of a higher layer, of a deprecated shim, and every module missing from the table."""
    out = []
    for module, targets in sorted(graph.items()):
        key = _key(module)
        if module.rpartition(".")[2] == "conftest":
            continue  # not the library at all: test_no_conftest_inside_the_package
        if key not in _LEVEL and key not in SHIMS:
            out.append(f"{module}: not in LAYERS; add it to the table of tests/repository/test_layers.py")
            continue
        for target, line in sorted(targets.items()):
            other = _key(target)
            where = f"{module} (line {line}) imports {target}"
            if key in SHIMS:
                if other not in (SHIMS[key], *LAYERS[0]):
                    out.append(f"{where}: a deprecated shim imports only its replacement, {SHIMS[key]}")
            elif other in SHIMS:
                if key != "__init__":
                    out.append(f"{where}: a deprecated shim; import its replacement, {SHIMS[other]}")
            elif other not in _LEVEL:
                continue  # reported as missing from the table
            elif _LEVEL[other] > _LEVEL[key]:
                out.append(f"{where}, a higher layer ({other} above {key})")
    return out


def cycles(graph: dict[str, dict[str, int]], within: str = NAME) -> list[list[str]]:
    """The import cycles among the modules under ``within``: each strongly connected group of two or more."""
    nodes = [m for m in graph if m == within or m.startswith(within + ".")]
    edges = {m: [t for t in graph[m] if t in nodes] for m in nodes}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in nodes:
        if v not in index:
            visit(v)
    return sorted(out)


def _describe(group: list[str], graph: dict[str, dict[str, int]]) -> str:
    """A cycle's modules with the imports that join them."""
    links = [f"{m} -> {t} (line {line})" for m in group for t, line in sorted(graph[m].items()) if t in group]
    return f"{', '.join(group)}: " + "; ".join(links)


def clone_paths(path: Path) -> list[int]:
    """Lines that climb from ``__file__`` with ``.parents[...]`` or ``.parent.parent``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) and node.value.attr == "parents":
            base = node.value.value
        elif isinstance(node, ast.Attribute) and node.attr == "parent" and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "parent":
            base = node.value.value
        else:
            continue
        if any(isinstance(n, ast.Name) and n.id == "__file__" for n in ast.walk(base)):
            lines.append(node.lineno)
    return sorted(set(lines))


# --- the checks of the checks: each finder on a small package written here -----------------------

_TOY = {
    "__init__.py": "from .wrapper import W\n",
    "_checks.py": "",
    "functional.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .wrapper import W\n",
    "selection.py": "from . import functional as F\nfrom ._checks import x\n",
    "gather.py": "def f():\n    from .report import R\n",
    "report.py": "from .gather import g\n",
    "wrapper.py": "import torch_dash_optim.selection\nfrom .chain import find_dash\n",
    "chain.py": "from .wrapper import W\nfrom .selection import s\n",
    "mystery.py": "",
    "experiments/__init__.py": "from .cli import main\n",
    "experiments/cli.py": "from . import stats\nfrom .. import W\n",
    "experiments/stats.py": "def f():\n    from .cli import main\n",
    "experiments/plot.py": "from pathlib import Path\nHERE = Path(__file__).resolve().parents[2] / 'x'\n"
    "UP = Path(__file__).parent.parent\nOK = Path(__file__).parent / 'data'\n",
}


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    for name, text in _TOY.items():
        path = tmp_path / NAME / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / NAME


def test_the_finders_read_imports_layers_cycles_and_clone_paths(toy: Path) -> None:
    graph = import_graph(toy)
    assert graph["torch_dash_optim.functional"] == {}  # TYPE_CHECKING imports never run
    assert graph["torch_dash_optim.selection"] == {"torch_dash_optim.functional": 1, "torch_dash_optim._checks": 2}
    assert graph["torch_dash_optim.gather"] == {"torch_dash_optim.report": 2}  # function level counts
    assert graph["torch_dash_optim.experiments.cli"] == {
        "torch_dash_optim.experiments.stats": 1,
        "torch_dash_optim": 2,  # an attribute of the package: its __init__
    }
    assert layer_violations(graph) == [
        "torch_dash_optim.chain (line 2) imports torch_dash_optim.selection: a deprecated shim imports only "
        "its replacement, wrapper",
        "torch_dash_optim.gather (line 2) imports torch_dash_optim.report, a higher layer (report above gather)",
        "torch_dash_optim.mystery: not in LAYERS; add it to the table of tests/repository/test_layers.py",
        "torch_dash_optim.wrapper (line 2) imports torch_dash_optim.chain: a deprecated shim; import its "
        "replacement, wrapper",
    ]
    assert cycles(graph) == [
        ["torch_dash_optim.chain", "torch_dash_optim.wrapper"],
        ["torch_dash_optim.experiments.cli", "torch_dash_optim.experiments.stats"],  # through a function
        ["torch_dash_optim.gather", "torch_dash_optim.report"],
    ]
    assert cycles(graph, f"{NAME}.experiments") == [
        ["torch_dash_optim.experiments.cli", "torch_dash_optim.experiments.stats"]
    ]
    assert clone_paths(toy / "experiments" / "plot.py") == [2, 3]


# --- the checks of the package ----------------------------------------------------------------------


def test_no_module_imports_a_higher_layer() -> None:
    problems = layer_violations(import_graph())
    assert not problems, "imports against the layering:\n" + "\n".join(problems)


def test_no_import_cycle_in_the_package() -> None:
    graph = import_graph()
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(_describe(group, graph) for group in found)


def test_no_import_cycle_inside_experiments() -> None:
    graph = import_graph()
    found = cycles(graph, f"{NAME}.experiments")
    assert not found, "import cycles in experiments/:\n" + "\n".join(_describe(group, graph) for group in found)


def test_no_installed_module_climbs_out_of_the_package_from_its_file() -> None:
    installed = [*sorted(PACKAGE.rglob("*.py")), ROOT / "_dash_warmstart.py"]
    found = [f"{p.relative_to(ROOT)}:{line}" for p in installed for line in clone_paths(p)]
    assert not found, (
        "installed modules that find files through Path(__file__).parents (a wheel has no clone around it):\n"
        + "\n".join(found)
    )


def test_no_conftest_inside_the_package() -> None:
    found = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("conftest.py")]
    assert not found, f"pytest files inside the package (they ship in the wheel): {found}; move them to the repository"
