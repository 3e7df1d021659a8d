"""Every Python block of the docs runs as written, pasted alone into a file, on a CPU.

What counts as a Python block, in the reST sources under ``docs/`` (``docs/_build`` aside):

* ``.. code-block::``, ``.. code::`` and ``.. sourcecode::`` with the language ``python``,
  ``python3``, ``py`` or ``pycon``;
* ``.. testcode::`` and ``.. doctest::`` blocks (the doctest build also checks their output);
* a literal block introduced by ``::`` whose text parses as Python (Sphinx highlights such a
  block as Python, and shows one that does not lex as plain text): the pages write code with an
  explicit ``code-block``, and a ``::`` block of Python is run like one. A ``::`` block that is
  not Python (an error message, a layout) is left alone;
* a bare doctest paragraph (lines starting with ``>>>``).

A block in doctest form is run as the copy button copies it: the ``>>>``/``...`` lines with
their prompts removed, the output lines left out. ``.. testsetup::`` is hidden setup that the
reader never sees: it is refused, except on the API reference pages (``docs/api/``), where it
may only seed torch's generator, as pytest's ``--doctest-modules`` does for the docstring
examples that autodoc shows there. Those examples are shown with the imports they need put in
front (``docs/conf.py``); :func:`test_api_examples_run_with_the_imports_the_pages_show` runs
each as shown, in an empty namespace. Every file a page shows with
``.. literalinclude::`` is run too: the scripts directly in ``examples/`` by
``tests/repository/test_examples.py`` (at ``--tiny`` size, ``ddp.py`` under torchrun), every other one
here, as ``python FILE``.

Each block and each file runs in a fresh interpreter, in an empty folder, with the checkout on
``PYTHONPATH`` and no GPU. A block that imports a package of an integration extra (lightning,
transformers, accelerate, timm, schedulefree) is skipped, naming the package and its extra,
when that package is missing, except under ``DASH_REQUIRE_INTEGRATIONS=1``, where that is a
failure. A block that imports a package outside the extras (:data:`NOT_RUN`: only Avalanche)
is compiled but not run, and its page must say that the recipe is not run.

The blocks run two at a time (CI has two cores); they are all tiny.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from _load import load_module

from torch_dash_optim._extras import install_hint

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = ROOT / "examples"
TIMEOUT_S = 300
WORKERS = 2

#: Top-level package of an integration extra -> the extra (as in tests/integrations/_common.py).
EXTRA_OF = {"lightning": "lightning", "transformers": "hf", "accelerate": "hf", "timm": "timm", "torchvision": "vision",
            "schedulefree": "schedulefree"}  # fmt: skip
#: Packages whose recipe another test runs: a block importing one is compiled here, not run.
NOT_RUN = {
    "avalanche": "the Avalanche recipe is run by tests/integrations/test_avalanche.py, with the 'avalanche' extra "
    "(CI: scripts/test-avalanche.sh)"
}

_PYTHON = {"python", "python3", "py", "pycon"}
_DIRECTIVE = re.compile(r"^(?P<indent> *)\.\. (?P<name>[\w-]+)::(?P<arg>.*)$")


@dataclass(frozen=True)
class Snippet:
    """One block (``path`` is the rst page) or one included file (``path`` is the file)."""

    id: str
    path: Path
    line: int
    code: str
    included: bool = False

    def imports(self) -> set[str]:
        """The top-level packages the code imports."""
        found = set()
        for node in ast.walk(ast.parse(self.code)):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
        return found


def _body(lines: list[str], start: int, indent: int) -> tuple[list[str], int]:
    """The indented content after a directive line or a ``::`` paragraph, options skipped."""
    i, out = start, []
    while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
        out.append(lines[i])
        i += 1
    while out and not out[-1].strip():
        out.pop()
    content = list(out)
    # Options directly under a directive (":caption: x") come before the first blank line.
    while content and re.match(r"^\s*:[\w-]+:", content[0]):
        content.pop(0)
    while content and not content[0].strip():
        content.pop(0)
    width = min((len(line) - len(line.lstrip()) for line in content if line.strip()), default=0)
    return [line[width:] for line in content], i


def _from_doctest(lines: list[str]) -> str:
    """What the copy button copies from a doctest block: the code, prompts stripped."""
    return "\n".join(line[4:] for line in lines if line.startswith((">>> ", "... ")) or line in (">>>", "..."))


def _is_python(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def _options(lines: list[str], start: int) -> dict[str, str]:
    opts = {}
    for line in lines[start:]:
        m = re.match(r"^\s+:([\w-]+):\s*(.*)$", line)
        if not m:
            break
        opts[m.group(1)] = m.group(2).strip()
    return opts


def snippets_of(page: Path) -> tuple[list[Snippet], list[str]]:
    """The Python blocks and included files of one page, and the hidden setups it holds."""
    lines = page.read_text(encoding="utf-8").splitlines()
    rel = page.relative_to(DOCS).as_posix()
    found: list[Snippet] = []
    hidden: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _DIRECTIVE.match(line)
        indent = len(line) - len(line.lstrip())
        if m:
            name, arg = m.group("name"), m.group("arg").strip()
            body, end = _body(lines, i + 1, indent)
            code = None
            if name in ("code-block", "code", "sourcecode") and arg in _PYTHON:
                code = _from_doctest(body) if arg == "pycon" else "\n".join(body)
            elif name == "testcode":
                code = "\n".join(body)
            elif name == "doctest":
                code = _from_doctest(body)
            elif name == "testsetup":
                hidden.append(
                    f"{rel}:{i + 1}: " + "; ".join(line.split("#")[0].strip() for line in body if line.strip())
                )
            elif name == "literalinclude":
                target = (page.parent / arg).resolve() if not arg.startswith("/") else (DOCS / arg[1:]).resolve()
                opts = _options(lines, i + 1)
                if target.suffix == ".py" or opts.get("language") in _PYTHON:
                    found.append(Snippet(target.relative_to(ROOT).as_posix(), target, 0,
                                         target.read_text(encoding="utf-8"), included=True))  # fmt: skip
            if code is not None:
                found.append(Snippet(f"{rel}:{i + 1}", page, i + 1, code))
            i = max(end, i + 1)
            continue
        if line.rstrip().endswith("::") and not line.lstrip().startswith(".. ") and line.strip():
            body, end = _body(lines, i + 1, indent)
            if body:
                text = "\n".join(body)
                code = _from_doctest(body) if body[0].startswith(">>>") else text
                if _is_python(code):
                    found.append(Snippet(f"{rel}:{i + 1}", page, i + 1, code))
            i = max(end, i + 1)
            continue
        if line.lstrip().startswith(">>> "):
            body, end = [], i
            while end < len(lines) and lines[end].strip():
                body.append(lines[end][indent:])
                end += 1
            found.append(Snippet(f"{rel}:{i + 1}", page, i + 1, _from_doctest(body)))
            i = end
            continue
        i += 1
    return found, hidden


def _pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.rst") if "_build" not in p.relative_to(DOCS).parts)


def _all() -> tuple[list[Snippet], list[str]]:
    snippets: list[Snippet] = []
    hidden: list[str] = []
    seen_files: set[Path] = set()
    for page in _pages():
        found, setups = snippets_of(page)
        hidden += setups
        for s in found:
            if s.included and s.path in seen_files:
                continue
            seen_files.add(s.path)
            snippets.append(s)
    return snippets, hidden


SNIPPETS, HIDDEN_SETUPS = _all()


def _runs_in_test_examples(snippet: Snippet) -> bool:
    return snippet.included and snippet.path.parent == EXAMPLES


def _skip_reason(snippet: Snippet) -> str | None:
    """Why a snippet is not run here, or None."""
    if _runs_in_test_examples(snippet):
        return None
    needs = snippet.imports()
    for package, why in NOT_RUN.items():
        if package in needs:
            return why
    if os.environ.get("DASH_REQUIRE_INTEGRATIONS") == "1":
        return None
    import importlib.util

    for package, extra in EXTRA_OF.items():
        if package in needs and importlib.util.find_spec(package) is None:
            return f"{package} is not installed (the {extra!r} extra: {install_hint(extra)})"
    return None


def _run(snippet: Snippet, folder: Path) -> tuple[subprocess.CompletedProcess, float]:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / (snippet.path.name if snippet.included else "snippet.py")
    script.write_text(snippet.code + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["CUDA_VISIBLE_DEVICES"] = ""
    env.setdefault("OMP_NUM_THREADS", "1")
    env["MPLBACKEND"] = "Agg"
    env["TOKENIZERS_PARALLELISM"] = "false"
    env["HF_HUB_OFFLINE"] = "1"
    start = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, script.name], cwd=folder, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S)  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        proc = subprocess.CompletedProcess(exc.cmd, -1, str(exc.stdout), f"timed out after {TIMEOUT_S} s")
    return proc, time.perf_counter() - start


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[subprocess.CompletedProcess, float]]:
    """Run every snippet that is to be run here, two at a time; keyed by snippet id."""
    todo = [s for s in SNIPPETS if _skip_reason(s) is None and not _runs_in_test_examples(s)]
    base = tmp_path_factory.mktemp("snippets")
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {s.id: pool.submit(_run, s, base / f"s{n}") for n, s in enumerate(todo)}
        return {key: f.result() for key, f in futures.items()}


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_snippet_runs_alone(snippet: Snippet, results: dict) -> None:
    compile(snippet.code, snippet.id, "exec")  # every block is valid Python, run or not
    if _runs_in_test_examples(snippet):
        assert snippet.path in set(EXAMPLES.glob("*.py")), snippet.id  # tests/repository/test_examples.py runs it
        return
    reason = _skip_reason(snippet)
    if reason is not None:
        pytest.skip(f"{snippet.id}: {reason}")
    proc, _ = results[snippet.id]
    assert proc.returncode == 0, (
        f"{snippet.id} fails when pasted alone into a file:\n--- code ---\n{snippet.code}\n"
        f"--- stdout ---\n{proc.stdout[-2000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
    )


def test_no_hidden_setup_on_the_narrative_pages() -> None:
    """A ``testsetup`` only sets up the docstring examples of the API reference."""
    narrative = [where for where in HIDDEN_SETUPS if not where.startswith("api/")]
    assert not narrative, f"hidden setup that a reader cannot copy: {narrative}"
    seed_only = "import torch; torch.manual_seed(0)"
    more = [where for where in HIDDEN_SETUPS if where.startswith("api/") and not where.endswith(": " + seed_only)]
    assert not more, f"an API page's testsetup may only seed torch ({seed_only}): {more}"


def test_at_most_one_recipe_is_not_run_and_its_page_says_so() -> None:
    not_run = [s for s in SNIPPETS if any(p in s.imports() for p in NOT_RUN)]
    assert len(not_run) <= 1, [s.id for s in not_run]
    for s in not_run:
        text = " ".join(s.path.read_text(encoding="utf-8").split())
        assert "recipe is not run" in text, f"{s.id}: its page must say plainly that the recipe is not run"


def test_every_integration_has_a_snippet() -> None:
    """Lightning, the HF Trainer, Accelerate, timm (with Lookahead), schedule-free (train and eval
    modes), DDP and FSDP2 on gloo, AMP, SAM and an averaged model kept in step: each has one
    block or file that shows all of its parts, and is run."""
    wanted = {
        "Lightning": [r"from torch_dash_optim\.integrations\.lightning import DASHCallback", r"\.fit\("],
        "HF Trainer": [r"from torch_dash_optim\.integrations\.transformers import DASHCallback", r"\.train\(\)"],
        "Accelerate": [r"accelerator\.prepare\(", r"on_new_data\("],
        "timm with Lookahead": [r"timm\.create_model\(", r"create_optimizer_v2\([^)]*lookahead"],
        "schedule-free, train and eval modes": [r"import schedulefree", r"\.train\(\)", r"\.eval\(\)"],
        "DDP on gloo": [r"DistributedDataParallel", r"gloo", r"on_new_data\("],
        "FSDP2 on gloo": [r"fully_shard\(", r"gloo", r"on_new_data\("],
        "AMP": [r"GradScaler", r"autocast", r"on_new_data\("],
        "SAM": [r"\bSAM\(", r"on_new_data\("],
        "an EMA or SWA kept in step": [r"AveragedModel", r"\.apply_to\("],
    }
    for what, patterns in wanted.items():
        shown = [s for s in SNIPPETS if all(re.search(p, s.code) for p in patterns)]
        assert shown, f"no block or included file shows {what} ({patterns})"
        assert any(_skip_reason(s) is None or "is not installed" in _skip_reason(s) for s in shown), what


# -- the extraction rule itself ------------------------------------------------------------------
def test_the_extraction_finds_each_kind_of_block(tmp_path: Path) -> None:
    page = DOCS / "_snippet_rule_check.rst"
    text = """Title
=====

.. code-block:: python
   :caption: a

   a = 1

.. testcode:: g

   b = 2

.. doctest::

   >>> c = 3
   >>> c
   3

A literal block::

   d = 4

Not Python::

   ImportError: a message

.. code-block:: console

   $ not python

>>> e = 5

.. testsetup::

   hidden = 1
"""
    try:
        page.write_text(text, encoding="utf-8")
        found, hidden = snippets_of(page)
    finally:
        page.unlink()
    assert [s.code for s in found] == ["a = 1", "b = 2", "c = 3\nc", "d = 4", "e = 5"]
    assert hidden == ["_snippet_rule_check.rst:33: hidden = 1"]


# -- the docstring examples of the API pages ------------------------------------------------------
def _conf_module():  # noqa: ANN202
    return load_module(DOCS / "conf.py", "_dash_docs_conf_snippets")


def test_api_examples_run_with_the_imports_the_pages_show() -> None:
    """Each docstring example, as an API page shows it (docs/conf.py puts the imports it needs in
    front), runs in an empty namespace: nothing comes from the module it is documented in."""
    import doctest
    import importlib
    import pkgutil

    import torch

    import torch_dash_optim

    conf = _conf_module()
    modules = ["torch_dash_optim"] + [
        info.name
        for info in pkgutil.walk_packages(torch_dash_optim.__path__, "torch_dash_optim.")
        if not any(part.startswith("_") for part in info.name.split(".")) and not info.name.endswith("conftest")
    ]
    require = os.environ.get("DASH_REQUIRE_INTEGRATIONS") == "1"
    finder, seen, failures, ran = doctest.DocTestFinder(), set(), [], 0
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.DONT_ACCEPT_TRUE_FOR_1
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            if require or ".integrations." not in name:
                raise
            continue  # an integration whose framework is missing (its page uses stand-ins)
        for test in finder.find(module):
            if not test.examples or test.name in seen:
                continue
            seen.add(test.name)
            code = "\n".join(example.source for example in test.examples)
            imports = [doctest.Example(f"{line}\n", "") for line in conf._example_imports(module.__name__, code)]
            test.examples[:0] = imports
            test.globs = {"__name__": "__docs_example__"}
            torch.manual_seed(0)
            runner = doctest.DocTestRunner(optionflags=flags)
            out: list[str] = []
            result = runner.run(test, out=out.append, clear_globs=True)
            ran += 1
            if result.failed:
                failures.append("".join(out)[-1500:])
    assert ran >= 100, ran
    assert not failures, f"{len(failures)} docstring examples fail with the imports shown:\n" + "\n".join(failures)
