#!/usr/bin/env python3
"""Published numbers are generated, never typed: the generated blocks of README.md and docs/.

Every table or figure caption that quotes a result in ``README.md`` or ``docs/**/*.rst`` sits in
a *generated block*, whose opening marker names the function that renders it from committed
result files, and the format to render::

    <!-- generated: benchmarks.publish:performance_table md -->      (Markdown)
    ...rendered text...
    <!-- end generated -->

    .. generated: scripts.render.experiments:table rst      (reST comment)

    ...rendered text...

    .. end generated

The renderer is ``module:function``, imported with the repository root on ``sys.path`` and
called as ``function(fmt, *args)`` with ``fmt`` either ``"md"`` or ``"rst"`` and ``args`` the
words that follow the format on the marker line, if any (for example the results folder a
table reads: ``<!-- generated: scripts.render.experiments:table md
experiments-mnist1d-cnn1d -->``); it returns the block's text (it reads the committed files
under ``results/``; it never runs an experiment). The renderers are repository tooling, never
part of the installed package: ``scripts/render/`` (the experiments, with the formatting every
renderer shares in ``scripts/render/format.py``), ``benchmarks/publish.py`` (the benchmark
figures) and ``scripts/install_sizes.py`` (the install sizes).

Usage::

    python scripts/published.py --write   # re-render every block in place
    python scripts/published.py --check   # exit 1 and show a diff if any block is stale

``tests/repository/test_published.py`` runs the check, so a table that differs from its results
files fails the suite.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_HEAD = r"generated: (?P<spec>[\w.]+:\w+) (?P<fmt>md|rst)(?P<args>(?: [\w.-]+)*)"
_MD = re.compile(r"^<!-- " + _HEAD + r" -->\n(?P<body>.*?)^<!-- end generated -->$", re.M | re.S)
_RST = re.compile(r"^\.\. " + _HEAD + r"\n\n(?P<body>.*?)^\.\. end generated$", re.M | re.S)


@dataclass(frozen=True)
class Block:
    """One generated block: where it is, what renders it, and what it holds now."""

    path: Path
    spec: str
    fmt: str
    body: str
    span: tuple[int, int]
    args: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The renderer and its arguments, as on the marker line."""
        return " ".join([self.spec, *self.args])


def documents(root: Path = ROOT) -> list[Path]:
    """The files that may hold generated blocks: README.md and every page under docs/."""
    docs = sorted(p for p in (root / "docs").rglob("*.rst") if "_build" not in p.parts)
    return [root / "README.md", *docs]


def blocks(path: Path) -> Iterator[Block]:
    """The generated blocks of one file, in order."""
    text = path.read_text(encoding="utf-8")
    pattern = _MD if path.suffix == ".md" else _RST
    for m in pattern.finditer(text):
        yield Block(path, m["spec"], m["fmt"], m["body"], m.span("body"), tuple(m["args"].split()))


def renderer(spec: str) -> Callable[[str], str]:
    """Import ``module:function``."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def render(block: Block) -> str:
    """The text the block should hold, ending in exactly one newline (plus a blank line in reST)."""
    text = renderer(block.spec)(block.fmt, *block.args).strip("\n") + "\n"
    return text + ("\n" if block.path.suffix != ".md" else "")


def stale(root: Path = ROOT) -> list[tuple[Block, str]]:
    """Every block whose text differs from what its renderer gives, with the expected text."""
    out = []
    for path in documents(root):
        for block in blocks(path):
            want = render(block)
            if block.body != want:
                out.append((block, want))
    return out


def write(root: Path = ROOT) -> int:
    """Re-render every block in place; return how many changed."""
    changed = 0
    for path in documents(root):
        found = list(blocks(path))
        if not found:
            continue
        text = path.read_text(encoding="utf-8")
        for block in reversed(found):
            want = render(block)
            if block.body != want:
                changed += 1
                text = text[: block.span[0]] + want + text[block.span[1] :]
        path.write_text(text, encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    """``--write`` re-renders every block; ``--check`` prints the diff of each stale block and returns 1."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="re-render every generated block in place")
    mode.add_argument("--check", action="store_true", help="exit 1 if any generated block is stale")
    args = parser.parse_args(argv)
    if args.write:
        print(f"{write()} generated block(s) updated")
        return 0
    bad = stale()
    for block, want in bad:
        rel = block.path.relative_to(ROOT)
        diff = difflib.unified_diff(block.body.splitlines(), want.splitlines(), f"{rel} (now)",
                                    f"{rel} ({block.name})", lineterm="")
        print("\n".join(diff))
    if bad:
        print(f"{len(bad)} stale generated block(s); run: python scripts/published.py --write")
        return 1
    print("every generated block matches its results files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
