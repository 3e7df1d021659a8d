"""The documentation builds warning-free, its examples run, and it covers the public API.

Both Sphinx builds run as in CI and on Read the Docs (nitpicky, ``-W --keep-going``), offline,
in a temporary folder; they are started together, since each mostly waits on imports and I/O.
The built pages are then read as a browser would: no leaked markup, no resource from the
network, every public class on a page of its own and in the navigation, no dead internal link
or anchor, and no page wider than a 400 px phone screen, measured in headless Chromium
(``docs/check_site.py``; skipped without Chromium, except under ``DASH_REQUIRE_BROWSER=1``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType

import pytest
from _load import load_module
from _without import NOT_IN_DOCS_EXTRA, env_without

import torch_dash_optim

from .test_docs_markup import find_leaked_markup

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
TIMEOUT_S = 600


def _public_modules() -> list[ModuleType]:
    """The package and every submodule whose dotted name has no private part.

    An integration module whose framework is not installed (a venv with only the test extra)
    is left out, unless ``DASH_REQUIRE_INTEGRATIONS=1``.
    """
    modules: list[ModuleType] = [torch_dash_optim]
    for info in pkgutil.walk_packages(torch_dash_optim.__path__, "torch_dash_optim."):
        parts = info.name.split(".")
        if any(p.startswith("_") for p in parts) or parts[-1] == "conftest":
            continue
        try:
            modules.append(importlib.import_module(info.name))
        except ImportError as err:
            optional = info.name.startswith("torch_dash_optim.integrations.") and "extra" in str(err)
            if not optional or os.environ.get("DASH_REQUIRE_INTEGRATIONS") == "1":
                raise
    return modules


def _public_objects() -> list[tuple[str, object]]:
    """``(dotted name, object)`` for every name in the ``__all__`` of a public module."""
    out = []
    for module in _public_modules():
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if not inspect.ismodule(obj):
                out.append((f"{module.__name__}.{name}", obj))
    return out


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """Run the html and doctest builds concurrently; return their output folders and results."""
    env = {k: v for k, v in os.environ.items() if k not in ("READTHEDOCS", "DASH_DOCS_ONLINE")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    # The html build runs as on Read the Docs, where only torch and the docs extra are installed:
    # the other extras cannot be imported (the integrations' API pages are built from stand-ins).
    # The doctest build runs the integrations' examples, so it needs them.
    envs = {"html": env_without(tmp_path_factory.mktemp("without"), NOT_IN_DOCS_EXTRA, env), "doctest": env}
    procs = {}
    for builder in ("html", "doctest"):
        base = tmp_path_factory.mktemp(builder)
        cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder,
               "-d", str(base / "doctrees"), str(DOCS), str(base / "out")]  # fmt: skip
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=envs[builder], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        procs[builder] = (base / "out", cmd, proc)
    results = {}
    for builder, (out, cmd, proc) in procs.items():
        try:
            stdout, _ = proc.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, _ = proc.communicate()
        results[builder] = (out, subprocess.CompletedProcess(cmd, proc.returncode, stdout, None))
    return results


def _check(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"{' '.join(result.args)} failed:\n{result.stdout}"
    assert "WARNING" not in result.stdout and "ERROR" not in result.stdout, result.stdout


def test_html_builds_without_warnings(builds: dict) -> None:
    out, result = builds["html"]
    _check(result)
    for page in ("index", "overview", "installation", "quickstart", "guide/index", "api/index",
                 "api/modules/index", "changelog", "citing"):  # fmt: skip
        assert (out / f"{page}.html").is_file(), page
    # The figures of the landing page and of the Overview are shipped with the site.
    for image in ("overview.png", "idea-vectors.png", "idea-factor.png"):
        assert (out / "_images" / image).is_file(), image
    # The changelog is the repository's CHANGELOG.md, rendered.
    changelog = (out / "changelog.html").read_text(encoding="utf-8")
    first_entry = next(
        line[2:].strip() for line in (ROOT / "CHANGELOG.md").read_text().splitlines() if line.startswith("- ")
    )
    words = re.findall(r"[A-Za-z]{5,}", first_entry)[:4]
    assert words and all(w in changelog for w in words), words


def test_the_integrations_api_is_built_without_their_frameworks(builds: dict) -> None:
    """The html build ran with lightning and transformers unimportable, and documents them."""
    out, result = builds["html"]
    _check(result)
    for module in ("lightning", "transformers"):
        page = (out / "api" / "integrations" / f"{module}.html").read_text(encoding="utf-8")
        assert re.search(r'class="sig-name descname"><span class="pre">DASHCallback<', page), module


def test_every_public_symbol_is_in_the_api_reference(builds: dict) -> None:
    out, result = builds["html"]
    assert (out / "objects.inv").is_file(), result.stdout
    documented = _inventory_names(out / "objects.inv")
    # A re-exported object (the package's DASHWrapper is the wrapper module's) needs to be
    # documented under one of its public names.
    names_of: dict[int, list[str]] = {}
    for name, obj in _public_objects():
        names_of.setdefault(id(obj), []).append(name)
    missing = [names[0] for names in names_of.values() if not documented.intersection(names)]
    missing += [m.__name__ for m in _public_modules() if m.__name__ not in documented]
    assert not missing, f"not in the API reference (docs/api/): {missing}"


def _inventory_names(path: Path) -> set[str]:
    """Object names in a Sphinx ``objects.inv`` (version 2: four header lines, then zlib)."""
    data = path.read_bytes()
    header_end = 0
    for _ in range(4):
        header_end = data.index(b"\n", header_end) + 1
    assert data.startswith(b"# Sphinx inventory version 2"), data[:40]
    lines = zlib.decompress(data[header_end:]).decode("utf-8").splitlines()
    return {line.split(" ", 1)[0] for line in lines if line}


def test_doctests_pass(builds: dict) -> None:
    out, result = builds["doctest"]
    _check(result)
    report = (out / "output.txt").read_text(encoding="utf-8")
    assert re.search(r"\b0 failures in tests", report), report
    tested = set(re.findall(r"^Document: (\S+)", report, flags=re.MULTILINE))
    # The narrative pages' examples and the API reference's docstring examples all ran.
    for page in ("index", "quickstart", "guide/data", "guide/state", "guide/sam", "api/DASHWrapper",
                 "api/modules/functional"):  # fmt: skip
        assert page in tested, f"no doctest ran on {page}: {sorted(tested)}"
    ran = sum(int(n) for n in re.findall(r"^(\d+) tests? in \d+ items?\.", report, flags=re.MULTILINE))
    assert ran >= 50, report


def test_public_classes_and_functions_have_examples() -> None:
    missing = []
    for name, obj in _public_objects():
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if ">>>" not in (inspect.getdoc(obj) or ""):
                missing.append(name)
    assert not missing, f"public classes/functions without a docstring example: {missing}"


# -- the built pages, as a reader sees them ---------------------------------------------------
def _pages(out: Path) -> list[Path]:
    """The HTML pages of the site, less the generated index, search and highlighted sources."""
    skip = ("genindex.html", "search.html", "py-modindex.html")
    return [
        page
        for page in sorted(out.rglob("*.html"))
        if not page.relative_to(out).as_posix().startswith(("_modules/", "_sources/")) and page.name not in skip
    ]


def test_no_page_shows_leaked_markup(builds: dict) -> None:
    out, result = builds["html"]
    assert (out / "index.html").is_file(), result.stdout
    leaks = [f"{page.relative_to(out)}: {finding}"
             for page in _pages(out)
             for finding in find_leaked_markup(page.read_text(encoding="utf-8"))]  # fmt: skip
    assert not leaks, "reST/Markdown/TeX syntax shows on the built pages:\n" + "\n".join(leaks)


def test_the_site_needs_no_network(builds: dict) -> None:
    """Scripts, styles and fonts come with the site: MathJax included, no CDN."""
    out, result = builds["html"]
    assert (out / "index.html").is_file(), result.stdout
    external = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["'](?:https?:)?//""")
    offenders = [str(page.relative_to(out)) for page in _pages(out) if external.search(page.read_text("utf-8"))]
    assert not offenders, f"pages that load a resource from the network: {offenders}"
    overview = (out / "overview.html").read_text(encoding="utf-8")
    assert 'class="math' in overview  # the page has maths...
    src = re.search(r'<script[^>]*src="([^"]*mathjax[^"]*)"', overview)
    assert src, "no MathJax script on a page with maths"
    assert not src.group(1).startswith(("http:", "https:", "//")), src.group(1)
    assert (out / src.group(1)).is_file(), f"{src.group(1)} is not in the built site"  # ...and MathJax is local


def test_every_public_class_and_function_has_a_page_in_the_navigation(builds: dict) -> None:
    out, result = builds["html"]
    assert (out / "index.html").is_file(), result.stdout
    index = (out / "index.html").read_text(encoding="utf-8")
    sidebar = index[index.index('class="sidebar-tree"') :]
    for name in torch_dash_optim.__all__:
        obj = getattr(torch_dash_optim, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert (out / "api" / f"{name}.html").is_file(), f"{name} has no page docs/api/{name}.rst"
            assert re.search(rf'href="api/{name}\.html">{name}</a>', sidebar), f"{name} is not in the sidebar"
    package = (out / "api" / "modules" / "package.html").read_text(encoding="utf-8")
    for name in torch_dash_optim.__all__:  # the package page lists everything it exports
        assert f"torch_dash_optim.{name}" in package or f"#module-torch_dash_optim.{name}" in package, name


def _conf() -> ModuleType:
    return load_module(DOCS / "conf.py", "_dash_docs_conf")


def test_the_build_is_nitpicky_and_its_links_match_the_package_metadata() -> None:
    tomllib = pytest.importorskip("tomllib")
    conf = _conf()
    assert conf.nitpicky is True
    # Only references to private objects, which have no page, may be ignored.
    assert all("._" in target for _, target in conf.nitpick_ignore), conf.nitpick_ignore
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]
    assert urls["Repository"] == conf.REPOSITORY
    assert urls["Issues"] == conf.ISSUES
    assert urls["Changelog"].endswith("/changelog.html")


def test_installation_lists_every_extra() -> None:
    """The table of extras on the installation page names exactly the extras of pyproject.toml."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = set(project["optional-dependencies"])
    page = (DOCS / "installation.rst").read_text(encoding="utf-8")
    table = page[page.index("Optional extras") : page.index("Building the documentation")]
    listed = set(re.findall(r"^   \* - ``([\w-]+)``$", table, flags=re.MULTILINE))
    assert listed == extras, f"docs/installation.rst lists {sorted(listed)}; pyproject.toml has {sorted(extras)}"


def test_changelog_headings_keep_links_and_drop_undefined_brackets() -> None:
    unbracket = _conf().unbracket_headings
    text = "# Changelog\n\n## [Unreleased]\n\n## [0.2.0] - 2026-11-27\n\n- a [link](x)\n\n[0.2.0]: https://x/0.2.0\n"
    assert unbracket(text) == text.replace("## [Unreleased]", "## Unreleased")
    assert unbracket("## [1.0]\n\n[1.0]: https://x\n") == "## [1.0]\n\n[1.0]: https://x\n"


# -- links and the width of a phone (docs/check_site.py) ------------------------------------------
def _check_site() -> ModuleType:
    return load_module(DOCS / "check_site.py", "_dash_check_site")


def _chromium() -> str:
    """Headless Chromium (Debian's ``chromium``); skip without it, unless DASH_REQUIRE_BROWSER=1."""
    chromium = _check_site().find_chromium()
    if chromium is None:
        if os.environ.get("DASH_REQUIRE_BROWSER") == "1":
            pytest.fail("DASH_REQUIRE_BROWSER=1 but chromium is not installed (apt-get install chromium)")
        pytest.skip(
            "chromium is not installed (apt-get install chromium; or set DASH_CHROMIUM): the width is not measured"
        )
    return chromium


def test_no_internal_link_or_anchor_is_dead(builds: dict) -> None:
    out, result = builds["html"]
    assert (out / "index.html").is_file(), result.stdout
    dead = _check_site().dead_links(out)
    assert not dead, "dead internal links:\n" + "\n".join(dead)


def test_no_page_is_wider_than_a_phone(builds: dict) -> None:
    """Every page fits 400 px: maths and wide tables scroll in their own box."""
    chromium = _chromium()
    out, result = builds["html"]
    assert (out / "index.html").is_file(), result.stdout
    check = _check_site()
    widths = check.page_widths(out, chromium)
    assert len(widths) >= 40 and "faq.html" in widths, sorted(widths)
    wide = {page: w for page, w in widths.items() if w[0] is None or w[0] > check.VIEWPORT_PX}
    assert not wide, f"pages wider than {check.VIEWPORT_PX} px (width, widest elements): {wide}"


def _tiny_site(folder: Path) -> Path:
    folder.mkdir()
    (folder / "ok.html").write_text(
        '<html><body><p id="here">fits</p><a href="wide.html#top">x</a><a href="ok.html#here">y</a>'
        '<div style="overflow-x:auto"><div style="width:900px">a wide table in its own box</div></div></body></html>'
    )
    (folder / "wide.html").write_text(
        '<html><body id="top"><div style="width:600px">too wide</div><a href="gone.html">x</a>'
        '<a href="ok.html#nowhere">y</a><a href="https://example.org/">z</a></body></html>'
    )
    return folder


def test_the_link_check_finds_missing_files_and_anchors(tmp_path: Path) -> None:
    dead = _check_site().dead_links(_tiny_site(tmp_path / "site"))
    assert dead == ["wide.html: gone.html (no such file)", "wide.html: ok.html#nowhere (no such anchor)"]


def test_the_width_check_finds_a_wide_page(tmp_path: Path) -> None:
    chromium = _chromium()
    widths = _check_site().page_widths(_tiny_site(tmp_path / "site"), chromium)
    assert widths["ok.html"][0] <= 400, widths  # a wide box that scrolls by itself is fine
    assert widths["wide.html"][0] > 400, widths


def test_no_page_has_a_contents_directive(builds: dict) -> None:
    """Furo shows an error box in place of a ``.. contents::`` table (it has its own)."""
    out, result = builds["html"]
    assert (out / "index.html").is_file(), result.stdout
    pattern = re.compile(r'class="(?:topic )?contents(?![^"]*this-will-duplicate-information)')
    offenders = [str(page.relative_to(out)) for page in _pages(out) if pattern.search(page.read_text("utf-8"))]
    assert not offenders, f"pages with a contents directive: {offenders}"
